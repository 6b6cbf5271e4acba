// Writes to an attached OpenDuck database: DDL runs as SQL on the server; INSERT and
// CREATE TABLE AS stream their rows to the server as Arrow batches through Flight SQL bulk
// ingest (never row-by-row INSERTs).
#include "openduck.hpp"

#include "duckdb/common/arrow/arrow_appender.hpp"
#include "duckdb/common/arrow/arrow_converter.hpp"
#include "duckdb/execution/physical_operator.hpp"
#include "duckdb/execution/physical_plan_generator.hpp"
#include "duckdb/parser/parsed_data/create_schema_info.hpp"
#include "duckdb/parser/parsed_data/create_table_info.hpp"
#include "duckdb/parser/parsed_data/create_view_info.hpp"
#include "duckdb/parser/statement/select_statement.hpp"
#include "duckdb/parser/parsed_data/drop_info.hpp"
#include "duckdb/planner/operator/logical_create_table.hpp"
#include "duckdb/planner/operator/logical_insert.hpp"
#include "duckdb/planner/parsed_data/bound_create_table_info.hpp"

namespace openduck {

int64_t RunRemote(const Connection &conn, const string &sql, const string &txn) {
	int64_t rows = 0;
	char *err = nullptr;
	if (openduck_execute(conn.Get(), sql.c_str(), TxnArg(txn), &rows, &err) != 0) {
		ThrowClientError(err, "remote statement");
	}
	return rows;
}

static string CreatePrefix(OnCreateConflict on_conflict, const string &kind) {
	switch (on_conflict) {
	case OnCreateConflict::REPLACE_ON_CONFLICT:
		return "CREATE OR REPLACE " + kind + " ";
	case OnCreateConflict::IGNORE_ON_CONFLICT:
		return "CREATE " + kind + " IF NOT EXISTS ";
	default:
		return "CREATE " + kind + " ";
	}
}

// CREATE TABLE on the server from a table definition, columns with their exact DuckDB types.
static string CreateTableSQL(const string &schema, CreateTableInfo &info) {
	if (info.temporary) {
		throw NotImplementedException("openduck: temporary tables cannot be created in a remote database");
	}
	return CreatePrefix(info.on_conflict, "TABLE") + QuoteIdent(schema) + "." + QuoteIdent(ObjectName(info)) +
	       TableCatalogEntry::ColumnsToSQL(info.columns, info.constraints);
}

// ---- DDL ----------------------------------------------------------------------------------

// The server transaction of `context` on `catalog` ("" in auto-commit mode), noting that DDL runs.
static string DdlTransaction(ClientContext &context, OdCatalog &catalog) {
	auto &transaction = Transaction::Get(context, catalog).Cast<OdTransaction>();
	auto txn = transaction.Remote(context);
	if (!txn.empty()) {
		transaction.ran_ddl = true;
	}
	return txn;
}

// Makes a table created on the server visible: outside a transaction by listing again; inside
// one (where listings cannot see it) by describing it in the transaction.
static optional_ptr<CatalogEntry> AfterCreate(ClientContext &context, OdCatalog &catalog, OdSchema &schema,
                                              const string &table, const string &txn, bool is_view = false) {
	if (txn.empty()) {
		catalog.Load(context);
		auto fresh = catalog.LookupSchema(catalog.GetCatalogTransaction(context),
		                                  EntryLookupInfo(CatalogType::SCHEMA_ENTRY, schema.name),
		                                  OnEntryNotFound::THROW_EXCEPTION);
		return fresh->LookupEntry(catalog.GetCatalogTransaction(context),
		                          EntryLookupInfo(CatalogType::TABLE_ENTRY, Ident(table)));
	}
	ArrowSchema arrow_schema;
	char *err = nullptr;
	if (openduck_table_schema(catalog.conn->Get(), Str(schema.name).c_str(), table.c_str(), txn.c_str(), &arrow_schema,
	                          &err) != 0) {
		ThrowClientError(err, "schema of new table " + table);
	}
	// `schema` may be an entry of an older listing: add the table to the current one.
	auto &current = catalog.PutSchema(Str(schema.name));
	auto entry = OdTable::FromArrow(context, current, table, arrow_schema, catalog.conn, is_view);
	optional_ptr<CatalogEntry> result = entry.get();
	current.Put(std::move(entry));
	return result;
}

optional_ptr<CatalogEntry> OdSchema::CreateTable(CatalogTransaction transaction, BoundCreateTableInfo &info) {
	auto &base = info.Base();
	auto &od = catalog.Cast<OdCatalog>();
	auto &context = transaction.GetContext();
	auto txn = DdlTransaction(context, od);
	RunRemote(*od.conn, CreateTableSQL(Str(name), base), txn);
	return AfterCreate(context, od, *this, ObjectName(base), txn);
}

optional_ptr<CatalogEntry> OdSchema::CreateView(CatalogTransaction transaction, CreateViewInfo &info) {
	if (info.temporary) {
		throw NotImplementedException("openduck: temporary views cannot be created in a remote database");
	}
	auto &od = catalog.Cast<OdCatalog>();
	auto query = unique_ptr_cast<SQLStatement, SelectStatement>(info.query->Copy());
	StripCatalog(*query->node, Str(od.GetName()));
	string sql = CreatePrefix(info.on_conflict, "VIEW") + QuoteIdent(Str(name)) + "." + QuoteIdent(ObjectName(info));
	if (!info.aliases.empty()) {
		string aliases;
		for (auto &alias : info.aliases) {
			aliases += (aliases.empty() ? "" : ", ") + QuoteIdent(Str(alias));
		}
		sql += " (" + aliases + ")";
	}
	sql += " AS " + query->ToString();
	auto &context = transaction.GetContext();
	auto txn = DdlTransaction(context, od);
	RunRemote(*od.conn, sql, txn);
	return AfterCreate(context, od, *this, ObjectName(info), txn, true);
}

void OdSchema::DropEntry(ClientContext &context, DropInfo &info) {
	string kind;
	switch (info.type) {
	case CatalogType::TABLE_ENTRY:
		kind = "TABLE";
		break;
	case CatalogType::VIEW_ENTRY:
		kind = "VIEW";
		break;
	default:
		throw NotImplementedException("openduck: DROP of this kind of object is not supported");
	}
	string sql = "DROP " + kind + (info.if_not_found == OnEntryNotFound::RETURN_NULL ? " IF EXISTS " : " ") +
	             QuoteIdent(Str(name)) + "." + QuoteIdent(ObjectName(info)) + (info.cascade ? " CASCADE" : "");
	auto &od = catalog.Cast<OdCatalog>();
	auto txn = DdlTransaction(context, od);
	RunRemote(*od.conn, sql, txn);
	if (txn.empty()) {
		od.Load(context);
	} else {
		od.PutSchema(Str(name)).Forget(ObjectName(info));
	}
}

optional_ptr<CatalogEntry> OdCatalog::CreateSchema(CatalogTransaction transaction, CreateSchemaInfo &info) {
	auto &context = transaction.GetContext();
	auto txn = DdlTransaction(context, *this);
	auto schema_name = CreatedSchemaName(info);
	RunRemote(*conn, CreatePrefix(info.on_conflict, "SCHEMA") + QuoteIdent(schema_name), txn);
	if (!txn.empty()) {
		return &PutSchema(schema_name);
	}
	// Schemas without tables are listed too, so the new one appears.
	Load(context);
	auto schema = LookupSchema(transaction, EntryLookupInfo(CatalogType::SCHEMA_ENTRY, Ident(schema_name)),
	                           OnEntryNotFound::RETURN_NULL);
	return schema ? optional_ptr<CatalogEntry>(schema.get()) : nullptr;
}

void OdCatalog::DropSchema(ClientContext &context, DropInfo &info) {
	string sql = string("DROP SCHEMA ") + (info.if_not_found == OnEntryNotFound::RETURN_NULL ? "IF EXISTS " : "") +
	             QuoteIdent(DroppedSchemaName(info)) + (info.cascade ? " CASCADE" : "");
	auto txn = DdlTransaction(context, *this);
	RunRemote(*conn, sql, txn);
	if (txn.empty()) {
		Load(context);
	}
}

// ---- bulk writes --------------------------------------------------------------------------

// Rows per Arrow batch sent to the server.
static constexpr idx_t BATCH_ROWS = 122880;

class OdInsertState : public GlobalSinkState {
public:
	~OdInsertState() override {
		if (upload) {
			// Not finished: the query failed or was interrupted; the server discards the rows.
			openduck_ingest_abort(upload);
		}
	}

	OpenDuckUpload *upload = nullptr;
	// Server transaction of the statement ("" = autocommit).
	string txn;
	unique_ptr<ArrowAppender> appender;
	ClientProperties properties;
	vector<LogicalType> types;
	int64_t rows = 0;
};

// Streams its input into a remote table; outputs the row count. For CREATE TABLE AS it first
// creates the table.
class OdInsert : public PhysicalOperator {
public:
	OdInsert(PhysicalPlan &plan, vector<LogicalType> types, idx_t estimated_cardinality, OdCatalog &catalog,
	         string schema, string table, vector<string> names, string create_sql)
	    : PhysicalOperator(plan, PhysicalOperatorType::EXTENSION, std::move(types), estimated_cardinality),
	      catalog(catalog), schema(std::move(schema)), table(std::move(table)), names(std::move(names)),
	      create_sql(std::move(create_sql)) {
	}

	string GetName() const override {
		return "OPENDUCK_INSERT";
	}
	InsertionOrderPreservingMap<string> ParamsToString() const override {
		InsertionOrderPreservingMap<string> result;
		result["Table"] = QuoteIdent(schema) + "." + QuoteIdent(table);
		result["Runs"] = "REMOTE (bulk load over Flight SQL)";
		return result;
	}
	bool IsSink() const override {
		return true;
	}
	bool ParallelSink() const override {
		return false;
	}
	bool IsSource() const override {
		return true;
	}

	unique_ptr<GlobalSinkState> GetGlobalSinkState(ClientContext &context) const override {
		auto state = make_uniq<OdInsertState>();
		state->properties = context.GetClientProperties();
		if (create_sql.empty()) {
			state->txn = OdTransaction::Of(context, catalog);
		} else {
			state->txn = DdlTransaction(context, catalog);
			RunRemote(*catalog.conn, create_sql, state->txn);
		}
		return std::move(state);
	}

	SinkResultType Sink(ExecutionContext &context, DataChunk &chunk, OperatorSinkInput &input) const override {
		auto &state = input.global_state.Cast<OdInsertState>();
		if (!state.upload) {
			Begin(state, chunk.GetTypes());
		}
		state.appender->Append(chunk, 0, chunk.size(), chunk.size());
		if (state.appender->RowCount() >= BATCH_ROWS) {
			Flush(state);
		}
		return SinkResultType::NEED_MORE_INPUT;
	}

	SinkFinalizeType Finalize(Pipeline &pipeline, Event &event, ClientContext &context,
	                          OperatorSinkFinalizeInput &input) const override {
		auto &state = input.global_state.Cast<OdInsertState>();
		if (state.upload) {
			if (state.appender->RowCount() > 0) {
				Flush(state);
			}
			auto upload = state.upload;
			state.upload = nullptr;
			char *err = nullptr;
			if (openduck_ingest_finish(upload, &state.rows, &err) != 0) {
				ThrowClientError(err, "bulk load into " + QuoteIdent(schema) + "." + QuoteIdent(table));
			}
		}
		if (!create_sql.empty()) {
			auto &target = catalog.PutSchema(schema);
			AfterCreate(context, catalog, target, table, state.txn);
		}
		return SinkFinalizeType::READY;
	}

protected:
	SourceResultType GetDataInternal(ExecutionContext &context, DataChunk &chunk,
	                                 OperatorSourceInput &input) const override {
		auto &state = sink_state->Cast<OdInsertState>();
		chunk.SetCardinality(1);
		chunk.SetValue(0, 0, Value::BIGINT(state.rows));
		return SourceResultType::FINISHED;
	}

private:
	void Begin(OdInsertState &state, const vector<LogicalType> &types) const {
		state.types = types;
		ArrowSchema arrow_schema;
		ArrowConverter::ToArrowSchema(&arrow_schema, types, names, state.properties);
		char *err = nullptr;
		auto rc = openduck_ingest_begin(catalog.conn->Get(), schema.c_str(), table.c_str(), 0, TxnArg(state.txn),
		                                &arrow_schema, &state.upload, &err);
		if (arrow_schema.release) {
			arrow_schema.release(&arrow_schema);
		}
		if (rc != 0) {
			ThrowClientError(err, "bulk load into " + QuoteIdent(schema) + "." + QuoteIdent(table));
		}
		NewAppender(state);
	}

	void NewAppender(OdInsertState &state) const {
		state.appender = make_uniq<ArrowAppender>(state.types, STANDARD_VECTOR_SIZE, state.properties,
		                                          unordered_map<idx_t, const shared_ptr<ArrowTypeExtensionData>>());
	}

	void Flush(OdInsertState &state) const {
		auto array = state.appender->Finalize();
		char *err = nullptr;
		auto rc = openduck_ingest_push(state.upload, &array, &err);
		if (array.release) {
			array.release(&array);
		}
		if (rc != 0) {
			ThrowClientError(err, "bulk load into " + QuoteIdent(schema) + "." + QuoteIdent(table));
		}
		NewAppender(state);
	}

	OdCatalog &catalog;
	string schema;
	string table;
	vector<string> names;
	string create_sql;
};

PhysicalOperator &OdCatalog::PlanInsert(ClientContext &context, PhysicalPlanGenerator &planner, LogicalInsert &op,
                                        optional_ptr<PhysicalOperator> plan) {
	if (op.return_chunk) {
		throw NotImplementedException("openduck: INSERT ... RETURNING is not supported on a remote table");
	}
	if (op.on_conflict_info.action_type != OnConflictAction::THROW) {
		throw NotImplementedException("openduck: INSERT ... ON CONFLICT is not supported on a remote table");
	}
	if (!plan) {
		throw InternalException("openduck: INSERT without input");
	}
	if (!op.column_index_map.empty()) {
		// Reorder and fill defaults so the rows have every column in table order.
		plan = planner.ResolveDefaultsProjection(op, *plan);
	}
	auto &table = op.table.Cast<OdTable>();
	auto names = Strs(table.GetColumns().GetColumnNames());
	auto &insert = planner.Make<OdInsert>(op.types, op.estimated_cardinality, *this, Str(table.schema.name),
	                                      Str(table.name), std::move(names), "");
	insert.children.push_back(*plan);
	return insert;
}

PhysicalOperator &OdCatalog::PlanCreateTableAs(ClientContext &context, PhysicalPlanGenerator &planner,
                                               LogicalCreateTable &op, PhysicalOperator &plan) {
	auto &base = op.info->Base();
	auto sql = CreateTableSQL(Str(op.schema.name), base);
	auto names = Strs(base.columns.GetColumnNames());
	auto &insert = planner.Make<OdInsert>(op.types, op.estimated_cardinality, *this, Str(op.schema.name),
	                                      ObjectName(base), std::move(names), sql);
	insert.children.push_back(plan);
	return insert;
}

} // namespace openduck
