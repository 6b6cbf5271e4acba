// The C++ shim of the OpenDuck extension: DuckDB's catalog API on one side, the Rust client
// (openduck_client.h) on the other. Logic that is not about DuckDB's C++ types lives in Rust.
#pragma once

#include "duckdb.hpp"
#include "duckdb/catalog/catalog.hpp"
#include "duckdb/catalog/catalog_entry/schema_catalog_entry.hpp"
#include "duckdb/catalog/catalog_entry/table_catalog_entry.hpp"
#include "duckdb/function/table/arrow.hpp"
#include "duckdb/main/extension/extension_loader.hpp"
#include "duckdb/parser/parsed_data/create_schema_info.hpp"
#include "duckdb/parser/parsed_data/create_table_info.hpp"
#include "duckdb/parser/parsed_data/create_view_info.hpp"
#include "duckdb/parser/parsed_data/drop_info.hpp"
#include "duckdb/planner/operator/logical_get.hpp"
#include "duckdb/transaction/transaction.hpp"
#include "duckdb/transaction/transaction_manager.hpp"

#include "openduck_client.h"

namespace openduck {

using namespace duckdb;

// The extension builds for DuckDB 1.5 and 2.0 (OPENDUCK_DUCKDB_V2). 2.0 names catalog objects
// with `Identifier` (case-insensitive, converted to a string only explicitly) where 1.5 uses
// `string`; these helpers let one source serve both.
#if OPENDUCK_DUCKDB_V2
inline const string &Str(const Identifier &name) {
	return name.GetIdentifierName();
}
inline Identifier Ident(const string &name) {
	return Identifier(name);
}
inline vector<Identifier> Idents(const vector<string> &names) {
	vector<Identifier> result;
	for (auto &name : names) {
		result.emplace_back(name);
	}
	return result;
}
inline vector<string> Strs(const vector<Identifier> &names) {
	vector<string> result;
	for (auto &name : names) {
		result.push_back(name.GetIdentifierName());
	}
	return result;
}
#else
inline const string &Ident(const string &name) {
	return name;
}
inline const vector<string> &Idents(const vector<string> &names) {
	return names;
}
#endif
inline const string &Str(const string &name) {
	return name;
}
// A table function's name.
template <class F>
inline string FunctionName(const F &function) {
#if OPENDUCK_DUCKDB_V2
	return function.GetName().GetIdentifierName();
#else
	return function.name;
#endif
}
// A table function as a LogicalGet holds it.
#if OPENDUCK_DUCKDB_V2
inline BoundTableFunction BindFunction(const TableFunction &function) {
	return BoundTableFunction(function);
}
inline ProjectionIndex ColumnIndexOf(idx_t i) {
	return ProjectionIndex(i);
}
#else
inline const TableFunction &BindFunction(const TableFunction &function) {
	return function;
}
inline idx_t ColumnIndexOf(idx_t i) {
	return i;
}
#endif
// The object a CREATE TABLE / CREATE VIEW / DROP names.
#if OPENDUCK_DUCKDB_V2
template <class INFO>
inline string ObjectName(const INFO &info) {
	return info.GetQualifiedName().Name().GetIdentifierName();
}
// The schema a DROP SCHEMA names.
inline string DroppedSchemaName(const DropInfo &info) {
	auto &name = info.GetQualifiedName();
	return name.Name().empty() ? name.Schema().GetIdentifierName() : name.Name().GetIdentifierName();
}
#else
inline const string &ObjectName(const CreateTableInfo &info) {
	return info.table;
}
inline const string &ObjectName(const CreateViewInfo &info) {
	return info.view_name;
}
inline const string &ObjectName(const DropInfo &info) {
	return info.name;
}
inline const string &DroppedSchemaName(const DropInfo &info) {
	return info.name;
}
#endif
// The schema a CREATE SCHEMA names.
inline string CreatedSchemaName(const CreateSchemaInfo &info) {
#if OPENDUCK_DUCKDB_V2
	return info.SchemaName().GetIdentifierName();
#else
	return info.schema;
#endif
}
// The schema a CreateInfo names.
inline const string &SchemaName(const CreateInfo &info) {
#if OPENDUCK_DUCKDB_V2
	return info.GetQualifiedName().Schema().GetIdentifierName();
#else
	return info.schema;
#endif
}
inline void SetSchemaName(CreateInfo &info, const string &name) {
#if OPENDUCK_DUCKDB_V2
	info.SetSchema(Identifier(name));
#else
	info.schema = name;
#endif
}
inline const vector<string> &Strs(const vector<string> &names) {
	return names;
}

// Throws a DuckDB IOException with the Rust error message, freeing it.
[[noreturn]] void ThrowClientError(char *err, const string &context);

// The error for a statement an attached database does not support yet, naming it.
NotImplementedException Unsupported(const string &what);

// Quotes an SQL identifier: "name" with inner quotes doubled.
string QuoteIdent(const string &name);

class Connection;
// Runs a statement on the server; returns the rows it changed.
// Runs a statement on the server (inside server transaction `txn` unless empty); returns the rows
// it changed.
int64_t RunRemote(const Connection &conn, const string &sql, const string &txn);

// NULL for an empty transaction id.
inline const char *TxnArg(const string &txn) {
	return txn.empty() ? nullptr : txn.c_str();
}

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
class OdCatalog;

// A remote table or view. Its columns are the remote Arrow schema's, converted the way DuckDB's
// Arrow scan converts them, so scans and the catalog always agree.
class OdTable : public TableCatalogEntry {
public:
	OdTable(Catalog &catalog, SchemaCatalogEntry &schema, CreateTableInfo &info, std::shared_ptr<Connection> conn);

	// A table entry for `name` (a remote table, or view when `is_view`) from its remote Arrow
	// schema (consumed).
	static unique_ptr<OdTable> FromArrow(ClientContext &context, OdSchema &schema, const string &name,
	                                     ArrowSchema &arrow_schema, std::shared_ptr<Connection> conn, bool is_view);

	unique_ptr<BaseStatistics> GetStatistics(ClientContext &context, column_t column_id) override;
	TableFunction GetScanFunction(ClientContext &context, unique_ptr<FunctionData> &bind_data) override;
	TableStorageInfo GetStorageInfo(ClientContext &context) override;
	virtual_column_map_t GetVirtualColumns() const override;
#if OPENDUCK_DUCKDB_V2
	const ColumnList &GetColumns() const override {
		return columns;
	}
	ColumnList columns;
#endif

	std::shared_ptr<Connection> conn;
	// Whether the remote object is a view (scanned like a table; dropped with DROP VIEW).
	bool is_view = false;
	// The server's row estimate, if any (for DuckDB's join order).
	optional_idx estimated_rows;
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

	// Adds (replacing) a table entry; entries replaced stay alive for queries still using them.
	void Put(unique_ptr<OdTable> table);
	// Forgets a table entry (it stays alive, see above).
	void Forget(const string &table);
	// The entry of `table` in this listing, without asking the server.
	optional_ptr<OdTable> Find(const string &table);

private:
	// A view entry for DROP VIEW, which looks views up as views (queries see them as tables).
	optional_ptr<CatalogEntry> ViewEntry(OdTable &table);

	mutex lock;
	case_insensitive_map_t<unique_ptr<OdTable>> tables;
	vector<unique_ptr<OdTable>> retired;
	vector<unique_ptr<CatalogEntry>> views;
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

	// Lists the remote tables again.
	void Load(ClientContext &context);
	// Reloads at the next lookup (after a transaction that ran DDL ended).
	void MarkStale() {
		stale = true;
	}
	// The schema entry `name` of the current listing, or null.
	optional_ptr<SchemaCatalogEntry> FindSchema(const string &name);
	// The schema entry `name`, added (empty) if missing: for DDL inside a transaction.
	OdSchema &PutSchema(const string &name);

	std::shared_ptr<Connection> conn;

private:
	void DropSchema(ClientContext &context, DropInfo &info) override;

	void ReloadIfStale(optional_ptr<ClientContext> context);

	string path;
	atomic<bool> stale {false};
	mutex lock;
	case_insensitive_map_t<unique_ptr<OdSchema>> schemas;
	// Schemas of earlier listings, kept until DETACH because bound queries may still use them.
	vector<unique_ptr<OdSchema>> retired;
};

// A DuckDB transaction on an attached OpenDuck database. In auto-commit mode every statement
// autocommits on the server; inside BEGIN … COMMIT the first statement that touches the database
// begins a server transaction that all later statements join, and COMMIT/ROLLBACK end it.
class OdTransaction : public Transaction {
public:
	OdTransaction(TransactionManager &manager, ClientContext &context, OdCatalog &catalog)
	    : Transaction(manager, context), catalog(catalog) {
	}

	// The server transaction id for a statement now, or "" in auto-commit mode.
	string Remote(ClientContext &context);
	// The id for `context`'s current transaction on `catalog`.
	static string Of(ClientContext &context, Catalog &catalog);

	OdCatalog &catalog;
	mutex lock;
	string remote;
	// Whether DDL ran inside the server transaction (the catalog is then reloaded at its end).
	atomic<bool> ran_ddl {false};
};

class OdTransactionManager : public TransactionManager {
public:
	OdTransactionManager(AttachedDatabase &db, OdCatalog &catalog) : TransactionManager(db), catalog(catalog) {
	}
	Transaction &StartTransaction(ClientContext &context) override;
	ErrorData CommitTransaction(ClientContext &context, Transaction &transaction) override;
	void RollbackTransaction(Transaction &transaction) override;
	void Checkpoint(ClientContext &context, bool force = false) override {
	}

private:
	unique_ptr<OdTransaction> Take(Transaction &transaction);

	OdCatalog &catalog;
	mutex lock;
	reference_map_t<Transaction, unique_ptr<OdTransaction>> transactions;
};

// One remote fragment of a split query (hybrid.cpp), as its scan needs it.
struct FragmentSpec {
	uint32_t id = 0;
	// Its plan as the server encoded it (empty: it runs by SQL).
	string plan;
	string sql;
	// Its result's Arrow schema, an IPC schema message.
	string schema;
	// Its operators, one per line.
	string explain;
	// The whole split plan, labelled (kept on fragment 0, for EXPLAIN).
	string whole_plan;
	// Its row estimate, -1 if unknown.
	int64_t estimated_rows = -1;
	// How many columns it returns.
	idx_t column_count = 0;
};
// Column names as table function binds return them.
#if OPENDUCK_DUCKDB_V2
using ColumnNames = vector<Identifier>;
#else
using ColumnNames = vector<string>;
#endif
// The scan function of fragments, `openduck_fragment(id)`, with `bind` as its bind.
TableFunction FragmentScanFunction(table_function_bind_t bind);
// The bind data of a scan of fragment `spec`; fills its column types and names.
unique_ptr<FunctionData> BindFragment(ClientContext &context, std::shared_ptr<Connection> conn, const string &txn,
                                      FragmentSpec spec, vector<LogicalType> &types, ColumnNames &names);
// Shows in EXPLAIN why the query a remote scan belongs to was not split.
void NoteHybridFallback(LogicalGet &get, const string &reason);
// Splits a query that reads local data and an OpenDuck attachment between the two (hybrid.cpp);
// leaves `plan` as it was when it cannot, saying why in EXPLAIN.
void SplitQuery(ClientContext &context, Binder &binder, unique_ptr<LogicalOperator> &plan);
// Registers hybrid execution: the openduck_hybrid setting, the fragment scan and its names.
void RegisterHybrid(DBConfig &config, ExtensionLoader &loader);
// The OpenDuck catalog a connection belongs to, if attached.
optional_ptr<OdCatalog> CatalogOf(ClientContext &context, const std::shared_ptr<Connection> &conn);
// Parses `sql` with the session's parser options.
vector<unique_ptr<SQLStatement>> ParseStatements(ClientContext &context, const string &sql);
// Parses the current statement as one SELECT (EXPLAIN unwrapped), or returns null; `sql` (if
// given) receives the SELECT's text.
unique_ptr<SQLStatement> CurrentSelect(ClientContext &context, string *sql = nullptr);

// The connection of a remote table scan, or null if `get` is another kind of scan.
std::shared_ptr<Connection> RemoteScanConnection(LogicalGet &get);
// A plan that runs `sql` whole on the server, its columns cast to `expected`; null if the server's
// result has another number of columns.
unique_ptr<LogicalOperator> RemoteQueryPlan(ClientContext &context, Binder &binder, std::shared_ptr<Connection> conn,
                                            const string &sql, const string &txn, const vector<LogicalType> &expected);
// A plan that runs `sql` (a query, or a statement with RETURNING) on the server and returns its
// rows typed as the server's result; fills their names and types.
unique_ptr<LogicalOperator> RemoteRowsPlan(ClientContext &context, Binder &binder, std::shared_ptr<Connection> conn,
                                           const string &sql, const string &txn, vector<string> &names,
                                           vector<LogicalType> &types);
// Ships queries that read only one attached OpenDuck database to it whole (pushdown.cpp).
void RegisterWholeQueryPushdown(DBConfig &config);

// Removes references to the local catalog `catalog` from a query, so the server can run it.
void StripCatalog(QueryNode &node, const string &catalog);

// Lets UPDATE and DELETE of remote tables run on the server (statement.cpp).
void RegisterRemoteStatements(DBConfig &config);

// Renders the filters DuckDB pushed into a scan as an SQL condition ("" for none).
string RenderFilters(const TableFilterSet *filters, const ArrowProjectedColumns &columns);

} // namespace openduck
