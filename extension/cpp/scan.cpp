// Scans of remote tables: DuckDB's own Arrow scan reads a stream that the Rust client fills with
// the result of `SELECT <projected columns> FROM <table> WHERE <pushed filters>` on the server.
#include "openduck.hpp"

#include "duckdb/common/enums/expression_type.hpp"
#include "duckdb/parser/parsed_data/create_table_info.hpp"
#include "duckdb/planner/binder.hpp"
#include "duckdb/planner/expression/bound_cast_expression.hpp"
#include "duckdb/planner/expression/bound_columnref_expression.hpp"
#include "duckdb/planner/operator/logical_get.hpp"
#include "duckdb/planner/operator/logical_projection.hpp"
#include "duckdb/storage/table_storage_info.hpp"
#if OPENDUCK_DUCKDB_V2
#include "duckdb/function/scalar/tablefilter_functions.hpp"
#include "duckdb/planner/expression/bound_comparison_expression.hpp"
#include "duckdb/planner/expression/bound_conjunction_expression.hpp"
#include "duckdb/planner/expression/bound_constant_expression.hpp"
#include "duckdb/planner/expression/bound_function_expression.hpp"
#include "duckdb/planner/expression/bound_operator_expression.hpp"
#include "duckdb/planner/filter/expression_filter.hpp"
#include "duckdb/planner/filter/table_filter_functions.hpp"
#include "duckdb/planner/table_filter_set.hpp"
#else
#include "duckdb/planner/filter/conjunction_filter.hpp"
#include "duckdb/planner/filter/constant_filter.hpp"
#include "duckdb/planner/filter/dynamic_filter.hpp"
#include "duckdb/planner/filter/in_filter.hpp"
#include "duckdb/planner/filter/null_filter.hpp"
#include "duckdb/planner/filter/optional_filter.hpp"
#include "duckdb/planner/filter/struct_filter.hpp"
#endif

namespace openduck {

string QuoteIdent(const string &name) {
	string out = "\"";
	for (auto c : name) {
		out += c;
		if (c == '"') {
			out += '"';
		}
	}
	return out + "\"";
}

namespace {

// The longest optional filter (a hint such as a join's key list) pushed to the server as SQL; a
// longer one is left out, keeping the remote SQL well under the server's statement limit.
const idx_t MAX_OPTIONAL_FILTER_SQL = 256 * 1024;

// A filter rendered as SQL, or nothing: optional filters (join and Top-N hints) may be skipped;
// a required filter that cannot be rendered is an error, since DuckDB will not apply it again.
struct Rendered {
	bool ok;
	string sql;
};

#if OPENDUCK_DUCKDB_V2
// DuckDB 2.0 hands scans every filter as an expression over the scanned column (a bound
// reference), with join and Top-N hints wrapped in internal optional/dynamic filter functions.
Rendered RenderExpression(const Expression &expr, const string &column);

Rendered RenderChildren(const vector<unique_ptr<Expression>> &children, const string &column, vector<string> &out) {
	for (auto &child : children) {
		auto r = RenderExpression(*child, column);
		if (!r.ok || r.sql.empty()) {
			return {false, ""};
		}
		out.push_back(r.sql);
	}
	return {true, ""};
}

// An optional filter: pushed when it can be rendered, else left out (DuckDB does not need it).
Rendered RenderOptional(optional_ptr<const Expression> child, const string &column) {
	if (!child) {
		return {true, ""};
	}
	auto r = RenderExpression(*child, column);
	return r.ok && r.sql.size() <= MAX_OPTIONAL_FILTER_SQL ? r : Rendered {true, ""};
}

Rendered RenderFunction(const BoundFunctionExpression &func, const string &column) {
	auto &name = Str(func.Function().GetName());
	if (BoundComparisonExpression::IsComparison(func)) {
		auto left = RenderExpression(BoundComparisonExpression::Left(func), column);
		auto right = RenderExpression(BoundComparisonExpression::Right(func), column);
		if (!left.ok || !right.ok || left.sql.empty() || right.sql.empty()) {
			return {false, ""};
		}
		return {true, "(" + left.sql + " " + ExpressionTypeToOperator(func.GetExpressionType()) + " " + right.sql + ")"};
	}
	if (name == TableFilterOptionalFun::Name) {
		return RenderOptional(ExpressionFilter::GetOptionalFilterChild(func), column);
	}
	if (name == TableFilterSelectivityOptionalFun::Name) {
		auto &info = func.BindInfo();
		auto data = info ? dynamic_cast<const SelectivityOptionalFilterFunctionData *>(info.get()) : nullptr;
		return RenderOptional(data ? data->child_filter_expr.get() : nullptr, column);
	}
	if (name == TableFilterDynamicFun::Name) {
		auto &info = func.BindInfo();
		auto data = info ? dynamic_cast<const DynamicFilterFunctionData *>(info.get()) : nullptr;
		if (!data || !data->filter_data || !data->filter_data->initialized) {
			return {true, ""};
		}
		// The filter applies to its input (the column, possibly cast), not always the bare column.
		if (func.GetChildren().empty()) {
			return {true, ""};
		}
		auto input = RenderExpression(*func.GetChildren()[0], column);
		if (!input.ok || input.sql.empty()) {
			return {true, ""}; // only a hint: left out when it cannot be expressed
		}
		auto &filter = *data->filter_data;
		annotated_shared_lock guard(filter.lock);
		return {true, "(" + input.sql + " " + ExpressionTypeToOperator(filter.comparison_type) + " " +
		                  filter.constant.ToSQLString() + ")"};
	}
	if (name == "struct_extract" || name == "struct_extract_at") {
		vector<string> args;
		if (!RenderChildren(func.GetChildren(), column, args).ok || args.size() != 2) {
			return {false, ""};
		}
		return {true, name + "(" + args[0] + ", " + args[1] + ")"};
	}
	return {false, ""};
}

Rendered RenderExpression(const Expression &expr, const string &column) {
	switch (expr.GetExpressionClass()) {
	case ExpressionClass::BOUND_REF:
		return {true, column};
	case ExpressionClass::BOUND_CONSTANT:
		return {true, expr.Cast<BoundConstantExpression>().GetValue().ToSQLString()};
	case ExpressionClass::BOUND_FUNCTION:
		return RenderFunction(expr.Cast<BoundFunctionExpression>(), column);
	case ExpressionClass::BOUND_CONJUNCTION: {
		auto &conj = expr.Cast<BoundConjunctionExpression>();
		bool is_and = expr.GetExpressionType() == ExpressionType::CONJUNCTION_AND;
		string sql;
		for (auto &child : conj.GetChildren()) {
			auto r = RenderExpression(*child, column);
			if (is_and && r.ok && r.sql.empty()) {
				continue;
			}
			if (!r.ok || r.sql.empty()) {
				// AND: an unknown required part cannot be dropped; OR: it constrains nothing we can express.
				return {false, ""};
			}
			sql += (sql.empty() ? "" : (is_and ? " AND " : " OR ")) + r.sql;
		}
		return {true, sql.empty() ? "" : "(" + sql + ")"};
	}
	case ExpressionClass::BOUND_OPERATOR: {
		auto &op = expr.Cast<BoundOperatorExpression>();
		vector<string> args;
		if (!RenderChildren(op.GetChildren(), column, args).ok || args.empty()) {
			return {false, ""};
		}
		switch (expr.GetExpressionType()) {
		case ExpressionType::OPERATOR_IS_NULL:
			return {true, "(" + args[0] + " IS NULL)"};
		case ExpressionType::OPERATOR_IS_NOT_NULL:
			return {true, "(" + args[0] + " IS NOT NULL)"};
		case ExpressionType::OPERATOR_NOT:
			return {true, "(NOT " + args[0] + ")"};
		case ExpressionType::COMPARE_IN:
		case ExpressionType::COMPARE_NOT_IN: {
			string sql = "(" + args[0] + (expr.GetExpressionType() == ExpressionType::COMPARE_IN ? " IN (" : " NOT IN (");
			for (idx_t i = 1; i < args.size(); i++) {
				sql += (i > 1 ? ", " : "") + args[i];
			}
			return {true, sql + "))"};
		}
		default:
			return {false, ""};
		}
	}
	default:
		return {false, ""};
	}
}

Rendered RenderFilter(const TableFilter &filter, const string &column) {
	auto &expression = ExpressionFilter::GetExpressionFilter(filter, "openduck remote scan");
	auto r = RenderExpression(*expression.expr, column);
	if (!r.ok && ExpressionFilter::IsOptionalFilter(filter)) {
		return {true, ""};
	}
	if (!r.ok) {
		throw NotImplementedException("openduck: cannot push filter '%s' to the server", expression.ToString(column));
	}
	return r;
}
#else
Rendered Render(const TableFilter &filter, const string &column);

Rendered RenderFilter(const TableFilter &filter, const string &column) {
	auto r = Render(filter, column);
	if (!r.ok) {
		throw NotImplementedException("openduck: cannot push filter '%s' to the server", filter.ToString(column));
	}
	return r;
}

Rendered Render(const TableFilter &filter, const string &column) {
	switch (filter.filter_type) {
	case TableFilterType::CONSTANT_COMPARISON: {
		auto &f = filter.Cast<ConstantFilter>();
		return {true, column + " " + ExpressionTypeToOperator(f.comparison_type) + " " + f.constant.ToSQLString()};
	}
	case TableFilterType::IS_NULL:
		return {true, column + " IS NULL"};
	case TableFilterType::IS_NOT_NULL:
		return {true, column + " IS NOT NULL"};
	case TableFilterType::CONJUNCTION_AND: {
		auto &f = filter.Cast<ConjunctionAndFilter>();
		string sql;
		for (auto &child : f.child_filters) {
			auto r = Render(*child, column);
			if (!r.ok) {
				if (child->filter_type == TableFilterType::OPTIONAL_FILTER) {
					continue;
				}
				return {false, ""};
			}
			if (r.sql.empty()) {
				continue;
			}
			sql += (sql.empty() ? "" : " AND ") + r.sql;
		}
		return {true, sql.empty() ? "" : "(" + sql + ")"};
	}
	case TableFilterType::CONJUNCTION_OR: {
		auto &f = filter.Cast<ConjunctionOrFilter>();
		string sql;
		for (auto &child : f.child_filters) {
			auto r = Render(*child, column);
			if (!r.ok || r.sql.empty()) {
				// An OR with an unknown branch constrains nothing we can express.
				return {false, ""};
			}
			sql += (sql.empty() ? "" : " OR ") + r.sql;
		}
		return {true, "(" + sql + ")"};
	}
	case TableFilterType::IN_FILTER: {
		auto &f = filter.Cast<InFilter>();
		string sql = column + " IN (";
		for (idx_t i = 0; i < f.values.size(); i++) {
			sql += (i ? ", " : "") + f.values[i].ToSQLString();
		}
		return {true, sql + ")"};
	}
	case TableFilterType::STRUCT_EXTRACT: {
		auto &f = filter.Cast<StructFilter>();
		auto child = f.child_name.empty() ? "struct_extract(" + column + ", " + to_string(f.child_idx + 1) + ")"
		                                  : "struct_extract(" + column + ", " + Value(f.child_name).ToSQLString() + ")";
		return Render(*f.child_filter, child);
	}
	case TableFilterType::OPTIONAL_FILTER: {
		// Implied by the query (e.g. the keys of a join's build side): push it when we can.
		auto &f = filter.Cast<OptionalFilter>();
		if (!f.child_filter) {
			return {true, ""};
		}
		auto r = Render(*f.child_filter, column);
		return r.ok && r.sql.size() <= MAX_OPTIONAL_FILTER_SQL ? r : Rendered {true, ""};
	}
	case TableFilterType::DYNAMIC_FILTER: {
		auto &f = filter.Cast<DynamicFilter>();
		if (!f.filter_data || !f.filter_data->initialized) {
			return {true, ""};
		}
		lock_guard<mutex> guard(f.filter_data->lock);
		return f.filter_data->filter ? Render(*f.filter_data->filter, column) : Rendered {true, ""};
	}
	default:
		return {false, ""};
	}
}

#endif

// The stream's row count is unknown in advance (1.5 keeps a field for it, 2.0 does not).
template <class T>
auto NoRowCount(T &stream, int) -> decltype(stream.number_of_rows = -1, void()) {
	stream.number_of_rows = -1;
}
template <class T>
void NoRowCount(T &, long) {
}
template <class T>
void NoRowCount(T &stream) {
	NoRowCount(stream, 0);
}

// What a scan asks the server for; streams are produced from a copy of it, so they never depend
// on the lifetime of the bind data they came from.
struct ScanRequest {
	// A scan of `schema`.`table`, or (when `query_sql` is set) a whole query shipped to the server.
	ScanRequest(std::shared_ptr<Connection> conn_p, ClientContext *context_p, string txn_p, string schema_p,
	            string table_p, string query_sql_p = "")
	    : conn(std::move(conn_p)), context(context_p), txn(std::move(txn_p)), schema(std::move(schema_p)),
	      table(std::move(table_p)), table_sql(QuoteIdent(schema) + "." + QuoteIdent(table)),
	      query_sql(std::move(query_sql_p)) {
	}

	std::shared_ptr<Connection> conn;
	// The query's client context, polled for interrupts while a stream waits on the server (bind
	// data is never reused by another query).
	ClientContext *context;
	// Server transaction the scan runs in ("" = autocommit).
	string txn;
	string schema;
	string table;
	// "schema"."table"
	string table_sql;
	// For a whole query shipped to the server: its SQL (then schema/table are unused).
	string query_sql;
	// For a fragment of a split query (then query_sql is its SQL, run when it has no plan).
	bool is_fragment = false;
	FragmentSpec fragment;
};

// Asks the server for the Arrow schema of the request's table or query.
void ExportSchemaOf(const ScanRequest &r, ArrowSchema &out) {
	char *err = nullptr;
	if (r.is_fragment) {
		// The split answer carries it: no call to the server.
		if (openduck_schema_from_ipc(reinterpret_cast<const uint8_t *>(r.fragment.schema.data()), r.fragment.schema.size(),
		                             &out, &err) != 0) {
			ThrowClientError(err, "fragment schema");
		}
		return;
	}
	auto rc = r.query_sql.empty()
	              ? openduck_table_schema(r.conn->Get(), r.schema.c_str(), r.table.c_str(), TxnArg(r.txn), &out, &err)
	              : openduck_describe(r.conn->Get(), r.query_sql.c_str(), TxnArg(r.txn), &out, &err);
	if (rc != 0) {
		ThrowClientError(err, r.query_sql.empty() ? "schema of " + r.table_sql : "remote query");
	}
}

// Bind data of a remote scan: DuckDB's Arrow scan state plus what to ask the server for.
struct OdScanData : public ArrowScanFunctionData {
	explicit OdScanData(ScanRequest request);

	// Exports the table's Arrow schema into schema_root and derives DuckDB's view of it.
	void LoadSchema(ClientContext *context);

	unique_ptr<FunctionData> Copy() const override;
	bool Equals(const FunctionData &other) const override {
		return this == &other;
	}
	// Bound to one transaction: a cached plan must be bound again.
	bool SupportStatementCache() const override {
		return false;
	}

	// What the scan asks the server for.
	ScanRequest request;
	// The server's row estimate of the table, if known.
	optional_idx estimated_rows;
	// Why the query this scan belongs to was not split (shown by EXPLAIN).
	string hybrid_note;
};

int Interrupted(void *context) {
	return static_cast<ClientContext *>(context)->IsInterrupted() ? 1 : 0;
}

// A remote result stream. A stream waiting on the server gives up once the query is
// interrupted (Ctrl-C, interrupt()), and that surfaces as DuckDB's own interrupt error.
struct OdStream : public ArrowArrayStreamWrapper {
	explicit OdStream(ClientContext *context) : context(context) {
	}
	shared_ptr<ArrowArrayWrapper> GetNextChunk() override {
		try {
			return ArrowArrayStreamWrapper::GetNextChunk();
		} catch (std::exception &) {
			if (context && context->IsInterrupted()) {
				throw InterruptException();
			}
			throw;
		}
	}
	ClientContext *context;
};

// Starts `sql` on the server, streaming into `stream`.
void StartQuery(const ScanRequest &data, const string &sql, OdStream &stream, const string &what) {
	char *err = nullptr;
	if (openduck_query(data.conn->Get(), sql.c_str(), TxnArg(data.txn), data.context ? Interrupted : nullptr,
	                   data.context, &stream.arrow_array_stream, &err) != 0) {
		if (data.context && data.context->IsInterrupted()) {
			openduck_free_string(err);
			throw InterruptException();
		}
		ThrowClientError(err, what);
	}
	NoRowCount(stream);
}

// A fragment's rows. DuckDB's projection and filters (its own, and the join filters it derives at
// run time from the other side of a join, such as the keys a hash table holds) are applied on
// the server around the fragment's SQL; without them the fragment runs by its plan.
unique_ptr<ArrowArrayStreamWrapper> FragmentStream(const ScanRequest &data, ArrowStreamParameters &params) {
	auto &f = data.fragment;
	auto where = RenderFilters(params.filters, params.projected_columns);
	auto &projected = params.projected_columns.columns;
	vector<uint32_t> indices;
	string columns;
	for (auto &name : projected) {
		// Fragment columns are c0, c1, …: the name is the index.
		indices.push_back(uint32_t(std::stoul(name.substr(1))));
		columns += (columns.empty() ? "" : ", ") + QuoteIdent(name);
	}
	bool whole = where.empty() && indices.size() == f.column_count;
	for (idx_t i = 0; whole && i < indices.size(); i++) {
		whole = indices[i] == i;
	}
	string sql = f.sql;
	string plan = f.plan;
	if (!whole) {
		if (columns.empty()) {
			columns = "NULL::BOOLEAN AS openduck_rows";
		}
		sql = "SELECT " + columns + " FROM (" + f.sql + ") AS \"__openduck_f\"" + (where.empty() ? "" : " WHERE " + where);
		plan.clear();
	}
	auto stream = make_uniq<OdStream>(data.context);
	char *err = nullptr;
	// No column projected (count(*)): a non-NULL empty projection; the stream has the one constant
	// column the SQL selects.
	uint32_t none = 0;
	if (openduck_exchange(data.conn->Get(), reinterpret_cast<const uint8_t *>(plan.data()), plan.size(), sql.c_str(),
	                      reinterpret_cast<const uint8_t *>(f.schema.data()), f.schema.size(),
	                      indices.empty() ? &none : indices.data(), indices.size(), TxnArg(data.txn),
	                      data.context ? Interrupted : nullptr, data.context, &stream->arrow_array_stream, &err) != 0) {
		if (data.context && data.context->IsInterrupted()) {
			openduck_free_string(err);
			throw InterruptException();
		}
		ThrowClientError(err, "remote fragment " + std::to_string(f.id));
	}
	NoRowCount(*stream);
	return std::move(stream);
}

unique_ptr<ArrowArrayStreamWrapper> ProduceStreamOf(const ScanRequest &data, ArrowStreamParameters &params) {
	if (data.is_fragment) {
		return FragmentStream(data, params);
	}
	if (!data.query_sql.empty()) {
		auto stream = make_uniq<OdStream>(data.context);
		StartQuery(data, data.query_sql, *stream, "remote query");
		return std::move(stream);
	}
	string columns;
	for (auto &name : params.projected_columns.columns) {
		columns += (columns.empty() ? "" : ", ") + QuoteIdent(name);
	}
	if (columns.empty()) {
		// Nothing projected (e.g. count(*) needs only the row count): fetch a constant column.
		columns = "NULL::BOOLEAN AS openduck_rows";
	}
	string sql = "SELECT " + columns + " FROM " + data.table_sql;
	auto where = RenderFilters(params.filters, params.projected_columns);
	if (!where.empty()) {
		sql += " WHERE " + where;
	}
	auto stream = make_uniq<OdStream>(data.context);
	StartQuery(data, sql, *stream, "remote scan of " + data.table_sql);
	return std::move(stream);
}

#if OPENDUCK_DUCKDB_V2
// DuckDB 2.0's Arrow scan asks a factory object for its streams.
struct OdStreamFactory : public ArrowScanFactory {
	explicit OdStreamFactory(ScanRequest request_p) : request(std::move(request_p)) {
	}
	void GetSchema(ArrowSchema &schema) override {
		ExportSchemaOf(request, schema);
	}
	unique_ptr<ArrowArrayStreamWrapper> ProduceStream(ArrowStreamParameters &parameters) override {
		return ProduceStreamOf(request, parameters);
	}
	ScanRequest request;
};

OdScanData::OdScanData(ScanRequest request_p) : ArrowScanFunctionData(nullptr), request(std::move(request_p)) {
}
#else
unique_ptr<ArrowArrayStreamWrapper> ProduceStream(uintptr_t factory, ArrowStreamParameters &params) {
	return ProduceStreamOf(reinterpret_cast<OdScanData *>(factory)->request, params);
}

OdScanData::OdScanData(ScanRequest request_p) : ArrowScanFunctionData(ProduceStream, 0), request(std::move(request_p)) {
	stream_factory_ptr = reinterpret_cast<uintptr_t>(this);
}
#endif

void OdScanData::LoadSchema(ClientContext *context) {
	ExportSchemaOf(request, schema_root.arrow_schema);
#if OPENDUCK_DUCKDB_V2
	factory = make_shared_ptr<OdStreamFactory>(request);
#endif
	if (context) {
		ArrowTableFunction::PopulateArrowTableSchema(*context, arrow_table, schema_root.arrow_schema);
		all_types = arrow_table.GetTypes();
	}
}

unique_ptr<FunctionData> OdScanData::Copy() const {
	auto copy = make_uniq<OdScanData>(request);
	copy->estimated_rows = estimated_rows;
	copy->LoadSchema(nullptr);
	copy->arrow_table = arrow_table;
	copy->all_types = all_types;
	copy->projection_pushdown_enabled = projection_pushdown_enabled;
	copy->hybrid_note = hybrid_note;
	return std::move(copy);
}

virtual_column_map_t NoVirtualColumns(ClientContext &, optional_ptr<FunctionData>) {
	return virtual_column_map_t();
}

InsertionOrderPreservingMap<string> ScanToString(TableFunctionToStringInput &input) {
	InsertionOrderPreservingMap<string> result;
	auto &data = input.bind_data->Cast<OdScanData>();
	if (data.request.is_fragment) {
		auto &f = data.request.fragment;
		result["Runs"] = "REMOTE (fragment " + std::to_string(f.id) + " of a hybrid plan, on the OpenDuck server)";
		result["Bridge"] = "REMOTE→LOCAL";
		result["Fragment"] = f.explain;
		result["SQL"] = f.sql;
		if (!f.whole_plan.empty()) {
			result["Hybrid plan"] = f.whole_plan;
		}
	} else if (data.request.query_sql.empty()) {
		result["Table"] = data.request.table_sql;
		result["Runs"] = "REMOTE (OpenDuck server)";
		if (!data.hybrid_note.empty()) {
			result["Hybrid"] = data.hybrid_note;
		}
	} else {
		result["Runs"] = "REMOTE (whole query on the OpenDuck server)";
		result["SQL"] = data.request.query_sql;
	}
	return result;
}

unique_ptr<NodeStatistics> ScanCardinality(ClientContext &, const FunctionData *bind_data) {
	auto &data = bind_data->Cast<OdScanData>();
	if (!data.estimated_rows.IsValid()) {
		return make_uniq<NodeStatistics>();
	}
	return make_uniq<NodeStatistics>(data.estimated_rows.GetIndex(), data.estimated_rows.GetIndex());
}

// Progress of a remote table scan (for DuckDB's progress bar and query_progress()): rows read so
// far against the server's row estimate; unknown (-1) without one or for a shipped query.
double ScanProgress(ClientContext &, const FunctionData *bind_data, const GlobalTableFunctionState *) {
	auto &data = bind_data->Cast<OdScanData>();
	if (!data.request.query_sql.empty() || !data.estimated_rows.IsValid() || data.estimated_rows.GetIndex() == 0) {
		return -1;
	}
	double read = double(data.lines_read.load());
	return MinValue<double>(100.0, 100.0 * read / double(data.estimated_rows.GetIndex()));
}

// Batch indexes for DuckDB's Arrow scan, so ordered remote results stay in order.
struct OrderedArrowScan : public ArrowTableFunction {
	using ArrowTableFunction::ArrowGetPartitionData;
};

TableFunction MakeScanFunction(const string &name, bool pushdown, vector<LogicalType> arguments = {}) {
	TableFunction scan(Ident(name), std::move(arguments), ArrowTableFunction::ArrowScanFunction, nullptr,
	                   ArrowTableFunction::ArrowScanInitGlobal, ArrowTableFunction::ArrowScanInitLocal);
	scan.projection_pushdown = pushdown;
	scan.filter_pushdown = pushdown;
	scan.filter_prune = pushdown;
	scan.get_virtual_columns = NoVirtualColumns;
	scan.get_partition_data = OrderedArrowScan::ArrowGetPartitionData;
	scan.cardinality = ScanCardinality;
	scan.table_scan_progress = ScanProgress;
	scan.to_string = ScanToString;
	// The bind data (a live connection) cannot be serialised; that also keeps DuckDB's common
	// subplan optimizer from merging scans of equally named tables of different attachments.
	scan.verify_serialization = false;
	return scan;
}

} // namespace

string RenderFilters(const TableFilterSet *filters, const ArrowProjectedColumns &columns) {
	if (!filters) {
		return "";
	}
	string sql;
#if OPENDUCK_DUCKDB_V2
	if (filters->HasMultiColumnFilters()) {
		throw NotImplementedException("openduck: multi-column filters cannot be pushed to the server");
	}
	for (auto &entry : *filters) {
		auto name = columns.projection_map.find(entry.GetIndex().GetIndex());
		auto &filter = entry.Filter();
#else
	for (auto &entry : filters->filters) {
		auto name = columns.projection_map.find(entry.first);
		auto &filter = *entry.second;
#endif
		if (name == columns.projection_map.end()) {
			throw InternalException("openduck: filter on a column that is not projected");
		}
		auto r = RenderFilter(filter, QuoteIdent(name->second));
		if (!r.sql.empty()) {
			sql += (sql.empty() ? "" : " AND ") + r.sql;
		}
	}
	return sql;
}

OdTable::OdTable(Catalog &catalog, SchemaCatalogEntry &schema, CreateTableInfo &info,
                 std::shared_ptr<Connection> conn_p)
    : TableCatalogEntry(catalog, schema, info), conn(std::move(conn_p)) {
#if OPENDUCK_DUCKDB_V2
	columns = info.columns.Copy();
#endif
}

unique_ptr<OdTable> OdTable::FromArrow(ClientContext &context, OdSchema &schema, const string &name,
                                       ArrowSchema &arrow_schema, std::shared_ptr<Connection> conn, bool is_view) {
	ArrowSchemaWrapper owned;
	owned.arrow_schema = arrow_schema;
	arrow_schema.release = nullptr;
	ArrowTableSchema converted;
	ArrowTableFunction::PopulateArrowTableSchema(context, converted, owned.arrow_schema);
	CreateTableInfo info(schema, Ident(name));
	auto &names = converted.GetNames();
	auto &types = converted.GetTypes();
	for (idx_t c = 0; c < names.size(); c++) {
		info.columns.AddColumn(ColumnDefinition(Ident(names[c]), types[c]));
	}
	auto table = make_uniq<OdTable>(schema.catalog, schema, info, std::move(conn));
	table->is_view = is_view;
	return table;
}

unique_ptr<BaseStatistics> OdTable::GetStatistics(ClientContext &context, column_t column_id) {
	return nullptr;
}

TableStorageInfo OdTable::GetStorageInfo(ClientContext &context) {
	TableStorageInfo info;
	info.cardinality = estimated_rows;
	return info;
}

virtual_column_map_t OdTable::GetVirtualColumns() const {
	// No rowid: DuckDB's Arrow scan cannot produce one.
	return virtual_column_map_t();
}

TableFunction OdTable::GetScanFunction(ClientContext &context, unique_ptr<FunctionData> &bind_data) {
	ScanRequest request(conn, &context, OdTransaction::Of(context, catalog), Str(schema.name), Str(name));
	auto data = make_uniq<OdScanData>(std::move(request));
	data->estimated_rows = estimated_rows;
	data->LoadSchema(&context);
	// The catalog entry's columns must be the ones the scan produces.
	if (data->all_types != GetColumns().GetColumnTypes()) {
		catalog.Cast<OdCatalog>().MarkStale();
		throw CatalogException("openduck: table %s changed on the server since it was listed; run the query again",
		                       data->request.table_sql);
	}
	bind_data = std::move(data);
	return MakeScanFunction("openduck_scan", true);
}

void NoteHybridFallback(LogicalGet &get, const string &reason) {
	if (FunctionName(get.function) == "openduck_scan" && get.bind_data) {
		get.bind_data->Cast<OdScanData>().hybrid_note = "not split: " + reason;
	}
}

TableFunction FragmentScanFunction(table_function_bind_t bind) {
	auto scan = MakeScanFunction("openduck_fragment", true, {LogicalType::INTEGER});
	scan.bind = bind;
	return scan;
}

unique_ptr<FunctionData> BindFragment(ClientContext &context, std::shared_ptr<Connection> conn, const string &txn,
                                      FragmentSpec spec, vector<LogicalType> &types, ColumnNames &names) {
	ScanRequest request(std::move(conn), &context, txn, "", "", spec.sql);
	request.is_fragment = true;
	request.fragment = std::move(spec);
	auto estimate = request.fragment.estimated_rows;
	auto data = make_uniq<OdScanData>(std::move(request));
	data->LoadSchema(&context);
	if (estimate >= 0) {
		data->estimated_rows = optional_idx(idx_t(estimate));
	}
	data->request.fragment.column_count = data->all_types.size();
	types = data->all_types;
	names = Idents(data->arrow_table.GetNames());
	return std::move(data);
}

std::shared_ptr<Connection> RemoteScanConnection(LogicalGet &get) {
	if (FunctionName(get.function) != "openduck_scan" || !get.bind_data) {
		return nullptr;
	}
	return get.bind_data->Cast<OdScanData>().request.conn;
}

unique_ptr<LogicalOperator> RemoteRowsPlan(ClientContext &context, Binder &binder, std::shared_ptr<Connection> conn,
                                           const string &sql, const string &txn, vector<string> &names,
                                           vector<LogicalType> &types) {
	auto data = make_uniq<OdScanData>(ScanRequest(std::move(conn), &context, txn, "", "", sql));
	data->LoadSchema(&context);
	types = data->all_types;
	names = data->arrow_table.GetNames();
	auto get = make_uniq<LogicalGet>(binder.GenerateTableIndex(), BindFunction(MakeScanFunction("openduck_query", false)),
	                                 std::move(data), types, Idents(names));
	for (idx_t i = 0; i < types.size(); i++) {
		get->AddColumnId(i);
	}
	return std::move(get);
}

unique_ptr<LogicalOperator> RemoteQueryPlan(ClientContext &context, Binder &binder, std::shared_ptr<Connection> conn,
                                            const string &sql, const string &txn, const vector<LogicalType> &expected) {
	vector<string> names;
	vector<LogicalType> types;
	auto get = RemoteRowsPlan(context, binder, std::move(conn), sql, txn, names, types);
	if (types.size() != expected.size()) {
		return nullptr;
	}
	auto get_index = get->Cast<LogicalGet>().table_index;
	if (types == expected) {
		return std::move(get);
	}
	// Types Arrow carries differently (HUGEINT as DECIMAL(38,0), UUID and ENUM as VARCHAR) are
	// cast back to what the query produces locally.
	vector<unique_ptr<Expression>> casts;
	for (idx_t i = 0; i < types.size(); i++) {
		unique_ptr<Expression> column = make_uniq<BoundColumnRefExpression>(types[i], ColumnBinding(get_index, ColumnIndexOf(i)));
		casts.push_back(BoundCastExpression::AddCastToType(context, std::move(column), expected[i]));
	}
	auto projection = make_uniq<LogicalProjection>(binder.GenerateTableIndex(), std::move(casts));
	projection->children.push_back(std::move(get));
	return std::move(projection);
}

} // namespace openduck
