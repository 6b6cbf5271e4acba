// A remote schema: its tables and views, as the catalog lists them; DDL it does not support is
// refused by name.
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

} // namespace openduck
