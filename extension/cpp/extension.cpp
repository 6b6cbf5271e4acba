// The extension's entry point: ATTACH 'openduck:<db>?…' (the storage extension), the openduck
// secret type, and registering the remote statements and whole-query shipping.
#include "openduck.hpp"

#include "duckdb/main/attached_database.hpp"
#include "duckdb/main/config.hpp"
#include "duckdb/main/extension/extension_loader.hpp"
#include "duckdb/parser/parsed_data/create_schema_info.hpp"
#include "duckdb/parser/parsed_data/create_table_info.hpp"
#include "duckdb/storage/database_size.hpp"
#include "duckdb/catalog/catalog_entry/view_catalog_entry.hpp"
#include "duckdb/main/secret/secret.hpp"
#include "duckdb/parser/parsed_data/create_view_info.hpp"
#include "duckdb/main/secret/secret_manager.hpp"
#include "duckdb/parser/parsed_data/attach_info.hpp"
#include "duckdb/parser/parser.hpp"
#include "duckdb/storage/storage_extension.hpp"

namespace openduck {

// CREATE SECRET (TYPE openduck, TOKEN '…' [, SCOPE 'openduck:mydb']).
static unique_ptr<BaseSecret> CreateSecret(ClientContext &context, CreateSecretInput &input) {
	auto scope = input.scope;
	if (scope.empty()) {
		scope = {"openduck:", "od:"};
	}
	auto secret = make_uniq<KeyValueSecret>(scope, input.type, input.provider, input.name);
	for (auto &option : input.options) {
		auto key = StringUtil::Lower(option.first);
		if (key != "token") {
			throw InvalidInputException("openduck secret: unknown parameter '%s' (known: TOKEN)", option.first);
		}
		secret->secret_map["token"] = option.second;
	}
	secret->redact_keys.insert("token");
	return std::move(secret);
}

static string SecretToken(ClientContext &context, const string &path) {
	auto &manager = SecretManager::Get(context);
	auto transaction = CatalogTransaction::GetSystemCatalogTransaction(context);
	auto match = manager.LookupSecret(transaction, path, "openduck");
	if (!match.HasMatch()) {
		return "";
	}
	auto &secret = dynamic_cast<const KeyValueSecret &>(match.GetSecret());
	Value token;
	return secret.TryGetValue("token", token) && !token.IsNull() ? token.ToString() : "";
}

static unique_ptr<Catalog> Attach(optional_ptr<StorageExtensionInfo>, ClientContext &context, AttachedDatabase &db,
                                  const string &name, AttachInfo &info, AttachOptions &options) {
	// DuckDB strips the "openduck:"/"od:" prefix unless TYPE was given; the client wants it.
	string path = info.path;
	if (!StringUtil::StartsWith(path, "openduck:") && !StringUtil::StartsWith(path, "od:")) {
		path = "openduck:" + path;
	}
	string token;
	for (auto &option : options.options) {
		if (option.first == "token") {
			token = option.second.ToString();
		} else {
			throw BinderException("openduck: unknown ATTACH option '%s' (known: TOKEN)", option.first);
		}
	}
	// The library picks among the TOKEN option, the path's token=, the secret's and OPENDUCK_TOKEN.
	auto secret_token = SecretToken(context, path);
	OpenDuckClient *client = nullptr;
	char *err = nullptr;
	if (openduck_connect(path.c_str(), token.empty() ? nullptr : token.c_str(),
	                     secret_token.empty() ? nullptr : secret_token.c_str(), &client, &err) != 0) {
		ThrowClientError(err, "ATTACH '" + info.path + "'");
	}
	return make_uniq<OdCatalog>(db, std::make_shared<Connection>(client), path);
}

static unique_ptr<TransactionManager> CreateTransactionManager(optional_ptr<StorageExtensionInfo>,
                                                               AttachedDatabase &db, Catalog &catalog) {
	return make_uniq<OdTransactionManager>(db, catalog.Cast<OdCatalog>());
}

static void Register(ExtensionLoader &loader) {
	auto &config = DBConfig::GetConfig(loader.GetDatabaseInstance());
	auto extension = make_shared_ptr<StorageExtension>();
	extension->attach = Attach;
	extension->create_transaction_manager = CreateTransactionManager;
	StorageExtension::Register(config, "openduck", extension);
	StorageExtension::Register(config, "od", extension);
	RegisterRemoteStatements(config);
	RegisterWholeQueryPushdown(config);
	RegisterHybrid(config, loader);

	SecretType secret_type;
	secret_type.name = "openduck";
	secret_type.deserializer = KeyValueSecret::Deserialize<KeyValueSecret>;
	secret_type.default_provider = "config";
	secret_type.extension = "openduck";
	loader.RegisterSecretType(secret_type);
	CreateSecretFunction secret_function = {"openduck", "config", CreateSecret, {}};
	secret_function.named_parameters["token"] = LogicalType::VARCHAR;
	loader.RegisterFunction(secret_function);
	loader.SetDescription("Attach OpenDuck databases served over Arrow Flight SQL");
}

} // namespace openduck

extern "C" {
DUCKDB_CPP_EXTENSION_ENTRY(openduck, loader) {
	openduck::Register(loader);
}
}
