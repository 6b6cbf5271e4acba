// ATTACH 'openduck:<db>?…' AS x: the storage extension, the catalog of remote schemas and tables,
// and the extension's entry point.
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

void ThrowClientError(char *err, const string &context) {
	string message = err ? err : "unknown error";
	openduck_free_string(err);
	// The server's DuckDB error class survives the trip: raise the same kind of exception here.
	auto at = message.find(": ");
	auto rest = at == string::npos ? message : message.substr(at + 2);
	auto has_class = [&](const char *cls) {
		return rest.rfind(cls, 0) == 0;
	};
	if (has_class("Catalog Error: ")) {
		throw CatalogException("%s (remote, %s)", rest.substr(15), context);
	}
	if (has_class("Constraint Error: ")) {
		throw ConstraintException("%s (remote, %s)", rest.substr(18), context);
	}
	if (has_class("Parser Error: ") || has_class("Binder Error: ") || has_class("Conversion Error: ")) {
		throw InvalidInputException("%s (remote, %s)", rest, context);
	}
	throw IOException("%s: %s", context, message);
}

// ---- schema -------------------------------------------------------------------------------

OdSchema::OdSchema(Catalog &catalog, CreateSchemaInfo &info) : SchemaCatalogEntry(catalog, info) {
}

void OdSchema::Scan(ClientContext &context, CatalogType type, const std::function<void(CatalogEntry &)> &callback) {
	Scan(type, callback);
}

void OdSchema::Scan(CatalogType type, const std::function<void(CatalogEntry &)> &callback) {
	if (type != CatalogType::TABLE_ENTRY) {
		return;
	}
	vector<reference<CatalogEntry>> list;
	{
		lock_guard<mutex> guard(lock);
		for (auto &entry : tables) {
			list.push_back(*entry.second);
		}
	}
	for (auto &entry : list) {
		callback(entry.get());
	}
}

optional_ptr<CatalogEntry> OdSchema::LookupEntry(CatalogTransaction transaction, const EntryLookupInfo &lookup_info) {
	if (lookup_info.GetCatalogType() == CatalogType::VIEW_ENTRY) {
		auto table = Find(lookup_info.GetEntryName());
		return table && table->is_view ? ViewEntry(*table) : nullptr;
	}
	if (lookup_info.GetCatalogType() != CatalogType::TABLE_ENTRY) {
		return nullptr;
	}
	auto found = Find(lookup_info.GetEntryName());
	if (found || !transaction.context) {
		return found.get();
	}
	// Not in the last listing: another client may have created it since. List again (unless this
	// transaction ran DDL on the server, whose effects a listing from outside it cannot see).
	auto &context = *transaction.context;
	auto &od = catalog.Cast<OdCatalog>();
	if (Transaction::Get(context, od).Cast<OdTransaction>().ran_ddl) {
		return nullptr;
	}
	od.Load(context);
	auto fresh = od.LookupSchema(transaction, EntryLookupInfo(CatalogType::SCHEMA_ENTRY, name),
	                             OnEntryNotFound::RETURN_NULL);
	auto entry = fresh ? fresh->Cast<OdSchema>().Find(lookup_info.GetEntryName()) : nullptr;
	return entry.get();
}

optional_ptr<CatalogEntry> OdSchema::ViewEntry(OdTable &table) {
	CreateViewInfo info(*this, table.name);
#if OPENDUCK_DUCKDB_V2
	auto parser = Parser::GetBuiltinParser();
	info.query = CreateViewInfo::ParseSelect(parser, "SELECT 1");
#else
	info.query = CreateViewInfo::ParseSelect("SELECT 1");
#endif
	info.names = Idents(Strs(table.GetColumns().GetColumnNames()));
	info.types = table.GetColumns().GetColumnTypes();
	auto view = make_uniq<ViewCatalogEntry>(catalog, *this, info);
	optional_ptr<CatalogEntry> result = view.get();
	lock_guard<mutex> guard(lock);
	views.push_back(std::move(view));
	return result;
}

optional_ptr<OdTable> OdSchema::Find(const string &table) {
	lock_guard<mutex> guard(lock);
	auto found = tables.find(table);
	return found == tables.end() ? nullptr : found->second.get();
}

void OdSchema::Put(unique_ptr<OdTable> table) {
	lock_guard<mutex> guard(lock);
	auto &slot = tables[Str(table->name)];
	if (slot) {
		retired.push_back(std::move(slot));
	}
	slot = std::move(table);
}

void OdSchema::Forget(const string &table) {
	lock_guard<mutex> guard(lock);
	auto found = tables.find(table);
	if (found != tables.end()) {
		retired.push_back(std::move(found->second));
		tables.erase(found);
	}
}

static NotImplementedException Unsupported(const string &what) {
	return NotImplementedException("openduck: %s is not supported on an attached OpenDuck database yet", what);
}

optional_ptr<CatalogEntry> OdSchema::CreateIndex(CatalogTransaction, CreateIndexInfo &, TableCatalogEntry &) {
	throw Unsupported("CREATE INDEX");
}
optional_ptr<CatalogEntry> OdSchema::CreateFunction(CatalogTransaction, CreateFunctionInfo &) {
	throw Unsupported("CREATE FUNCTION");
}
optional_ptr<CatalogEntry> OdSchema::CreateSequence(CatalogTransaction, CreateSequenceInfo &) {
	throw Unsupported("CREATE SEQUENCE");
}
optional_ptr<CatalogEntry> OdSchema::CreateTableFunction(CatalogTransaction, CreateTableFunctionInfo &) {
	throw Unsupported("CREATE FUNCTION");
}
optional_ptr<CatalogEntry> OdSchema::CreateCopyFunction(CatalogTransaction, CreateCopyFunctionInfo &) {
	throw Unsupported("COPY functions");
}
optional_ptr<CatalogEntry> OdSchema::CreatePragmaFunction(CatalogTransaction, CreatePragmaFunctionInfo &) {
	throw Unsupported("PRAGMA functions");
}
optional_ptr<CatalogEntry> OdSchema::CreateCollation(CatalogTransaction, CreateCollationInfo &) {
	throw Unsupported("CREATE COLLATION");
}
optional_ptr<CatalogEntry> OdSchema::CreateType(CatalogTransaction, CreateTypeInfo &) {
	throw Unsupported("CREATE TYPE");
}
void OdSchema::Alter(CatalogTransaction, AlterInfo &) {
	throw Unsupported("ALTER");
}

// ---- catalog ------------------------------------------------------------------------------

OdCatalog::OdCatalog(AttachedDatabase &db, std::shared_ptr<Connection> conn_p, string path_p)
    : Catalog(db), conn(std::move(conn_p)), path(std::move(path_p)) {
}

void OdCatalog::Initialize(bool load_builtin) {
}

void OdCatalog::Initialize(optional_ptr<ClientContext> context, bool load_builtin) {
	if (context) {
		Load(*context);
	}
}

void OdCatalog::Load(ClientContext &context) {
	OpenDuckTables *raw = nullptr;
	char *err = nullptr;
	if (openduck_tables(conn->Get(), &raw, &err) != 0) {
		ThrowClientError(err, "listing remote tables");
	}
	std::unique_ptr<OpenDuckTables, void (*)(OpenDuckTables *)> list(raw, openduck_tables_free);

	case_insensitive_map_t<unique_ptr<OdSchema>> loaded;
	auto schema_for = [&](const string &name) -> OdSchema & {
		auto &slot = loaded[name];
		if (!slot) {
			CreateSchemaInfo info;
			SetSchemaName(info, name);
			slot = make_uniq<OdSchema>(*this, info);
		}
		return *slot;
	};
	schema_for("main");
	for (idx_t i = 0; i < openduck_schemas_len(raw); i++) {
		schema_for(openduck_schemas_name(raw, i));
	}
	for (idx_t i = 0; i < openduck_tables_len(raw); i++) {
		auto &schema = schema_for(openduck_tables_schema(raw, i));
		string table_name = openduck_tables_name(raw, i);
		ArrowSchema arrow_schema;
		if (openduck_tables_arrow_schema(raw, i, &arrow_schema, &err) != 0) {
			ThrowClientError(err, "schema of remote table " + table_name);
		}
		bool is_view = string(openduck_tables_kind(raw, i)) == "VIEW";
		auto table = OdTable::FromArrow(context, schema, table_name, arrow_schema, conn, is_view);
		auto rows = openduck_tables_rows(raw, i);
		if (rows >= 0) {
			table->estimated_rows = optional_idx(idx_t(rows));
		}
		schema.Put(std::move(table));
	}
	lock_guard<mutex> guard(lock);
	// Entries of an earlier listing may still be used by running queries: keep them alive.
	for (auto &entry : schemas) {
		retired.push_back(std::move(entry.second));
	}
	schemas = std::move(loaded);
	stale = false;
}

void OdCatalog::ReloadIfStale(optional_ptr<ClientContext> context) {
	if (stale && context) {
		Load(*context);
	}
}

OdSchema &OdCatalog::PutSchema(const string &name) {
	lock_guard<mutex> guard(lock);
	auto &slot = schemas[name];
	if (!slot) {
		CreateSchemaInfo info;
		SetSchemaName(info, name);
		slot = make_uniq<OdSchema>(*this, info);
	}
	return *slot;
}

optional_ptr<SchemaCatalogEntry> OdCatalog::LookupSchema(CatalogTransaction transaction,
                                                         const EntryLookupInfo &schema_lookup,
                                                         OnEntryNotFound if_not_found) {
	ReloadIfStale(transaction.context);
	auto found = FindSchema(schema_lookup.GetEntryName());
	if (found) {
		return found;
	}
	// Perhaps created by another client since the last listing (see OdSchema::LookupEntry).
	if (transaction.context && !Transaction::Get(*transaction.context, *this).Cast<OdTransaction>().ran_ddl) {
		Load(*transaction.context);
		found = FindSchema(schema_lookup.GetEntryName());
		if (found) {
			return found;
		}
	}
	if (if_not_found == OnEntryNotFound::RETURN_NULL) {
		return nullptr;
	}
	throw CatalogException("Schema with name %s does not exist in the OpenDuck database %s",
	                       schema_lookup.GetEntryName(), GetName());
}

optional_ptr<SchemaCatalogEntry> OdCatalog::FindSchema(const string &name) {
	lock_guard<mutex> guard(lock);
	auto found = schemas.find(name);
	return found == schemas.end() ? nullptr : found->second.get();
}

void OdCatalog::ScanSchemas(ClientContext &context, std::function<void(SchemaCatalogEntry &)> callback) {
	ReloadIfStale(&context);
	vector<reference<SchemaCatalogEntry>> list;
	{
		lock_guard<mutex> guard(lock);
		for (auto &entry : schemas) {
			list.push_back(*entry.second);
		}
	}
	for (auto &schema : list) {
		callback(schema.get());
	}
}

PhysicalOperator &OdCatalog::PlanDelete(ClientContext &, PhysicalPlanGenerator &, LogicalDelete &,
                                        PhysicalOperator &) {
	throw Unsupported("DELETE");
}
PhysicalOperator &OdCatalog::PlanUpdate(ClientContext &, PhysicalPlanGenerator &, LogicalUpdate &,
                                        PhysicalOperator &) {
	throw Unsupported("UPDATE");
}

DatabaseSize OdCatalog::GetDatabaseSize(ClientContext &) {
	return DatabaseSize();
}

// ---- transactions -------------------------------------------------------------------------

string OdTransaction::Remote(ClientContext &context) {
	if (context.transaction.IsAutoCommit()) {
		return "";
	}
	lock_guard<mutex> guard(lock);
	if (remote.empty()) {
		char *id = nullptr;
		char *err = nullptr;
		if (openduck_begin(catalog.conn->Get(), &id, &err) != 0) {
			ThrowClientError(err, "BEGIN on the server");
		}
		remote = id;
		openduck_free_string(id);
	}
	return remote;
}

string OdTransaction::Of(ClientContext &context, Catalog &catalog) {
	return Transaction::Get(context, catalog).Cast<OdTransaction>().Remote(context);
}

Transaction &OdTransactionManager::StartTransaction(ClientContext &context) {
	auto transaction = make_uniq<OdTransaction>(*this, context, catalog);
	auto &result = *transaction;
	lock_guard<mutex> guard(lock);
	transactions[result] = std::move(transaction);
	return result;
}

unique_ptr<OdTransaction> OdTransactionManager::Take(Transaction &transaction) {
	lock_guard<mutex> guard(lock);
	auto found = transactions.find(transaction);
	if (found == transactions.end()) {
		return nullptr;
	}
	auto result = std::move(found->second);
	transactions.erase(found);
	return result;
}

ErrorData OdTransactionManager::CommitTransaction(ClientContext &, Transaction &transaction) {
	auto t = Take(transaction);
	if (!t || t->remote.empty()) {
		return ErrorData();
	}
	if (t->ran_ddl) {
		catalog.MarkStale();
	}
	char *err = nullptr;
	if (openduck_end(catalog.conn->Get(), t->remote.c_str(), 1, &err) != 0) {
		string message = err ? err : "unknown error";
		openduck_free_string(err);
		return ErrorData(IOException("COMMIT on the OpenDuck server failed: %s", message));
	}
	return ErrorData();
}

void OdTransactionManager::RollbackTransaction(Transaction &transaction) {
	auto t = Take(transaction);
	if (!t || t->remote.empty()) {
		return;
	}
	if (t->ran_ddl) {
		catalog.MarkStale();
	}
	char *err = nullptr;
	if (openduck_end(catalog.conn->Get(), t->remote.c_str(), 0, &err) != 0) {
		// The server rolls back transactions whose connection ends or that idle out.
		openduck_free_string(err);
	}
}

// ---- ATTACH -------------------------------------------------------------------------------

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
