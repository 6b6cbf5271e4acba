/* The C ABI of OpenDuck's Rust client library (extension/src/lib.rs), used by the C++ shim.
 *
 * Conventions: functions return 0 on success; on failure non-zero, with a message in *err that
 * the caller frees with openduck_free_string. Handles are freed with their *_free function.
 * Arrow data crosses as the Arrow C data and stream interfaces.
 */
#ifndef OPENDUCK_CLIENT_H
#define OPENDUCK_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ArrowSchema;
struct ArrowArrayStream;

typedef struct OpenDuckClient OpenDuckClient;
typedef struct OpenDuckTables OpenDuckTables;

void openduck_free_string(char *s);

/* path: "openduck:<db>?endpoint=…&token=…" or "od:<db>". option_token (ATTACH's TOKEN) and
 * secret_token (a matching openduck secret's) may be NULL; the library picks the token: the
 * option, the path's token=, the secret's, then OPENDUCK_TOKEN. */
int openduck_connect(const char *path, const char *option_token, const char *secret_token, OpenDuckClient **out,
                     char **err);
void openduck_disconnect(OpenDuckClient *client);

int openduck_tables(const OpenDuckClient *client, OpenDuckTables **out, char **err);
size_t openduck_tables_len(const OpenDuckTables *tables);
const char *openduck_tables_schema(const OpenDuckTables *tables, size_t i);
const char *openduck_tables_name(const OpenDuckTables *tables, size_t i);
const char *openduck_tables_kind(const OpenDuckTables *tables, size_t i);
/* The server's row estimate for table i, -1 if unknown. */
int64_t openduck_tables_rows(const OpenDuckTables *tables, size_t i);
int openduck_tables_arrow_schema(const OpenDuckTables *tables, size_t i, struct ArrowSchema *out, char **err);
void openduck_tables_free(OpenDuckTables *tables);
/* The remote schemas (including those without tables), listed with the tables. */
size_t openduck_schemas_len(const OpenDuckTables *tables);
const char *openduck_schemas_name(const OpenDuckTables *tables, size_t i);

/* Remote transactions: ids are hex text; begin's id is freed with openduck_free_string. Every
 * txn parameter below may be NULL (autocommit). */
int openduck_begin(const OpenDuckClient *client, char **txn, char **err);
int openduck_end(const OpenDuckClient *client, const char *txn, int commit, char **err);

/* The columns of schema.table as an Arrow struct schema (caller releases). */
int openduck_table_schema(const OpenDuckClient *client, const char *schema, const char *table, const char *txn,
                          struct ArrowSchema *out, char **err);
/* The result schema of query sql without running it (caller releases). */
int openduck_describe(const OpenDuckClient *client, const char *sql, const char *txn, struct ArrowSchema *out,
                      char **err);
/* Streams the result of sql; releasing the stream early cancels the remote query. When
 * interrupted is not NULL, it is called with interrupted_arg (from any thread, while the call
 * or the stream lives) every 50 ms while they wait on the server (for the statement to start,
 * which for UPDATE ... RETURNING is the whole statement, and for each batch); once it returns
 * non-zero, the wait ends: the call fails, or get_next fails, with "interrupted while waiting
 * for the server". */
int openduck_query(const OpenDuckClient *client, const char *sql, const char *txn, int (*interrupted)(void *),
                   void *interrupted_arg, struct ArrowArrayStream *out, char **err);
int openduck_execute(const OpenDuckClient *client, const char *sql, const char *txn, int64_t *rows, char **err);
/* Bulk load: begin (consumes arrow_schema, a struct schema; create != 0 creates the table, else
 * appends; schema may be NULL), push struct arrays (consumed; blocks while the server is behind),
 * then finish (commits, frees the handle) or abort (the server discards the load). */
typedef struct OpenDuckUpload OpenDuckUpload;
struct ArrowArray;
int openduck_ingest_begin(const OpenDuckClient *client, const char *schema, const char *table, int create,
                          const char *txn, struct ArrowSchema *arrow_schema, OpenDuckUpload **out, char **err);
int openduck_ingest_push(OpenDuckUpload *upload, struct ArrowArray *array, char **err);
int openduck_ingest_finish(OpenDuckUpload *upload, int64_t *rows, char **err);
void openduck_ingest_abort(OpenDuckUpload *upload);

/* Hybrid execution (extension/src/hybrid.rs). Describe a query's relations as DuckDB resolved
 * them, ask the server to split it, read the answer, then stream each fragment's rows. Strings and
 * bytes returned by the accessors live as long as the split. */
typedef struct OpenDuckSplit OpenDuckSplit;
OpenDuckSplit *openduck_split_new(const char *sql);
/* reference: the name's parts as spelled; remote != 0: a table of the split's server (schema,
 * table its names there; arrow_schema may be NULL), else a local table (catalog.schema.table,
 * columns in arrow_schema, consumed). rows: estimate, -1 if unknown. */
int openduck_split_add_relation(OpenDuckSplit *split, const char *const *reference, size_t parts, int remote,
                                const char *catalog, const char *schema, const char *table,
                                struct ArrowSchema *arrow_schema, int64_t rows, char **err);
void openduck_split_add_setting(OpenDuckSplit *split, const char *name, const char *value);
int openduck_split_run(const OpenDuckClient *client, OpenDuckSplit *split, const char *txn, char **err);
/* "" when the query was split, else why the server left it to the client. */
const char *openduck_split_fallback(const OpenDuckSplit *split);
const char *openduck_split_local_sql(const OpenDuckSplit *split);
const char *openduck_split_explain(const OpenDuckSplit *split);
size_t openduck_split_fragment_count(const OpenDuckSplit *split);
uint32_t openduck_split_fragment_id(const OpenDuckSplit *split, size_t i);
/* Fragment i's row estimate, -1 if unknown. */
int64_t openduck_split_fragment_rows(const OpenDuckSplit *split, size_t i);
const char *openduck_split_fragment_sql(const OpenDuckSplit *split, size_t i);
const char *openduck_split_fragment_explain(const OpenDuckSplit *split, size_t i);
const uint8_t *openduck_split_fragment_plan(const OpenDuckSplit *split, size_t i, size_t *len);
const uint8_t *openduck_split_fragment_schema(const OpenDuckSplit *split, size_t i, size_t *len);
void openduck_split_free(OpenDuckSplit *split);
/* An Arrow IPC schema message as an Arrow C schema (caller releases). */
int openduck_schema_from_ipc(const uint8_t *bytes, size_t len, struct ArrowSchema *out, char **err);
/* Runs a fragment (by plan, or by sql when plan_len is 0) and streams its rows, whose schema is
 * the IPC message schema reduced to the columns listed in projection (all if NULL); interrupts
 * as openduck_query does. */
int openduck_exchange(const OpenDuckClient *client, const uint8_t *plan, size_t plan_len, const char *sql,
                      const uint8_t *schema, size_t schema_len, const uint32_t *projection, size_t columns,
                      const char *txn, int (*interrupted)(void *), void *interrupted_arg,
                      struct ArrowArrayStream *out, char **err);

#ifdef __cplusplus
}
#endif

#endif
