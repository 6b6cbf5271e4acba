// UPDATE and DELETE on a remote table run as a whole on the server.
//
// DuckDB cannot bind them against a remote table (they need local row ids), and when binding
// fails it offers the statement to operator extensions: if the statement's table is in an
// attached OpenDuck database and it reads nothing else, it is sent to the server as SQL (with
// the local catalog name removed) and planned as a scan that returns the server's row count.
#include "openduck.hpp"

#include "duckdb/parser/expression/subquery_expression.hpp"
#include "duckdb/parser/parsed_expression_iterator.hpp"
#include "duckdb/parser/query_node.hpp"
#include "duckdb/parser/statement/delete_statement.hpp"
#include "duckdb/parser/statement/explain_statement.hpp"
#include "duckdb/planner/operator/logical_explain.hpp"
#include "duckdb/parser/statement/select_statement.hpp"
#include "duckdb/parser/statement/update_statement.hpp"
#if OPENDUCK_DUCKDB_V2
#include "duckdb/parser/query_node/delete_query_node.hpp"
#include "duckdb/parser/query_node/update_query_node.hpp"
#endif
#include "duckdb/parser/tableref/basetableref.hpp"
#include "duckdb/planner/binder.hpp"
#include "duckdb/planner/operator/logical_get.hpp"
#include "duckdb/planner/operator_extension.hpp"

namespace openduck {

static void StripExpression(unique_ptr<ParsedExpression> &expr, const string &catalog) {
	if (!expr) {
		return;
	}
	if (expr->GetExpressionClass() == ExpressionClass::SUBQUERY) {
#if OPENDUCK_DUCKDB_V2
		StripCatalog(*expr->Cast<SubqueryExpression>().SubqueryMutable()->node, catalog);
#else
		StripCatalog(*expr->Cast<SubqueryExpression>().subquery->node, catalog);
#endif
	}
	ParsedExpressionIterator::EnumerateChildren(
	    *expr, [&](unique_ptr<ParsedExpression> &child) { StripExpression(child, catalog); });
}

// The catalog and schema a base table reference names ("" when not given).
static string RefCatalog(const BaseTableRef &base) {
#if OPENDUCK_DUCKDB_V2
	return Str(base.GetQualifiedName().Catalog());
#else
	return base.catalog_name;
#endif
}

static string RefSchema(const BaseTableRef &base) {
#if OPENDUCK_DUCKDB_V2
	return Str(base.GetQualifiedName().Schema());
#else
	return base.schema_name;
#endif
}

static void StripRef(TableRef &ref, const string &catalog) {
	if (ref.type == TableReferenceType::BASE_TABLE) {
		auto &base = ref.Cast<BaseTableRef>();
		auto ref_catalog = RefCatalog(base);
		if (StringUtil::CIEquals(ref_catalog, catalog)) {
#if OPENDUCK_DUCKDB_V2
			base.SetQualifiedName(Identifier(), base.GetQualifiedName().Schema(), base.Table());
#else
			base.catalog_name.clear();
#endif
		} else if (ref_catalog.empty() && StringUtil::CIEquals(RefSchema(base), catalog)) {
			// `cloud.users` parses as schema cloud, table users: it means the catalog.
#if OPENDUCK_DUCKDB_V2
			base.SetQualifiedName(Identifier(), Identifier(), base.Table());
#else
			base.schema_name.clear();
#endif
		}
	}
}

// The query of a common table expression.
template <class CTE>
static QueryNode &CteQuery(CTE &cte) {
#if OPENDUCK_DUCKDB_V2
	return *cte.query_node;
#else
	return *cte.query->node;
#endif
}

void StripCatalog(QueryNode &node, const string &catalog) {
	for (auto &cte : node.cte_map.map) {
		StripCatalog(CteQuery(*cte.second), catalog);
	}
	ParsedExpressionIterator::EnumerateQueryNodeChildren(
	    node, [&](unique_ptr<ParsedExpression> &expr) { StripExpression(expr, catalog); },
	    [&](TableRef &ref) { StripRef(ref, catalog); });
}

static void StripTableRef(TableRef &ref, const string &catalog) {
	ParsedExpressionIterator::EnumerateTableRefChildren(
	    ref, [&](unique_ptr<ParsedExpression> &expr) { StripExpression(expr, catalog); },
	    [&](TableRef &child) { StripRef(child, catalog); });
}

namespace {

struct RemoteStatementData : public TableFunctionData {
	RemoteStatementData(OdCatalog &catalog, string sql) : catalog(catalog), sql(std::move(sql)) {
	}
	OdCatalog &catalog;
	string sql;
};

struct RemoteStatementState : public GlobalTableFunctionState {
	bool done = false;
};

unique_ptr<GlobalTableFunctionState> RemoteStatementInit(ClientContext &, TableFunctionInitInput &) {
	return make_uniq<RemoteStatementState>();
}

void RemoteStatementRun(ClientContext &context, TableFunctionInput &input, DataChunk &output) {
	auto &state = input.global_state->Cast<RemoteStatementState>();
	if (state.done) {
		return;
	}
	state.done = true;
	auto &data = input.bind_data->Cast<RemoteStatementData>();
	auto rows = RunRemote(*data.catalog.conn, data.sql, OdTransaction::Of(context, data.catalog));
	output.SetCardinality(1);
	output.SetValue(0, 0, Value::BIGINT(rows));
}

InsertionOrderPreservingMap<string> RemoteStatementToString(TableFunctionToStringInput &input) {
	InsertionOrderPreservingMap<string> result;
	result["Runs"] = "REMOTE (whole statement on the OpenDuck server)";
	result["SQL"] = input.bind_data->Cast<RemoteStatementData>().sql;
	return result;
}

// The parts of an UPDATE / DELETE (2.0 keeps them in a query node of the statement).
#if OPENDUCK_DUCKDB_V2
UpdateQueryNode &UpdateOf(SQLStatement &statement) {
	return *statement.Cast<UpdateStatement>().node;
}
DeleteQueryNode &DeleteOf(SQLStatement &statement) {
	return *statement.Cast<DeleteStatement>().node;
}
#else
UpdateStatement &UpdateOf(SQLStatement &statement) {
	return statement.Cast<UpdateStatement>();
}
DeleteStatement &DeleteOf(SQLStatement &statement) {
	return statement.Cast<DeleteStatement>();
}
#endif

// The OpenDuck catalog a table reference names, or null.
optional_ptr<OdCatalog> RemoteCatalog(ClientContext &context, TableRef &ref) {
	if (ref.type != TableReferenceType::BASE_TABLE) {
		return nullptr;
	}
	auto &base = ref.Cast<BaseTableRef>();
	auto name = RefCatalog(base);
	if (name.empty()) {
		// `cloud.t` parses as schema cloud, table t; DuckDB reads it as catalog cloud when that
		// catalog exists (the binder may or may not have filled the catalog in by now).
		name = RefSchema(base);
	}
	if (name.empty()) {
		return nullptr;
	}
	auto catalog = Catalog::GetCatalogEntry(context, Ident(name));
	if (!catalog || catalog->GetCatalogType() != "openduck") {
		return nullptr;
	}
	return &catalog->Cast<OdCatalog>();
}

BoundStatement BindRemoteStatement(ClientContext &context, Binder &binder, OperatorExtensionInfo *info,
                                   SQLStatement &statement) {
	if (statement.type == StatementType::EXPLAIN_STATEMENT) {
		// EXPLAIN of a remote UPDATE/DELETE: the plan that would run (DuckDB's own binding of
		// EXPLAIN failed on the inner statement, as for the statement alone).
		auto &explain = statement.Cast<ExplainStatement>();
		auto inner = BindRemoteStatement(context, binder, info, *explain.stmt);
		if (!inner.plan) {
			return BoundStatement();
		}
#if OPENDUCK_DUCKDB_V2
		auto plan = make_uniq<LogicalExplain>(std::move(inner.plan), explain.explain_type, explain.format);
#else
		auto plan = make_uniq<LogicalExplain>(std::move(inner.plan), explain.explain_type, explain.explain_format);
#endif
		BoundStatement result;
		result.plan = std::move(plan);
		result.names = Idents({"explain_key", "explain_value"});
		result.types = {LogicalType::VARCHAR, LogicalType::VARCHAR};
		binder.GetStatementProperties().return_type = StatementReturnType::QUERY_RESULT;
		return result;
	}
	TableRef *target = nullptr;
	if (statement.type == StatementType::UPDATE_STATEMENT) {
		target = UpdateOf(statement).table.get();
	} else if (statement.type == StatementType::DELETE_STATEMENT) {
		target = DeleteOf(statement).table.get();
	} else {
		return BoundStatement();
	}
	auto catalog = RemoteCatalog(context, *target);
	if (!catalog) {
		return BoundStatement();
	}
	// The server knows its tables without our local name for its database: drop that name
	// everywhere in the statement (target, FROM/USING, subqueries, CTEs).
	string name = Str(catalog->GetName());
	auto copy = statement.Copy();
	if (copy->type == StatementType::UPDATE_STATEMENT) {
		auto &update = UpdateOf(*copy);
		StripTableRef(*update.table, name);
		if (update.from_table) {
			StripTableRef(*update.from_table, name);
		}
		StripExpression(update.set_info->condition, name);
		for (auto &expr : update.set_info->expressions) {
			StripExpression(expr, name);
		}
		for (auto &cte : update.cte_map.map) {
			StripCatalog(CteQuery(*cte.second), name);
		}
	} else {
		auto &del = DeleteOf(*copy);
		StripTableRef(*del.table, name);
		for (auto &ref : del.using_clauses) {
			StripTableRef(*ref, name);
		}
		StripExpression(del.condition, name);
		for (auto &cte : del.cte_map.map) {
			StripCatalog(CteQuery(*cte.second), name);
		}
	}
	auto sql = copy->ToString();
	auto &properties = binder.GetStatementProperties();
	properties.RegisterDBModify(*catalog, context, DatabaseModificationType::UPDATE_DATA);

	bool returning = copy->type == StatementType::UPDATE_STATEMENT ? !UpdateOf(*copy).returning_list.empty()
	                                                               : !DeleteOf(*copy).returning_list.empty();
	if (returning) {
		// RETURNING: the server runs the statement as a query and its rows stream back.
		BoundStatement result;
		vector<string> names;
		result.plan = RemoteRowsPlan(context, binder, catalog->conn, sql, OdTransaction::Of(context, *catalog), names,
		                             result.types);
		result.names = Idents(names);
		properties.return_type = StatementReturnType::QUERY_RESULT;
		return result;
	}

	TableFunction function(Ident("openduck_remote_statement"), {}, RemoteStatementRun, nullptr, RemoteStatementInit);
	function.to_string = RemoteStatementToString;
	vector<LogicalType> types {LogicalType::BIGINT};
	vector<string> names {"Count"};
	auto get = make_uniq<LogicalGet>(binder.GenerateTableIndex(), BindFunction(function),
	                                 make_uniq<RemoteStatementData>(*catalog, sql), types, Idents(names));
	get->AddColumnId(0);
	properties.return_type = StatementReturnType::CHANGED_ROWS;

	BoundStatement result;
	result.plan = std::move(get);
	result.names = Idents(names);
	result.types = types;
	return result;
}

class RemoteStatements : public OperatorExtension {
public:
	RemoteStatements() {
		Bind = BindRemoteStatement;
	}
	std::string GetName() override {
		return "openduck";
	}
	unique_ptr<LogicalExtensionOperator> Deserialize(Deserializer &) override {
		throw InternalException("openduck: remote statements are not serialized");
	}
};

} // namespace

void RegisterRemoteStatements(DBConfig &config) {
	OperatorExtension::Register(config, make_shared_ptr<RemoteStatements>());
}

} // namespace openduck
