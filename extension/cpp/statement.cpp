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
#include "duckdb/parser/statement/select_statement.hpp"
#include "duckdb/parser/statement/update_statement.hpp"
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
		StripCatalog(*expr->Cast<SubqueryExpression>().subquery->node, catalog);
	}
	ParsedExpressionIterator::EnumerateChildren(
	    *expr, [&](unique_ptr<ParsedExpression> &child) { StripExpression(child, catalog); });
}

static void StripRef(TableRef &ref, const string &catalog) {
	if (ref.type == TableReferenceType::BASE_TABLE) {
		auto &base = ref.Cast<BaseTableRef>();
		if (StringUtil::CIEquals(base.catalog_name, catalog)) {
			base.catalog_name.clear();
		} else if (base.catalog_name.empty() && StringUtil::CIEquals(base.schema_name, catalog)) {
			// `cloud.users` parses as schema cloud, table users: it means the catalog.
			base.schema_name.clear();
		}
	}
}

void StripCatalog(QueryNode &node, const string &catalog) {
	for (auto &cte : node.cte_map.map) {
		StripCatalog(*cte.second->query->node, catalog);
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

// The OpenDuck catalog a table reference names, or null.
optional_ptr<OdCatalog> RemoteCatalog(ClientContext &context, TableRef &ref) {
	if (ref.type != TableReferenceType::BASE_TABLE) {
		return nullptr;
	}
	auto &base = ref.Cast<BaseTableRef>();
	if (base.catalog_name.empty()) {
		return nullptr;
	}
	auto catalog = Catalog::GetCatalogEntry(context, base.catalog_name);
	if (!catalog || catalog->GetCatalogType() != "openduck") {
		return nullptr;
	}
	return &catalog->Cast<OdCatalog>();
}

BoundStatement BindRemoteStatement(ClientContext &context, Binder &binder, OperatorExtensionInfo *, SQLStatement &statement) {
	TableRef *target = nullptr;
	if (statement.type == StatementType::UPDATE_STATEMENT) {
		target = statement.Cast<UpdateStatement>().table.get();
	} else if (statement.type == StatementType::DELETE_STATEMENT) {
		target = statement.Cast<DeleteStatement>().table.get();
	} else {
		return BoundStatement();
	}
	auto catalog = RemoteCatalog(context, *target);
	if (!catalog) {
		return BoundStatement();
	}
	// The server knows its tables without our local name for its database: drop that name
	// everywhere in the statement (target, FROM/USING, subqueries, CTEs).
	auto name = catalog->GetName();
	auto copy = statement.Copy();
	if (copy->type == StatementType::UPDATE_STATEMENT) {
		auto &update = copy->Cast<UpdateStatement>();
		if (!update.returning_list.empty()) {
			throw NotImplementedException("openduck: UPDATE ... RETURNING on a remote table is not supported yet");
		}
		StripTableRef(*update.table, name);
		if (update.from_table) {
			StripTableRef(*update.from_table, name);
		}
		StripExpression(update.set_info->condition, name);
		for (auto &expr : update.set_info->expressions) {
			StripExpression(expr, name);
		}
		for (auto &cte : update.cte_map.map) {
			StripCatalog(*cte.second->query->node, name);
		}
	} else {
		auto &del = copy->Cast<DeleteStatement>();
		if (!del.returning_list.empty()) {
			throw NotImplementedException("openduck: DELETE ... RETURNING on a remote table is not supported yet");
		}
		StripTableRef(*del.table, name);
		for (auto &ref : del.using_clauses) {
			StripTableRef(*ref, name);
		}
		StripExpression(del.condition, name);
		for (auto &cte : del.cte_map.map) {
			StripCatalog(*cte.second->query->node, name);
		}
	}
	auto sql = copy->ToString();

	TableFunction function("openduck_remote_statement", {}, RemoteStatementRun, nullptr, RemoteStatementInit);
	function.to_string = RemoteStatementToString;
	vector<LogicalType> types {LogicalType::BIGINT};
	vector<string> names {"Count"};
	auto get = make_uniq<LogicalGet>(binder.GenerateTableIndex(), function,
	                                 make_uniq<RemoteStatementData>(*catalog, sql), types, names);
	get->AddColumnId(0);

	auto &properties = binder.GetStatementProperties();
	properties.return_type = StatementReturnType::CHANGED_ROWS;
	properties.RegisterDBModify(*catalog, context, DatabaseModificationType::UPDATE_DATA);

	BoundStatement result;
	result.plan = std::move(get);
	result.names = names;
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
