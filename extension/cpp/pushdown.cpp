// Whole-query pushdown: a query that reads only tables of one attached OpenDuck database runs
// entirely on the server (joins, aggregates, ORDER BY, LIMIT), and only its result crosses the
// wire. Anything else (local tables, other catalogs, parameters, local-only functions the server
// cannot prepare) keeps the hybrid plan, where remote scans push projections and filters.
//
// Off with `SET openduck_ship_queries = false`.
#include "openduck.hpp"

#include "duckdb/main/attached_database.hpp"
#include "duckdb/main/database_manager.hpp"
#include "duckdb/optimizer/optimizer.hpp"
#include "duckdb/optimizer/optimizer_extension.hpp"
#include "duckdb/parser/parser.hpp"
#include "duckdb/parser/statement/explain_statement.hpp"
#include "duckdb/parser/statement/select_statement.hpp"
#include "duckdb/planner/binder.hpp"

namespace openduck {

namespace {

// Operators a query shipped whole may consist of (all leaves must be remote scans or constants).
bool Shippable(LogicalOperatorType type) {
	switch (type) {
	case LogicalOperatorType::LOGICAL_PROJECTION:
	case LogicalOperatorType::LOGICAL_FILTER:
	case LogicalOperatorType::LOGICAL_AGGREGATE_AND_GROUP_BY:
	case LogicalOperatorType::LOGICAL_WINDOW:
	case LogicalOperatorType::LOGICAL_UNNEST:
	case LogicalOperatorType::LOGICAL_LIMIT:
	case LogicalOperatorType::LOGICAL_ORDER_BY:
	case LogicalOperatorType::LOGICAL_TOP_N:
	case LogicalOperatorType::LOGICAL_DISTINCT:
	case LogicalOperatorType::LOGICAL_PIVOT:
	case LogicalOperatorType::LOGICAL_GET:
	case LogicalOperatorType::LOGICAL_DELIM_GET:
	case LogicalOperatorType::LOGICAL_EXPRESSION_GET:
	case LogicalOperatorType::LOGICAL_DUMMY_SCAN:
	case LogicalOperatorType::LOGICAL_EMPTY_RESULT:
	case LogicalOperatorType::LOGICAL_CTE_REF:
	case LogicalOperatorType::LOGICAL_DELIM_JOIN:
	case LogicalOperatorType::LOGICAL_COMPARISON_JOIN:
	case LogicalOperatorType::LOGICAL_ANY_JOIN:
	case LogicalOperatorType::LOGICAL_CROSS_PRODUCT:
	case LogicalOperatorType::LOGICAL_POSITIONAL_JOIN:
	case LogicalOperatorType::LOGICAL_ASOF_JOIN:
	case LogicalOperatorType::LOGICAL_DEPENDENT_JOIN:
	case LogicalOperatorType::LOGICAL_UNION:
	case LogicalOperatorType::LOGICAL_EXCEPT:
	case LogicalOperatorType::LOGICAL_INTERSECT:
	case LogicalOperatorType::LOGICAL_RECURSIVE_CTE:
	case LogicalOperatorType::LOGICAL_MATERIALIZED_CTE:
		return true;
	default:
		return false;
	}
}

// Whether every scan under `op` reads the same remote database; sets `conn` to it.
bool AllRemote(LogicalOperator &op, std::shared_ptr<Connection> &conn) {
	if (!Shippable(op.type)) {
		return false;
	}
	if (op.type == LogicalOperatorType::LOGICAL_GET) {
		auto remote = RemoteScanConnection(op.Cast<LogicalGet>());
		if (!remote || (conn && conn != remote)) {
			return false;
		}
		conn = remote;
	}
	for (auto &child : op.children) {
		if (!AllRemote(*child, conn)) {
			return false;
		}
	}
	return true;
}

// The current statement as SQL the server can run, or "" if it is not a plain SELECT.
string ShippedSQL(ClientContext &context, const string &catalog) {
	auto statement = CurrentSelect(context);
	if (!statement) {
		return "";
	}
	auto &select = statement->Cast<SelectStatement>();
	StripCatalog(*select.node, catalog);
	return select.ToString();
}

void ShipWholeQuery(OptimizerExtensionInput &input, unique_ptr<LogicalOperator> &root) {
	auto &context = input.context;
	// EXPLAIN shows what would run: decide for the plan it explains.
	auto &plan = root && root->type == LogicalOperatorType::LOGICAL_EXPLAIN && !root->children.empty()
	                 ? root->children[0]
	                 : root;
	Value enabled;
	if (context.TryGetCurrentSetting("openduck_ship_queries", enabled) && !enabled.IsNull() &&
	    !BooleanValue::Get(enabled)) {
		return;
	}
	std::shared_ptr<Connection> conn;
	if (!plan) {
		return;
	}
	if (!AllRemote(*plan, conn) || !conn) {
		// Local data too (or more than one attachment): split the query between them.
		SplitQuery(context, input.optimizer.binder, plan);
		return;
	}
	auto catalog = CatalogOf(context, conn);
	if (!catalog) {
		return;
	}
	string sql;
	try {
		sql = ShippedSQL(context, Str(catalog->GetName()));
	} catch (std::exception &) {
		return;
	}
	if (sql.empty()) {
		return;
	}
	plan->ResolveOperatorTypes();
	unique_ptr<LogicalOperator> remote;
	try {
		// The server prepares the query (nothing runs yet); if it cannot, or its result types
		// differ, the hybrid plan stays.
		remote = RemoteQueryPlan(context, input.optimizer.binder, conn, sql, OdTransaction::Of(context, *catalog),
		                         plan->types);
	} catch (std::exception &) {
		return;
	}
	if (remote) {
		plan = std::move(remote);
	}
}

// `text` (an EXPLAIN statement) without its EXPLAIN [ANALYZE] [(options)] prefix.
string ExplainedText(const string &text) {
	idx_t i = 0;
	auto skip_space = [&]() {
		while (i < text.size() && StringUtil::CharacterIsSpace(text[i])) {
			i++;
		}
	};
	auto keyword = [&](const char *word) {
		auto n = strlen(word);
		if (i + n <= text.size() && StringUtil::CIEquals(text.substr(i, n), word) &&
		    (i + n == text.size() || !StringUtil::CharacterIsAlphaNumeric(text[i + n]))) {
			i += n;
			return true;
		}
		return false;
	};
	skip_space();
	keyword("EXPLAIN");
	skip_space();
	keyword("ANALYZE");
	skip_space();
	if (i < text.size() && text[i] == '(') {
		auto close = text.find(')', i);
		i = close == string::npos ? text.size() : close + 1;
	}
	return text.substr(i);
}

} // namespace

optional_ptr<OdCatalog> CatalogOf(ClientContext &context, const std::shared_ptr<Connection> &conn) {
	for (auto &db : DatabaseManager::Get(context).GetDatabases(context)) {
		auto &catalog = db->GetCatalog();
		if (catalog.GetCatalogType() == "openduck" && catalog.Cast<OdCatalog>().conn == conn) {
			return &catalog.Cast<OdCatalog>();
		}
	}
	return nullptr;
}

vector<unique_ptr<SQLStatement>> ParseStatements(ClientContext &context, const string &sql) {
#if OPENDUCK_DUCKDB_V2
	Parser parser(context);
#else
	Parser parser(context.GetParserOptions());
#endif
	parser.ParseQuery(sql);
	return std::move(parser.statements);
}

unique_ptr<SQLStatement> CurrentSelect(ClientContext &context, string *sql) {
	try {
		auto statements = ParseStatements(context, context.GetCurrentQuery());
		if (statements.size() != 1) {
			return nullptr;
		}
		auto statement = std::move(statements[0]);
		auto text = context.GetCurrentQuery();
		if (statement->type == StatementType::EXPLAIN_STATEMENT) {
			statement = std::move(statement->Cast<ExplainStatement>().stmt);
			// The explained statement's own text: what follows EXPLAIN [ANALYZE] [(options)].
			text = ExplainedText(text);
		}
		if (statement->type != StatementType::SELECT_STATEMENT || !statement->named_param_map.empty()) {
			return nullptr;
		}
		if (sql) {
			*sql = text;
		}
		return statement;
	} catch (std::exception &) {
		return nullptr;
	}
}

void RegisterWholeQueryPushdown(DBConfig &config) {
	config.AddExtensionOption("openduck_ship_queries",
	                          "Run queries that read only one attached OpenDuck database entirely on its server",
	                          LogicalType::BOOLEAN, Value::BOOLEAN(true));
	OptimizerExtension extension;
	extension.pre_optimize_function = ShipWholeQuery;
	OptimizerExtension::Register(config, extension);
}

} // namespace openduck
