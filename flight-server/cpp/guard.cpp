// The remote-SQL guard: an allow-list checked on every physical plan a client connection runs.
//
// DuckDB's lockdown (`enable_external_access = false`) still lets SQL read and write the
// database's own files (`<db>.duckdb`, its WAL) and its temp directory, and table functions such
// as `enable_logging` or `force_checkpoint` change the instance behind the server's back. The C
// API cannot inspect a plan, so this file hooks DuckDB's C++ API (a ClientContextState) on each
// client connection and checks the plan after binding and before it runs, whatever produced it:
// plain SQL, views, macros, replacement scans (`FROM 'x.csv'`), `EXECUTE`, `EXPLAIN ANALYZE`.
//
// A plan runs only if every operator's type is on ALLOWED_OPERATORS and every table function it
// calls is on ALLOWED_TABLE_FUNCTIONS. Nothing on those lists opens a file: file access, logging,
// profiling, checkpoints and extension loading are all reached through operators or table
// functions that are not listed, so anything new that DuckDB adds is refused until listed here.
//
// The server calls `openduck_guard_connection` on every connection it hands to a client; its own
// connections (sealing, catalog setup) are not guarded.

#include "duckdb/catalog/catalog.hpp"
#include "duckdb/catalog/catalog_entry/copy_function_catalog_entry.hpp"
#include "duckdb/catalog/catalog_entry/pragma_function_catalog_entry.hpp"
#include "duckdb/catalog/catalog_entry/scalar_function_catalog_entry.hpp"
#include "duckdb/catalog/catalog_entry/schema_catalog_entry.hpp"
#include "duckdb/common/string_util.hpp"
#include "duckdb/execution/expression_executor.hpp"
#include "duckdb/catalog/catalog_entry/table_function_catalog_entry.hpp"
#include "duckdb/common/exception.hpp"
#include "duckdb/execution/operator/projection/physical_tableinout_function.hpp"
#include "duckdb/execution/operator/scan/physical_table_scan.hpp"
#include "duckdb/execution/physical_operator.hpp"
#include "duckdb/execution/physical_plan_generator.hpp"
#include "duckdb/main/capi/capi_internal.hpp"
#include "duckdb/main/client_context.hpp"
#include "duckdb/main/client_context_state.hpp"
#include "duckdb/main/config.hpp"
#include "duckdb/main/connection.hpp"
#include "duckdb/main/prepared_statement_data.hpp"
#include "duckdb/main/valid_checker.hpp"
#include "duckdb/storage/buffer_manager.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <unordered_set>

namespace {

using duckdb::PhysicalOperatorType;

// Operators a client plan may contain. Missing on purpose: COPY_TO_FILE and BATCH_COPY_TO_FILE
// (write files), COPY_DATABASE, EXPORT, ATTACH, DETACH, LOAD (also INSTALL), UPDATE_EXTENSIONS,
// PRAGMA (function pragmas change the instance: profiling, optimizer, checkpoints, imports),
// CREATE_SECRET, EXTENSION (operators extensions add) and VERIFY_VECTOR.
const std::unordered_set<PhysicalOperatorType> &AllowedOperators() {
	static const std::unordered_set<PhysicalOperatorType> allowed {
	    PhysicalOperatorType::ORDER_BY,
	    PhysicalOperatorType::LIMIT,
	    PhysicalOperatorType::STREAMING_LIMIT,
	    PhysicalOperatorType::LIMIT_PERCENT,
	    PhysicalOperatorType::TOP_N,
	    PhysicalOperatorType::WINDOW,
	    PhysicalOperatorType::UNNEST,
	    PhysicalOperatorType::UNGROUPED_AGGREGATE,
	    PhysicalOperatorType::HASH_GROUP_BY,
	    PhysicalOperatorType::PERFECT_HASH_GROUP_BY,
	    PhysicalOperatorType::PARTITIONED_AGGREGATE,
	    PhysicalOperatorType::FILTER,
	    PhysicalOperatorType::PROJECTION,
	    PhysicalOperatorType::RESERVOIR_SAMPLE,
	    PhysicalOperatorType::STREAMING_SAMPLE,
	    PhysicalOperatorType::STREAMING_WINDOW,
	    PhysicalOperatorType::PIVOT,
	    PhysicalOperatorType::TABLE_SCAN, // and its function must be allowed
	    PhysicalOperatorType::DUMMY_SCAN,
	    PhysicalOperatorType::COLUMN_DATA_SCAN,
	    PhysicalOperatorType::CHUNK_SCAN,
	    PhysicalOperatorType::RECURSIVE_CTE_SCAN,
	    PhysicalOperatorType::RECURSIVE_RECURRING_CTE_SCAN,
	    PhysicalOperatorType::CTE_SCAN,
	    PhysicalOperatorType::DELIM_SCAN,
	    PhysicalOperatorType::EXPRESSION_SCAN,
	    PhysicalOperatorType::POSITIONAL_SCAN,
	    PhysicalOperatorType::BLOCKWISE_NL_JOIN,
	    PhysicalOperatorType::NESTED_LOOP_JOIN,
	    PhysicalOperatorType::HASH_JOIN,
	    PhysicalOperatorType::CROSS_PRODUCT,
	    PhysicalOperatorType::PIECEWISE_MERGE_JOIN,
	    PhysicalOperatorType::IE_JOIN,
	    PhysicalOperatorType::LEFT_DELIM_JOIN,
	    PhysicalOperatorType::RIGHT_DELIM_JOIN,
	    PhysicalOperatorType::POSITIONAL_JOIN,
	    PhysicalOperatorType::ASOF_JOIN,
	    PhysicalOperatorType::UNION,
	    PhysicalOperatorType::RECURSIVE_CTE,
	    PhysicalOperatorType::RECURSIVE_KEY_CTE,
	    PhysicalOperatorType::CTE,
	    PhysicalOperatorType::INSERT,
	    PhysicalOperatorType::BATCH_INSERT,
	    PhysicalOperatorType::DELETE_OPERATOR,
	    PhysicalOperatorType::UPDATE,
	    PhysicalOperatorType::MERGE_INTO,
	    PhysicalOperatorType::CREATE_TABLE,
	    PhysicalOperatorType::CREATE_TABLE_AS,
	    PhysicalOperatorType::BATCH_CREATE_TABLE_AS,
	    PhysicalOperatorType::CREATE_INDEX,
	    PhysicalOperatorType::ALTER,
	    PhysicalOperatorType::CREATE_SEQUENCE,
	    PhysicalOperatorType::CREATE_VIEW,
	    PhysicalOperatorType::CREATE_SCHEMA,
	    PhysicalOperatorType::CREATE_MACRO,
	    PhysicalOperatorType::DROP,
	    PhysicalOperatorType::TRANSACTION,
	    PhysicalOperatorType::CREATE_TYPE,
	    PhysicalOperatorType::EXPLAIN,
	    PhysicalOperatorType::EXPLAIN_ANALYZE,
	    PhysicalOperatorType::EMPTY_RESULT,
	    PhysicalOperatorType::EXECUTE, // its plan is walked as a child
	    PhysicalOperatorType::PREPARE, // checked when executed
	    PhysicalOperatorType::VACUUM,
	    PhysicalOperatorType::SET,   // lock_configuration refuses all but schema and search_path
	    PhysicalOperatorType::RESET, // likewise
	    PhysicalOperatorType::SET_VARIABLE,
	    PhysicalOperatorType::INOUT_FUNCTION, // and its function must be allowed
	    PhysicalOperatorType::RESULT_COLLECTOR,
	};
	return allowed;
}

// Table functions a client plan may call: table scans, generators and catalog views that touch
// no file and reveal nothing of the server outside the database. Missing on purpose: every
// reader (read_*, glob, sniff_csv, parquet_*), checkpoint and force_checkpoint (a client's
// CHECKPOINT is run by the server's sealer instead), logging and profiling (enable_*, disable_*,
// truncate_duckdb_logs, duckdb_logs, duckdb_log_contexts), json_tree (a path string per node:
// memory quadratic in the nesting, outside DuckDB's memory limit), functions taking raw pointers
// (arrow_scan*, pandas_scan, python_map_function), json_execute_serialized_sql (runs SQL the
// guard would not see), and catalog functions that show server paths or secrets
// (duckdb_extensions, duckdb_temporary_files, duckdb_external_file_cache, duckdb_secrets,
// which_secret).
const std::unordered_set<std::string> &AllowedTableFunctions() {
	static const std::unordered_set<std::string> allowed {
	    "seq_scan",
	    "range",
	    "generate_series",
	    "unnest",
	    "repeat",
	    "repeat_row",
	    "json_each",
	    "summary",
	    "test_all_types",
	    "test_vector_types",
	    "icu_calendar_names",
	    "pg_timezone_names",
	    "duckdb_approx_database_count",
	    "duckdb_columns",
	    "duckdb_connection_count",
	    "duckdb_constraints",
	    "duckdb_coordinate_systems",
	    "duckdb_databases",
	    "duckdb_dependencies",
	    "duckdb_functions",
	    "duckdb_indexes",
	    "duckdb_keywords",
	    "duckdb_memory",
	    "duckdb_optimizers",
	    "duckdb_prepared_statements",
	    "duckdb_schemas",
	    "duckdb_secret_types",
	    "duckdb_sequences",
	    "duckdb_settings",
	    "duckdb_table_sample",
	    "duckdb_tables",
	    "duckdb_types",
	    "duckdb_variables",
	    "duckdb_views",
	    "pragma_collations",
	    "pragma_database_size",
	    "pragma_metadata_info",
	    "pragma_platform",
	    "pragma_show",
	    "pragma_storage_info",
	    "pragma_table_info",
	    "pragma_user_agent",
	    "pragma_version",
	    // The server's own: the database's snapshots.
	    "openduck_snapshots",
	};
	return allowed;
}

// Table functions that keep binding although no client plan may contain them: `checkpoint` and
// `force_checkpoint` (the server's sealer runs CHECKPOINT; the plan guard refuses them to
// clients), and `query`/`query_table`, which bind to the SQL they are given (checked as any).
const std::unordered_set<std::string> &KeptBindable() {
	static const std::unordered_set<std::string> kept {"checkpoint", "force_checkpoint", "query", "query_table"};
	return kept;
}

[[noreturn]] void Refuse(const std::string &what) {
	throw duckdb::PermissionException("%s is not allowed on an OpenDuck server (remote SQL may not touch server "
	                                  "files, logging, profiling or checkpoints)",
	                                  what);
}

void CheckTableFunction(const std::string &name) {
	if (AllowedTableFunctions().count(name)) {
		return;
	}
	if (name == "checkpoint" || name == "force_checkpoint") {
		throw duckdb::PermissionException(
		    "%s is not allowed on an OpenDuck server: send CHECKPOINT as a statement of its own, outside a "
		    "transaction, and the server seals it as a snapshot",
		    name);
	}
	Refuse("table function " + name + "()");
}

void CheckPlan(duckdb::PreparedStatementData &prepared) {
	if (!prepared.physical_plan) {
		return; // not planned yet (unbound parameters): checked when planned again
	}
	// Iterative, so a deep plan cannot overflow the stack here.
	duckdb::vector<duckdb::const_reference<duckdb::PhysicalOperator>> pending;
	pending.push_back(prepared.physical_plan->Root());
	while (!pending.empty()) {
		auto &op = pending.back().get();
		pending.pop_back();
		if (!AllowedOperators().count(op.type)) {
			Refuse(duckdb::PhysicalOperatorToString(op.type));
		}
		if (op.type == PhysicalOperatorType::TABLE_SCAN) {
			CheckTableFunction(op.Cast<duckdb::PhysicalTableScan>().function.name);
		} else if (op.type == PhysicalOperatorType::INOUT_FUNCTION) {
			// The function is private here; its name is what the operator reports (functions that
			// report something else are refused).
			auto params = op.ParamsToString();
			if (!params.contains("Name")) {
				Refuse("this table in-out function");
			}
			CheckTableFunction(params["Name"]);
		}
		for (auto &child : op.GetChildren()) {
			pending.push_back(child);
		}
	}
}

// Pragmas a client may run: each expands to a query over an allowed table function.
const std::unordered_set<std::string> &AllowedPragmas() {
	static const std::unordered_set<std::string> allowed {
	    "table_info", "show",      "show_tables", "show_tables_expanded", "show_databases", "database_list",
	    "collations", "version",   "platform",    "database_size",        "storage_info",   "metadata_info",
	    "functions",  "user_agent",
	};
	return allowed;
}

duckdb::unique_ptr<duckdb::FunctionData> RefuseTableBind(duckdb::ClientContext &, duckdb::TableFunctionBindInput &input,
                                                         duckdb::vector<duckdb::LogicalType> &,
                                                         duckdb::vector<std::string> &) {
	Refuse("table function " + input.table_function.name + "()");
}

duckdb::unique_ptr<duckdb::FunctionData> RefuseCopyTo(duckdb::ClientContext &, duckdb::CopyFunctionBindInput &,
                                                      const duckdb::vector<std::string> &,
                                                      const duckdb::vector<duckdb::LogicalType> &) {
	Refuse("COPY ... TO");
}

duckdb::unique_ptr<duckdb::FunctionData> RefuseCopyFrom(duckdb::ClientContext &, duckdb::CopyFromFunctionBindInput &,
                                                        duckdb::vector<std::string> &,
                                                        duckdb::vector<duckdb::LogicalType> &) {
	Refuse("COPY ... FROM");
}

std::string RefusePragmaQuery(duckdb::ClientContext &, const duckdb::FunctionParameters &) {
	Refuse("this PRAGMA");
}

void RefusePragma(duckdb::ClientContext &, const duckdb::FunctionParameters &) {
	Refuse("this PRAGMA");
}

// Settings whose values are absolute server paths DuckDB keeps for its own checks (the paths of
// the database's files, canonicalised): SQL sees them hidden.
bool HiddenSetting(const std::string &name) {
	auto lower = duckdb::StringUtil::Lower(name);
	return lower == "allowed_paths" || lower == "allowed_directories";
}

// duckdb_settings() and current_setting() as DuckDB has them, wrapped to hide those settings.
// (One instance of each function exists per process: every database shares these pointers.)
// Atomic: databases may open on several threads at once (all store the same values).
std::atomic<duckdb::table_function_t> original_settings_function {nullptr};
std::atomic<duckdb::bind_scalar_function_t> original_current_setting_bind {nullptr};
std::atomic<duckdb::table_function_t> original_databases_function {nullptr};

// duckdb_databases() with each file's path cut to its name (column 2, `path`).
void DatabasesHidingPaths(duckdb::ClientContext &context, duckdb::TableFunctionInput &input, duckdb::DataChunk &output) {
	original_databases_function.load()(context, input, output);
	if (output.ColumnCount() < 3) {
		return;
	}
	for (duckdb::idx_t row = 0; row < output.size(); row++) {
		auto path = output.GetValue(2, row);
		if (!path.IsNull()) {
			auto text = duckdb::StringValue::Get(path);
			auto slash = text.find_last_of('/');
			output.SetValue(2, row, duckdb::Value(slash == std::string::npos ? text : text.substr(slash + 1)));
		}
	}
}

void SettingsHidingPaths(duckdb::ClientContext &context, duckdb::TableFunctionInput &input, duckdb::DataChunk &output) {
	original_settings_function.load()(context, input, output);
	if (output.ColumnCount() < 2) {
		return;
	}
	for (duckdb::idx_t row = 0; row < output.size(); row++) {
		auto name = output.GetValue(0, row);
		if (!name.IsNull() && HiddenSetting(duckdb::StringValue::Get(name))) {
			output.SetValue(1, row, duckdb::Value("(hidden)"));
		}
	}
}

duckdb::unique_ptr<duckdb::FunctionData> CurrentSettingHidingPaths(duckdb::ClientContext &context,
                                                                   duckdb::ScalarFunction &bound_function,
                                                                   duckdb::vector<duckdb::unique_ptr<duckdb::Expression>> &arguments) {
	if (!arguments.empty() && arguments[0]->IsFoldable() && arguments[0]->return_type.id() == duckdb::LogicalTypeId::VARCHAR) {
		auto key = duckdb::ExpressionExecutor::EvaluateScalar(context, *arguments[0]);
		if (!key.IsNull() && HiddenSetting(duckdb::StringValue::Get(key))) {
			throw duckdb::PermissionException("setting %s is not shown on an OpenDuck server", duckdb::StringValue::Get(key));
		}
	}
	return original_current_setting_bind.load()(context, bound_function, arguments);
}

// The deepest JSON nesting a JSON function accepts. The JSON functions that walk a document
// (json_structure, json_contains, json_merge_patch, …) recurse once per level, ~160 bytes of
// stack each, and SQL can build any depth at run time (`repeat('[', n)`): past a stack, the
// process dies. A million levels fit the server's 1 GiB stacks (threads.rs) many times over.
constexpr duckdb::idx_t MAX_JSON_DEPTH = 1000000;

// The deepest nesting of `[` and `{` in `text`, outside string literals.
duckdb::idx_t JsonDepth(const char *text, duckdb::idx_t size) {
	duckdb::idx_t depth = 0, deepest = 0;
	bool in_string = false;
	for (duckdb::idx_t i = 0; i < size; i++) {
		char c = text[i];
		if (in_string) {
			if (c == '\\') {
				i++;
			} else if (c == '"') {
				in_string = false;
			}
		} else if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			deepest = std::max(deepest, ++depth);
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		}
	}
	return deepest;
}

// Refuses a call whose text arguments nest deeper than MAX_JSON_DEPTH.
void CheckJsonDepth(duckdb::DataChunk &args, const std::string &function) {
	for (auto &column : args.data) {
		if (column.GetType().InternalType() != duckdb::PhysicalType::VARCHAR) {
			continue;
		}
		duckdb::UnifiedVectorFormat format;
		column.ToUnifiedFormat(args.size(), format);
		auto strings = duckdb::UnifiedVectorFormat::GetData<duckdb::string_t>(format);
		for (duckdb::idx_t row = 0; row < args.size(); row++) {
			auto idx = format.sel->get_index(row);
			if (format.validity.RowIsValid(idx) &&
			    JsonDepth(strings[idx].GetData(), strings[idx].GetSize()) > MAX_JSON_DEPTH) {
				throw duckdb::InvalidInputException("%s: JSON nested deeper than %llu levels is not accepted on an "
				                                    "OpenDuck server",
				                                    function, (unsigned long long)MAX_JSON_DEPTH);
			}
		}
	}
}

void LockDownCatalog(duckdb::ClientContext &context) {
	auto &schema = duckdb::Catalog::GetSystemCatalog(context).GetSchema(context, DEFAULT_SCHEMA);
	schema.Scan(context, duckdb::CatalogType::TABLE_FUNCTION_ENTRY, [&](duckdb::CatalogEntry &entry) {
		if (entry.type != duckdb::CatalogType::TABLE_FUNCTION_ENTRY) {
			return; // table macros share the set; their bodies bind what they call
		}
		auto &functions = entry.Cast<duckdb::TableFunctionCatalogEntry>().functions;
		for (auto &f : functions.functions) {
			if (f.name == "duckdb_settings" && f.function != SettingsHidingPaths) {
				original_settings_function.store(f.function);
				f.function = SettingsHidingPaths;
			}
			if (f.name == "duckdb_databases" && f.function != DatabasesHidingPaths) {
				original_databases_function.store(f.function);
				f.function = DatabasesHidingPaths;
			}
			if (AllowedTableFunctions().count(f.name) || KeptBindable().count(f.name)) {
				continue;
			}
			f.bind = RefuseTableBind;
			f.bind_replace = nullptr;
			f.bind_operator = nullptr;
		}
	});
	schema.Scan(context, duckdb::CatalogType::SCALAR_FUNCTION_ENTRY, [&](duckdb::CatalogEntry &entry) {
		if (entry.type != duckdb::CatalogType::SCALAR_FUNCTION_ENTRY) {
			return;
		}
		if (duckdb::StringUtil::StartsWith(entry.name, "json") || duckdb::StringUtil::StartsWith(entry.name, "from_json")) {
			for (auto &f : entry.Cast<duckdb::ScalarFunctionCatalogEntry>().functions.functions) {
				auto inner = f.function;
				auto name = f.name;
				f.function = [inner, name](duckdb::DataChunk &args, duckdb::ExpressionState &state, duckdb::Vector &result) {
					CheckJsonDepth(args, name);
					inner(args, state, result);
				};
			}
			return;
		}
		if (entry.name != "current_setting") {
			return;
		}
		for (auto &f : entry.Cast<duckdb::ScalarFunctionCatalogEntry>().functions.functions) {
			if (f.bind && f.bind != CurrentSettingHidingPaths) {
				original_current_setting_bind.store(f.bind);
				f.bind = CurrentSettingHidingPaths;
			}
		}
	});
	schema.Scan(context, duckdb::CatalogType::COPY_FUNCTION_ENTRY, [&](duckdb::CatalogEntry &entry) {
		if (entry.type != duckdb::CatalogType::COPY_FUNCTION_ENTRY) {
			return;
		}
		auto &f = entry.Cast<duckdb::CopyFunctionCatalogEntry>().function;
		f.copy_to_bind = RefuseCopyTo;
		f.copy_from_bind = RefuseCopyFrom;
	});
	schema.Scan(context, duckdb::CatalogType::PRAGMA_FUNCTION_ENTRY, [&](duckdb::CatalogEntry &entry) {
		if (entry.type != duckdb::CatalogType::PRAGMA_FUNCTION_ENTRY) {
			return;
		}
		auto &functions = entry.Cast<duckdb::PragmaFunctionCatalogEntry>().functions;
		for (auto &f : functions.functions) {
			if (AllowedPragmas().count(f.name)) {
				continue;
			}
			f.query = RefusePragmaQuery;
			f.function = RefusePragma;
		}
	});
}

class Guard : public duckdb::ClientContextState {
public:
	// Asking to be able to request a rebind is what makes DuckDB call OnFinalizePrepare.
	bool CanRequestRebind() override {
		return true;
	}
	duckdb::RebindQueryInfo OnFinalizePrepare(duckdb::ClientContext &, duckdb::PreparedStatementData &prepared,
	                                          duckdb::PreparedStatementMode) override {
		CheckPlan(prepared);
		return duckdb::RebindQueryInfo::DO_NOT_REBIND;
	}
	duckdb::RebindQueryInfo OnExecutePrepared(duckdb::ClientContext &, duckdb::PreparedStatementCallbackInfo &info,
	                                          duckdb::RebindQueryInfo current) override {
		CheckPlan(info.prepared_statement);
		return current;
	}
};

} // namespace

extern "C" {

// Refuses, at bind time, every function that is not on the allow-lists: table functions (a
// CSV reader sniffs its file while binding, before any plan exists for the guard to check), COPY
// formats (COPY FROM sniffs while binding too; COPY TO is refused anyway) and pragmas (a pragma
// that expands to SQL runs while the statement is parsed). DuckDB keeps letting a locked-down
// database's SQL open its own files (`<db>.duckdb`, `.wal`) and temp directory, and commits
// reach the log through those same permissions, so the functions that could open them are
// what is taken away. This changes the instance's system catalog, so it holds for every
// connection, the server's own included; `checkpoint` stays (the server's sealer runs it, and the
// guard refuses it to clients). Call once, right after opening, on the server's own connection.
// Returns NULL, or an error message the caller frees with `free`.
char *openduck_lock_down(void *connection) {
	try {
		auto &conn = *reinterpret_cast<duckdb::Connection *>(connection);
		conn.context->RunFunctionInTransaction([&]() { LockDownCatalog(*conn.context); });
		return nullptr;
	} catch (std::exception &e) {
		return strdup(e.what());
	} catch (...) {
		return strdup("locking down the catalog failed");
	}
}

// Whether a prepared statement (a `duckdb_prepared_statement` of the C API) changes a database
// when run, as its binder found: 1 yes, 0 no, -1 unknown. (The C API tells only the statement's
// type, and a CALL or a SELECT may write or not.)
int openduck_prepared_modifies(void *prepared) {
	try {
		auto wrapper = reinterpret_cast<duckdb::PreparedStatementWrapper *>(prepared);
		if (!wrapper || !wrapper->statement || wrapper->statement->HasError()) {
			return -1;
		}
		return wrapper->statement->GetStatementProperties().IsReadOnly() ? 0 : 1;
	} catch (...) {
		return -1;
	}
}

// Sets the memory limit of the connection's database instance, in bytes (the server divides one
// budget among its databases; SQL cannot, the configuration being locked). Returns NULL, or an
// error message the caller frees with `free` (e.g. when more is in use than the new limit).
char *openduck_set_memory_limit(void *connection, uint64_t bytes) {
	try {
		auto &conn = *reinterpret_cast<duckdb::Connection *>(connection);
		auto &db = *conn.context->db;
		duckdb::BufferManager::GetBufferManager(db).SetMemoryLimit(bytes);
		duckdb::DBConfig::GetConfig(db).options.maximum_memory = bytes;
		return nullptr;
	} catch (std::exception &e) {
		return strdup(e.what());
	} catch (...) {
		return strdup("setting the memory limit failed");
	}
}

// Marks the connection's database instance invalidated, as DuckDB does after a fatal error:
// every later statement on it fails. Only tests call this, to check that the server notices an
// invalidated database and reopens it.
void openduck_invalidate_for_test(void *connection, const char *why) {
	auto &conn = *reinterpret_cast<duckdb::Connection *>(connection);
	duckdb::ValidChecker::Invalidate(*conn.context->db, why);
}

// Installs the guard on a connection (a `duckdb_connection` of the C API). Returns NULL, or an
// error message the caller frees with `free`.
char *openduck_guard_connection(void *connection) {
	try {
		auto &conn = *reinterpret_cast<duckdb::Connection *>(connection);
		conn.context->registered_state->Insert("openduck_guard", duckdb::make_shared_ptr<Guard>());
		return nullptr;
	} catch (std::exception &e) {
		return strdup(e.what());
	} catch (...) {
		return strdup("installing the SQL guard failed");
	}
}
}
