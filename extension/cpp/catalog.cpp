// The catalog of an attached OpenDuck database: its remote schemas, loaded from the server and
// reloaded when stale; and turning the client library's errors into DuckDB exceptions.
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

NotImplementedException Unsupported(const string &what) {
	return NotImplementedException("openduck: %s is not supported on an attached OpenDuck database yet", what);
}


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

} // namespace openduck
