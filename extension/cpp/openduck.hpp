// The C++ shim of the OpenDuck extension: DuckDB's catalog API on one side, the Rust client
// (openduck_client.h) on the other. Logic that is not about DuckDB's C++ types lives in Rust.
#pragma once

#include "duckdb.hpp"
#include "duckdb/catalog/catalog.hpp"
#include "duckdb/catalog/catalog_entry/schema_catalog_entry.hpp"
#include "duckdb/catalog/catalog_entry/table_catalog_entry.hpp"
#include "duckdb/function/table/arrow.hpp"
#include "duckdb/transaction/transaction.hpp"
#include "duckdb/transaction/transaction_manager.hpp"

#include "openduck_client.h"

namespace openduck {

using namespace duckdb;

// Throws a DuckDB IOException with the Rust error message, freeing it.
[[noreturn]] void ThrowClientError(char *err, const string &context);

// Quotes an SQL identifier: "name" with inner quotes doubled.
string QuoteIdent(const string &name);

class Connection;
// Runs a statement on the server; returns the rows it changed.
int64_t RunRemote(const Connection &conn, const string &sql);

// A connection to a remote database, shared by the catalog and running scans.
class Connection {
public:
	explicit Connection(OpenDuckClient *client) : client(client) {
	}
	~Connection() {
		openduck_disconnect(client);
	}
	const OpenDuckClient *Get() const {
		return client;
	}

private:
	OpenDuckClient *client;
};

class OdSchema;

// A remote table or view. Its columns are the remote Arrow schema's, converted the way DuckDB's
// Arrow scan converts them, so scans and the catalog always agree.
class OdTable : public TableCatalogEntry {
public:
	OdTable(Catalog &catalog, SchemaCatalogEntry &schema, CreateTableInfo &info, std::shared_ptr<Connection> conn,
	        std::shared_ptr<OpenDuckTables> tables, idx_t index);

	unique_ptr<BaseStatistics> GetStatistics(ClientContext &context, column_t column_id) override;
	TableFunction GetScanFunction(ClientContext &context, unique_ptr<FunctionData> &bind_data) override;
	TableStorageInfo GetStorageInfo(ClientContext &context) override;
	virtual_column_map_t GetVirtualColumns() const override;

	std::shared_ptr<Connection> conn;
	// The table list this table came from; holds its Arrow schema.
	std::shared_ptr<OpenDuckTables> tables;
	idx_t index;
};

// One remote schema and its tables, listed when the catalog loads.
class OdSchema : public SchemaCatalogEntry {
public:
	OdSchema(Catalog &catalog, CreateSchemaInfo &info);

	void Scan(ClientContext &context, CatalogType type, const std::function<void(CatalogEntry &)> &callback) override;
	void Scan(CatalogType type, const std::function<void(CatalogEntry &)> &callback) override;
	optional_ptr<CatalogEntry> LookupEntry(CatalogTransaction transaction, const EntryLookupInfo &lookup_info) override;

	optional_ptr<CatalogEntry> CreateIndex(CatalogTransaction, CreateIndexInfo &, TableCatalogEntry &) override;
	optional_ptr<CatalogEntry> CreateFunction(CatalogTransaction, CreateFunctionInfo &) override;
	optional_ptr<CatalogEntry> CreateTable(CatalogTransaction, BoundCreateTableInfo &) override;
	optional_ptr<CatalogEntry> CreateView(CatalogTransaction, CreateViewInfo &) override;
	optional_ptr<CatalogEntry> CreateSequence(CatalogTransaction, CreateSequenceInfo &) override;
	optional_ptr<CatalogEntry> CreateTableFunction(CatalogTransaction, CreateTableFunctionInfo &) override;
	optional_ptr<CatalogEntry> CreateCopyFunction(CatalogTransaction, CreateCopyFunctionInfo &) override;
	optional_ptr<CatalogEntry> CreatePragmaFunction(CatalogTransaction, CreatePragmaFunctionInfo &) override;
	optional_ptr<CatalogEntry> CreateCollation(CatalogTransaction, CreateCollationInfo &) override;
	optional_ptr<CatalogEntry> CreateType(CatalogTransaction, CreateTypeInfo &) override;
	void DropEntry(ClientContext &context, DropInfo &info) override;
	void Alter(CatalogTransaction transaction, AlterInfo &info) override;

	case_insensitive_map_t<unique_ptr<OdTable>> tables;
};

// The attached remote database.
class OdCatalog : public Catalog {
public:
	OdCatalog(AttachedDatabase &db, std::shared_ptr<Connection> conn, string path);

	void Initialize(bool load_builtin) override;
	void Initialize(optional_ptr<ClientContext> context, bool load_builtin) override;
	string GetCatalogType() override {
		return "openduck";
	}
	optional_ptr<CatalogEntry> CreateSchema(CatalogTransaction transaction, CreateSchemaInfo &info) override;
	optional_ptr<SchemaCatalogEntry> LookupSchema(CatalogTransaction transaction, const EntryLookupInfo &schema_lookup,
	                                              OnEntryNotFound if_not_found) override;
	void ScanSchemas(ClientContext &context, std::function<void(SchemaCatalogEntry &)> callback) override;
	PhysicalOperator &PlanCreateTableAs(ClientContext &context, PhysicalPlanGenerator &planner, LogicalCreateTable &op,
	                                    PhysicalOperator &plan) override;
	PhysicalOperator &PlanInsert(ClientContext &context, PhysicalPlanGenerator &planner, LogicalInsert &op,
	                             optional_ptr<PhysicalOperator> plan) override;
	PhysicalOperator &PlanDelete(ClientContext &context, PhysicalPlanGenerator &planner, LogicalDelete &op,
	                             PhysicalOperator &plan) override;
	PhysicalOperator &PlanUpdate(ClientContext &context, PhysicalPlanGenerator &planner, LogicalUpdate &op,
	                             PhysicalOperator &plan) override;
	DatabaseSize GetDatabaseSize(ClientContext &context) override;
	bool InMemory() override {
		return false;
	}
	string GetDBPath() override {
		return path;
	}

	// Lists the remote tables again (after DDL, or when a lookup misses).
	void Load(ClientContext &context);

	std::shared_ptr<Connection> conn;

private:
	void DropSchema(ClientContext &context, DropInfo &info) override;

	string path;
	mutex lock;
	case_insensitive_map_t<unique_ptr<OdSchema>> schemas;
	// Schemas of earlier listings, kept until DETACH because bound queries may still use them.
	vector<unique_ptr<OdSchema>> retired;
};

class OdTransaction : public Transaction {
public:
	OdTransaction(TransactionManager &manager, ClientContext &context) : Transaction(manager, context) {
	}
};

// Statements on an attached OpenDuck database run in the server's autocommit mode for now.
class OdTransactionManager : public TransactionManager {
public:
	explicit OdTransactionManager(AttachedDatabase &db) : TransactionManager(db) {
	}
	Transaction &StartTransaction(ClientContext &context) override;
	ErrorData CommitTransaction(ClientContext &context, Transaction &transaction) override;
	void RollbackTransaction(Transaction &transaction) override;
	void Checkpoint(ClientContext &context, bool force = false) override {
	}

private:
	mutex lock;
	reference_map_t<Transaction, unique_ptr<OdTransaction>> transactions;
};

// Renders the filters DuckDB pushed into a scan as an SQL condition ("" for none).
string RenderFilters(const TableFilterSet *filters, const ArrowProjectedColumns &columns);

} // namespace openduck
