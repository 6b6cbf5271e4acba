// Hybrid execution in the client: a query that reads local data and an OpenDuck attachment is
// split by the attachment's server (the split action) into a local part and remote fragments;
// the local part replaces DuckDB's plan, and each fragment is read by `openduck_fragment(id)`, a
// scan that streams the fragment's rows from the server (DoExchange).
//
// What is DuckDB's job stays DuckDB's: which table each name in the query means (search path,
// USE, qualified names) is asked of DuckDB's catalog and sent with the query; the local part is
// bound and optimized by DuckDB like any query. Anything that does not fit — a view, a parameter,
// a type Arrow cannot carry, a split the server declines — keeps DuckDB's own plan (remote scans
// with pushed filters), and EXPLAIN says why on the remote scans.
//
// Off with `SET openduck_hybrid = 'off'`.
#include "openduck.hpp"

#include "duckdb/catalog/catalog_entry/table_catalog_entry.hpp"
#include "duckdb/common/arrow/arrow_converter.hpp"
#include "duckdb/storage/table_storage_info.hpp"
#include "duckdb/main/client_config.hpp"
#include "duckdb/main/client_context.hpp"
#include "duckdb/main/client_context_state.hpp"
#include "duckdb/main/settings.hpp"
#include "duckdb/parser/expression/constant_expression.hpp"
#include "duckdb/parser/expression/function_expression.hpp"
#include "duckdb/parser/expression/subquery_expression.hpp"
#include "duckdb/parser/parsed_expression_iterator.hpp"
#include "duckdb/parser/parser.hpp"
#include "duckdb/parser/query_node/select_node.hpp"
#include "duckdb/parser/statement/select_statement.hpp"
#include "duckdb/parser/tableref/basetableref.hpp"
#include "duckdb/parser/tableref/table_function_ref.hpp"
#include "duckdb/planner/binder.hpp"
#include "duckdb/planner/expression/bound_cast_expression.hpp"
#include "duckdb/planner/expression/bound_columnref_expression.hpp"
#include "duckdb/planner/operator/logical_projection.hpp"
#include "duckdb/planner/planner.hpp"

namespace openduck {

namespace {

const char *const FRAGMENT_PREFIX = "__openduck_fragment_";

// What differs between DuckDB 1.5 and 2.0 here.
#if OPENDUCK_DUCKDB_V2
unique_ptr<ParsedExpression> IntegerConstant(int64_t value) {
	return make_uniq<ConstantExpression>(Literal::Integer(value));
}
QueryNode &SubqueryNode(SubqueryExpression &expr) {
	return *expr.SubqueryMutable()->node;
}
idx_t IndexValue(TableIndex index) {
	return index.index;
}
// The name as the query spells it.
vector<string> Spelled(BaseTableRef &ref) {
	auto &name = ref.GetQualifiedName();
	vector<string> parts;
	for (auto part : {&name.Catalog(), &name.Schema()}) {
		if (!part->empty()) {
			parts.push_back(Str(*part));
		}
	}
	parts.push_back(Str(name.Name()));
	return parts;
}
// The table or view the name means to DuckDB, if any.
optional_ptr<CatalogEntry> Resolve(ClientContext &context, BaseTableRef &ref) {
	auto name = ref.GetQualifiedName();
	Binder::BindSchemaOrCatalog(context, name);
	EntryLookupInfo lookup(CatalogType::TABLE_ENTRY, name);
	return Catalog::GetEntry(context, lookup, OnEntryNotFound::RETURN_NULL);
}
#else
unique_ptr<ParsedExpression> IntegerConstant(int64_t value) {
	return make_uniq<ConstantExpression>(Value::INTEGER(int32_t(value)));
}
QueryNode &SubqueryNode(SubqueryExpression &expr) {
	return *expr.subquery->node;
}
idx_t IndexValue(idx_t index) {
	return index;
}
vector<string> Spelled(BaseTableRef &ref) {
	vector<string> parts;
	for (auto part : {&ref.catalog_name, &ref.schema_name}) {
		if (!part->empty()) {
			parts.push_back(*part);
		}
	}
	parts.push_back(ref.table_name);
	return parts;
}
optional_ptr<CatalogEntry> Resolve(ClientContext &context, BaseTableRef &ref) {
	string catalog = ref.catalog_name, schema = ref.schema_name;
	Binder::BindSchemaOrCatalog(context, catalog, schema);
	EntryLookupInfo lookup(CatalogType::TABLE_ENTRY, ref.table_name);
	return Catalog::GetEntry(context, catalog, schema, lookup, OnEntryNotFound::RETURN_NULL);
}
#endif

// The split whose local part is being bound on this thread: the fragment scans it names bind
// to its fragments.
struct ActiveSplit {
	std::shared_ptr<Connection> conn;
	string txn;
	vector<FragmentSpec> fragments;
};
thread_local ActiveSplit *active_split = nullptr;

// Sets the active split for the lifetime of the guard.
struct ActiveGuard {
	explicit ActiveGuard(ActiveSplit &split) {
		active_split = &split;
	}
	~ActiveGuard() {
		active_split = nullptr;
	}
};

// `__openduck_fragment_<id>` in a local part is a scan of fragment id.
unique_ptr<TableRef> FragmentReplacement(ClientContext &, ReplacementScanInput &input,
                                         optional_ptr<ReplacementScanData>) {
	auto &name = input.table_name;
	if (!active_split || !StringUtil::StartsWith(name, FRAGMENT_PREFIX)) {
		return nullptr;
	}
	auto digits = name.substr(strlen(FRAGMENT_PREFIX));
	if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != string::npos) {
		return nullptr;
	}
	auto ref = make_uniq<TableFunctionRef>();
	vector<unique_ptr<ParsedExpression>> children;
	children.push_back(IntegerConstant(std::stoi(digits)));
	ref->function = make_uniq<FunctionExpression>(Ident("openduck_fragment"), std::move(children));
	ref->alias = Ident(name);
	return std::move(ref);
}

unique_ptr<FunctionData> FragmentBind(ClientContext &context, TableFunctionBindInput &input,
                                      vector<LogicalType> &types, ColumnNames &names) {
	if (!active_split) {
		throw BinderException("openduck_fragment reads a fragment of a hybrid plan; it is not for direct use");
	}
	auto id = input.inputs[0].GetValue<int32_t>();
	for (auto &fragment : active_split->fragments) {
		if (int32_t(fragment.id) == id) {
			return BindFragment(context, active_split->conn, active_split->txn, fragment, types, names);
		}
	}
	throw BinderException("openduck: the hybrid plan has no fragment %d", id);
}

// Every table reference of a statement, subqueries and CTEs included.
void WalkNode(QueryNode &node, vector<reference<BaseTableRef>> &refs);

void WalkExpression(ParsedExpression &expr, vector<reference<BaseTableRef>> &refs) {
	if (expr.GetExpressionClass() == ExpressionClass::SUBQUERY) {
		WalkNode(SubqueryNode(expr.Cast<SubqueryExpression>()), refs);
	}
	ParsedExpressionIterator::EnumerateChildren(expr, [&](ParsedExpression &child) { WalkExpression(child, refs); });
}

void WalkNode(QueryNode &node, vector<reference<BaseTableRef>> &refs) {
	ParsedExpressionIterator::EnumerateQueryNodeChildren(
	    node,
	    [&](unique_ptr<ParsedExpression> &child) {
		    if (child) {
			    WalkExpression(*child, refs);
		    }
	    },
	    [&](TableRef &ref) {
		    if (ref.type == TableReferenceType::BASE_TABLE) {
			    refs.push_back(ref.Cast<BaseTableRef>());
		    }
	    });
}

// Frees an OpenDuckSplit at scope end.
struct SplitHandle {
	explicit SplitHandle(const string &sql) : split(openduck_split_new(sql.c_str())) {
	}
	~SplitHandle() {
		openduck_split_free(split);
	}
	OpenDuckSplit *split;
};

// The session settings that change what SQL means; the server compares them with its own.
const char *const MEANING_SETTINGS[] = {"TimeZone",           "Calendar",      "default_collation",
                                        "integer_division",   "default_order", "default_null_order"};

// Why `statement` cannot be described to the planner, or "" once `split` describes it.
string Describe(ClientContext &context, SQLStatement &statement, OdCatalog &remote, OpenDuckSplit *split) {
	vector<reference<BaseTableRef>> refs;
	WalkNode(*statement.Cast<SelectStatement>().node, refs);
	auto properties = context.GetClientProperties();
	for (auto &ref_wrapper : refs) {
		auto &ref = ref_wrapper.get();
		if (ref.at_clause) {
			return "a table is read AT a version";
		}
		auto spelled = Spelled(ref);
		optional_ptr<CatalogEntry> entry;
		try {
			entry = Resolve(context, ref);
		} catch (std::exception &) {
			entry = nullptr;
		}
		// Not a table (a CTE, a view, a file): the planner is not told, and resolves CTEs itself.
		if (!entry || entry->type != CatalogType::TABLE_ENTRY) {
			continue;
		}
		auto &table = entry->Cast<TableCatalogEntry>();
		vector<const char *> parts;
		for (auto &p : spelled) {
			parts.push_back(p.c_str());
		}
		char *err = nullptr;
		int rc;
		// Row estimates let the planner (and DuckDB, joining fragments) size each side.
		int64_t rows = -1;
		try {
			auto info = table.GetStorageInfo(context);
			if (info.cardinality.IsValid()) {
				rows = int64_t(info.cardinality.GetIndex());
			}
		} catch (std::exception &) {
		}
		if (&table.ParentCatalog() == &remote) {
			rc = openduck_split_add_relation(split, parts.data(), parts.size(), 1, nullptr, Str(table.schema.name).c_str(),
			                                 Str(table.name).c_str(), nullptr, rows, &err);
		} else {
			ArrowSchema arrow;
			auto names = table.GetColumns().GetColumnNames();
			auto types = table.GetColumns().GetColumnTypes();
			try {
				ArrowConverter::ToArrowSchema(&arrow, types, Strs(names), properties);
			} catch (std::exception &e) {
				return "the columns of " + Str(table.name) + " cannot be described in Arrow: " + ErrorData(e).RawMessage();
			}
			auto catalog_name = Str(table.ParentCatalog().GetName());
			rc = openduck_split_add_relation(split, parts.data(), parts.size(), 0, catalog_name.c_str(),
			                                 Str(table.schema.name).c_str(), Str(table.name).c_str(), &arrow, rows, &err);
		}
		if (rc != 0) {
			string message = err ? err : "unknown error";
			openduck_free_string(err);
			return message;
		}
	}
	for (auto name : MEANING_SETTINGS) {
		Value value;
		if (context.TryGetCurrentSetting(name, value) && !value.IsNull()) {
			openduck_split_add_setting(split, name, value.ToString().c_str());
		}
	}
	return "";
}

// How many join keys DuckDB may turn into an IN filter while a split query runs (its default is
// 50): the keys of a selective local side then reach the server with each fragment's SQL, so the
// server sends only the rows that can join. A session that set the limit itself keeps its own.
const idx_t SPLIT_OR_FILTER_KEYS = 100000;

// Puts the session's IN-filter limit back when the query ends.
struct RestoreOrFilterLimit : public ClientContextState {
	void QueryEnd(ClientContext &context) override {
		if (raised) {
			ClientConfig::GetConfig(context).user_settings.ClearSetting(DynamicOrFilterThresholdSetting::SettingIndex);
			raised = false;
		}
	}
	bool raised = false;
};

void RaiseOrFilterLimit(ClientContext &context) {
	auto &settings = ClientConfig::GetConfig(context).user_settings;
	auto index = DynamicOrFilterThresholdSetting::SettingIndex;
	if (settings.IsSet(index)) {
		return;
	}
	auto restore = context.registered_state->GetOrCreate<RestoreOrFilterLimit>("openduck_restore_or_filter_limit");
	settings.SetUserSetting(index, Value::UBIGINT(SPLIT_OR_FILTER_KEYS));
	restore->raised = true;
}

// The largest table index `op` and its children use.
idx_t MaxTableIndex(LogicalOperator &op) {
	idx_t max = 0;
	for (auto index : op.GetTableIndex()) {
		max = MaxValue(max, IndexValue(index));
	}
	for (auto &child : op.children) {
		max = MaxValue(max, MaxTableIndex(*child));
	}
	return max;
}

// Shows `reason` on every remote scan of `op` (EXPLAIN).
void NoteFallback(LogicalOperator &op, const string &reason) {
	if (op.type == LogicalOperatorType::LOGICAL_GET) {
		NoteHybridFallback(op.Cast<LogicalGet>(), reason);
	}
	for (auto &child : op.children) {
		NoteFallback(*child, reason);
	}
}

// The first OpenDuck catalog the query reads (the split is asked of its server; tables of other
// attachments are local to that server: the client reads them with its own remote scans).
optional_ptr<OdCatalog> RemoteCatalog(ClientContext &context, LogicalOperator &op, optional_ptr<OdCatalog> found) {
	if (!found && op.type == LogicalOperatorType::LOGICAL_GET) {
		auto conn = RemoteScanConnection(op.Cast<LogicalGet>());
		if (conn) {
			found = CatalogOf(context, conn);
		}
	}
	for (auto &child : op.children) {
		found = RemoteCatalog(context, *child, found);
	}
	return found;
}

// The split's local part, bound and planned by DuckDB, its columns cast to `expected`.
unique_ptr<LogicalOperator> PlanLocal(ClientContext &context, Binder &outer, ActiveSplit &active, const string &sql,
                                      const vector<LogicalType> &expected) {
	auto statements = ParseStatements(context, sql);
	if (statements.size() != 1) {
		throw InternalException("openduck: the local part is not one statement");
	}
	ActiveGuard guard(active);
	Planner planner(context);
	planner.CreatePlan(std::move(statements[0]));
	auto plan = std::move(planner.plan);
	if (planner.types.size() != expected.size()) {
		throw InternalException("openduck: the local part has %d columns, the query %d", planner.types.size(),
		                        expected.size());
	}
	// Table indexes of DuckDB's optimizer must not collide with the new plan's.
	auto max = MaxTableIndex(*plan);
	while (IndexValue(outer.GenerateTableIndex()) <= max) {
	}
	if (planner.types == expected) {
		return plan;
	}
	plan->ResolveOperatorTypes();
	auto bindings = plan->GetColumnBindings();
	vector<unique_ptr<Expression>> casts;
	for (idx_t i = 0; i < expected.size(); i++) {
		unique_ptr<Expression> column = make_uniq<BoundColumnRefExpression>(plan->types[i], bindings[i]);
		casts.push_back(BoundCastExpression::AddCastToType(context, std::move(column), expected[i]));
	}
	auto projection = make_uniq<LogicalProjection>(outer.GenerateTableIndex(), std::move(casts));
	projection->children.push_back(std::move(plan));
	return std::move(projection);
}

// openduck_explain(sql): the split plan of a query, one labelled operator per row.
struct ExplainData : public TableFunctionData {
	vector<string> lines;
};

struct ExplainState : public GlobalTableFunctionState {
	idx_t next = 0;
};

unique_ptr<FunctionData> ExplainBind(ClientContext &context, TableFunctionBindInput &input, vector<LogicalType> &types,
                                     ColumnNames &names) {
	auto sql = input.inputs[0].GetValue<string>();
	types = {LogicalType::VARCHAR};
	names = Idents({"plan"});
	auto data = make_uniq<ExplainData>();
	auto statements = ParseStatements(context, sql);
	if (statements.size() != 1 || statements[0]->type != StatementType::SELECT_STATEMENT) {
		throw BinderException("openduck_explain takes one SELECT");
	}
	auto &statement = *statements[0];
	vector<reference<BaseTableRef>> refs;
	WalkNode(*statement.Cast<SelectStatement>().node, refs);
	optional_ptr<OdCatalog> remote;
	for (auto &ref : refs) {
		optional_ptr<CatalogEntry> entry;
		try {
			entry = Resolve(context, ref.get());
		} catch (std::exception &) {
		}
		if (entry && entry->ParentCatalog().GetCatalogType() == "openduck") {
			remote = &entry->ParentCatalog().Cast<OdCatalog>();
			break;
		}
	}
	string text;
	if (!remote) {
		text = "not split: the query names no table of an OpenDuck attachment (views are not looked into)";
	} else {
		SplitHandle handle(sql);
		auto problem = Describe(context, statement, *remote, handle.split);
		char *err = nullptr;
		if (!problem.empty()) {
			text = "not split: " + problem;
		} else if (openduck_split_run(remote->conn->Get(), handle.split, TxnArg(OdTransaction::Of(context, *remote)),
		                              &err) != 0) {
			text = "not split: the server could not split it: " + string(err ? err : "unknown error");
			openduck_free_string(err);
		} else if (string(openduck_split_fallback(handle.split)).empty()) {
			text = openduck_split_explain(handle.split);
		} else {
			text = "not split: " + string(openduck_split_fallback(handle.split));
		}
	}
	for (auto &line : StringUtil::Split(text, '\n')) {
		data->lines.push_back(line);
	}
	return std::move(data);
}

unique_ptr<GlobalTableFunctionState> ExplainInit(ClientContext &, TableFunctionInitInput &) {
	return make_uniq<ExplainState>();
}

void ExplainScan(ClientContext &, TableFunctionInput &input, DataChunk &output) {
	auto &data = input.bind_data->Cast<ExplainData>();
	auto &state = input.global_state->Cast<ExplainState>();
	idx_t count = 0;
	while (state.next < data.lines.size() && count < STANDARD_VECTOR_SIZE) {
		output.SetValue(0, count++, Value(data.lines[state.next++]));
	}
	output.SetCardinality(count);
}

} // namespace

void SplitQuery(ClientContext &context, Binder &binder, unique_ptr<LogicalOperator> &plan) {
	auto remote = RemoteCatalog(context, *plan, nullptr);
	if (!remote) {
		return;
	}
	Value mode;
	if (context.TryGetCurrentSetting("openduck_hybrid", mode) && !mode.IsNull()) {
		auto value = StringUtil::Lower(mode.ToString());
		if (value == "off") {
			return;
		}
		if (value != "auto") {
			throw InvalidInputException("openduck_hybrid is '%s'; it must be 'auto' or 'off'", mode.ToString());
		}
	}

	string sql;
	auto statement = CurrentSelect(context, &sql);
	if (!statement) {
		NoteFallback(*plan, "only a single SELECT without parameters is split");
		return;
	}
	SplitHandle handle(sql);
	auto problem = Describe(context, *statement, *remote, handle.split);
	if (!problem.empty()) {
		NoteFallback(*plan, problem);
		return;
	}
	auto txn = OdTransaction::Of(context, *remote);
	char *err = nullptr;
	if (openduck_split_run(remote->conn->Get(), handle.split, TxnArg(txn), &err) != 0) {
		string message = err ? err : "unknown error";
		openduck_free_string(err);
		NoteFallback(*plan, "the server could not split it: " + message);
		return;
	}
	string fallback = openduck_split_fallback(handle.split);
	if (!fallback.empty()) {
		NoteFallback(*plan, fallback);
		return;
	}
	ActiveSplit active;
	active.conn = remote->conn;
	active.txn = txn;
	auto count = openduck_split_fragment_count(handle.split);
	for (idx_t i = 0; i < count; i++) {
		FragmentSpec spec;
		spec.id = openduck_split_fragment_id(handle.split, i);
		spec.estimated_rows = openduck_split_fragment_rows(handle.split, i);
		size_t len = 0;
		auto plan_bytes = openduck_split_fragment_plan(handle.split, i, &len);
		spec.plan = string(reinterpret_cast<const char *>(plan_bytes), len);
		auto schema_bytes = openduck_split_fragment_schema(handle.split, i, &len);
		spec.schema = string(reinterpret_cast<const char *>(schema_bytes), len);
		spec.sql = openduck_split_fragment_sql(handle.split, i);
		spec.explain = openduck_split_fragment_explain(handle.split, i);
		if (i == 0) {
			spec.whole_plan = openduck_split_explain(handle.split);
		}
		active.fragments.push_back(std::move(spec));
	}
	plan->ResolveOperatorTypes();
	try {
		plan = PlanLocal(context, binder, active, openduck_split_local_sql(handle.split), plan->types);
	} catch (std::exception &e) {
		ErrorData error(e);
		NoteFallback(*plan, "its local part did not bind: " + error.RawMessage());
		return;
	}
	RaiseOrFilterLimit(context);
}

void RegisterHybrid(DBConfig &config, ExtensionLoader &loader) {
	config.AddExtensionOption("openduck_hybrid",
	                          "Split queries that read local data and an OpenDuck attachment between this DuckDB and "
	                          "the server: 'auto' (default) or 'off'",
	                          LogicalType::VARCHAR, Value("auto"));
	config.replacement_scans.emplace_back(FragmentReplacement);
	loader.RegisterFunction(FragmentScanFunction(FragmentBind));
	loader.RegisterFunction(
	    TableFunction(Ident("openduck_explain"), {LogicalType::VARCHAR}, ExplainScan, ExplainBind, ExplainInit));
}

} // namespace openduck
