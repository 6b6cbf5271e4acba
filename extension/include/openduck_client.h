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

#ifdef __cplusplus
}
#endif

#endif
