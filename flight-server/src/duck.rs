//! Safe wrappers over the part of DuckDB's C API the server needs.
//!
//! The server talks to DuckDB through its C API directly (not through a higher-level crate)
//! because it needs a few things only the C API gives: the result and parameter schema of a
//! prepared statement *before* it runs, the statement's kind, fetching results chunk by chunk
//! as Arrow without panics, interrupting a connection from another thread, and DuckDB's own
//! Arrow import for bulk appends.
//!
//! Invariants:
//! - A [`Conn`] owns one `duckdb_connection`; it is `Send` but not `Sync` (DuckDB connections
//!   are not safe for concurrent use). The raw handle lives in an `Arc` shared with
//!   [`Interrupter`], so interrupting can never touch a closed connection.
//! - Every object borrowed from a connection ([`Prepared`], [`ResultStream`], [`Appender`])
//!   borrows the [`Conn`] and is destroyed before it.
//! - Connections keep the database instance alive: DuckDB connections hold a reference to it,
//!   so closing the [`RawDatabase`] handle while queries still run is safe.

use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::marker::PhantomData;
use std::path::Path;
use std::ptr;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StructArray};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use libduckdb_sys as ffi;

pub mod rows_function;

/// An error reported by DuckDB, with DuckDB's message ("Catalog Error: …").
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DuckError(pub String);

type Result<T> = std::result::Result<T, DuckError>;

fn err(msg: impl Into<String>) -> DuckError {
    DuckError(msg.into())
}

extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut c_void);
}

/// Copies a C string owned by DuckDB, or returns `fallback` for NULL.
unsafe fn c_str(p: *const c_char, fallback: &str) -> String {
    if p.is_null() {
        fallback.to_string()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| err(format!("{what} contains a NUL byte")))
}

/// Consumes a `duckdb_error_data`, turning it into `Err` if it holds an error.
unsafe fn check_error_data(mut e: ffi::duckdb_error_data) -> Result<()> {
    if e.is_null() {
        return Ok(());
    }
    let result = unsafe {
        if ffi::duckdb_error_data_has_error(e) {
            Err(err(c_str(ffi::duckdb_error_data_message(e), "unknown DuckDB error")))
        } else {
            Ok(())
        }
    };
    unsafe { ffi::duckdb_destroy_error_data(&mut e) };
    result
}

/// The DuckDB library's version, e.g. `v1.5.5`.
pub fn library_version() -> String {
    unsafe { c_str(ffi::duckdb_library_version(), "unknown") }
}

/// An open DuckDB database instance.
#[derive(Debug)]
pub struct RawDatabase {
    ptr: ffi::duckdb_database,
}

// SAFETY: a duckdb_database handle may be used from any thread; DuckDB synchronizes internally.
unsafe impl Send for RawDatabase {}
unsafe impl Sync for RawDatabase {}

impl RawDatabase {
    /// Opens (or creates) the database file at `path` with the given configuration options.
    pub fn open(path: &Path, options: &[(&str, String)]) -> Result<Self> {
        let cpath = cstring(&path.to_string_lossy(), "database path")?;
        unsafe {
            let mut config: ffi::duckdb_config = ptr::null_mut();
            if ffi::duckdb_create_config(&mut config) != ffi::DuckDBSuccess {
                return Err(err("could not create DuckDB configuration"));
            }
            for (key, value) in options {
                let (k, v) = (cstring(key, "option name")?, cstring(value, "option value")?);
                if ffi::duckdb_set_config(config, k.as_ptr(), v.as_ptr()) != ffi::DuckDBSuccess {
                    ffi::duckdb_destroy_config(&mut config);
                    return Err(err(format!("invalid DuckDB setting {key} = '{value}'")));
                }
            }
            let mut db: ffi::duckdb_database = ptr::null_mut();
            let mut error: *mut c_char = ptr::null_mut();
            let state = ffi::duckdb_open_ext(cpath.as_ptr(), &mut db, config, &mut error);
            ffi::duckdb_destroy_config(&mut config);
            if state != ffi::DuckDBSuccess {
                let message = c_str(error, "could not open database");
                if !error.is_null() {
                    ffi::duckdb_free(error as *mut c_void);
                }
                return Err(err(message));
            }
            Ok(RawDatabase { ptr: db })
        }
    }

    /// A new connection.
    pub fn connect(&self) -> Result<Conn> {
        let mut c: ffi::duckdb_connection = ptr::null_mut();
        if unsafe { ffi::duckdb_connect(self.ptr, &mut c) } != ffi::DuckDBSuccess {
            return Err(err("could not connect to database"));
        }
        Ok(Conn { inner: Arc::new(ConnHandle(c)), _not_sync: PhantomData })
    }
}

impl Drop for RawDatabase {
    fn drop(&mut self) {
        unsafe { ffi::duckdb_close(&mut self.ptr) };
    }
}

#[derive(Debug)]
struct ConnHandle(ffi::duckdb_connection);

// SAFETY: only `duckdb_interrupt` (thread-safe) is called through a shared handle; everything
// else goes through `Conn`, which is not `Sync`.
unsafe impl Send for ConnHandle {}
unsafe impl Sync for ConnHandle {}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        unsafe { ffi::duckdb_disconnect(&mut self.0) };
    }
}

/// One DuckDB connection.
#[derive(Debug)]
pub struct Conn {
    inner: Arc<ConnHandle>,
    _not_sync: PhantomData<Cell<()>>,
}

/// Interrupts whatever a connection is running, from any thread.
#[derive(Debug, Clone)]
pub struct Interrupter(Arc<ConnHandle>);

impl Interrupter {
    /// Asks DuckDB to stop the connection's running query; it fails with an interrupt error.
    pub fn interrupt(&self) {
        unsafe { ffi::duckdb_interrupt(self.0 .0) };
    }
}

/// What kind of statement a prepared statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// SELECT and other queries that only read.
    Select,
    /// INSERT, UPDATE, DELETE, MERGE.
    Dml,
    /// CREATE, DROP, ALTER and other DDL.
    Ddl,
    /// BEGIN, COMMIT, ROLLBACK.
    Transaction,
    /// EXPLAIN.
    Explain,
    /// ATTACH, DETACH, LOAD, EXPORT DATABASE, COPY FROM DATABASE, UPDATE EXTENSIONS: statements
    /// that reach beyond the database and that a server never runs for a client.
    Forbidden,
    /// Anything else (PRAGMA, SET, CALL, CHECKPOINT, …).
    Other,
}

impl StatementKind {
    fn from_raw(t: ffi::duckdb_statement_type) -> Self {
        match t {
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_SELECT => StatementKind::Select,
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_INSERT
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_UPDATE
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_DELETE
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_MERGE_INTO => StatementKind::Dml,
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_CREATE
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_DROP
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_ALTER
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_CREATE_FUNC => StatementKind::Ddl,
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_TRANSACTION => StatementKind::Transaction,
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_EXPLAIN => StatementKind::Explain,
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_ATTACH
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_DETACH
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_LOAD
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_EXPORT
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_COPY_DATABASE
            | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_UPDATE_EXTENSIONS => StatementKind::Forbidden,
            _ => StatementKind::Other,
        }
    }

    /// Whether running a statement of this kind can change data or schema.
    pub fn may_write(self) -> bool {
        !matches!(self, StatementKind::Select | StatementKind::Explain)
    }
}

extern "C" {
    /// Installs the remote-SQL guard (`cpp/guard.cpp`) on a connection; NULL or a `malloc`ed
    /// error message.
    fn openduck_guard_connection(connection: *mut c_void) -> *mut c_char;
    /// Whether a prepared statement changes a database: 1, 0, or -1 when unknown (`cpp/guard.cpp`).
    fn openduck_prepared_modifies(prepared: *mut c_void) -> std::ffi::c_int;
    /// Marks the instance invalidated, as a fatal error does (`cpp/guard.cpp`; tests only).
    #[cfg(test)]
    fn openduck_invalidate_for_test(connection: *mut c_void, why: *const c_char);
    /// Sets the instance's memory limit in bytes (`cpp/guard.cpp`).
    fn openduck_set_memory_limit(connection: *mut c_void, bytes: u64) -> *mut c_char;
    /// Refuses every function not on the allow-lists at bind time (`cpp/guard.cpp`).
    fn openduck_lock_down(connection: *mut c_void) -> *mut c_char;
}

/// Turns a `malloc`ed error message from `cpp/guard.cpp` into a result.
fn guard_result(e: *mut c_char, what: &str) -> Result<()> {
    if e.is_null() {
        return Ok(());
    }
    let message = unsafe { c_str(e, what) };
    unsafe { libc_free(e as *mut c_void) };
    Err(err(message))
}

impl Conn {
    /// Subjects every statement this connection runs from now on to the remote-SQL guard
    /// (`cpp/guard.cpp`): a plan runs only if each operator and table function in it is on the
    /// guard's allow-list, which admits nothing that touches a file, logging, profiling or a
    /// checkpoint. For connections that run clients' SQL.
    pub fn guard(&self) -> Result<()> {
        guard_result(unsafe { openduck_guard_connection(self.raw() as *mut c_void) }, "installing the SQL guard failed")
    }

    /// Makes every table function, COPY format and pragma that is not on the guard's
    /// allow-lists (`cpp/guard.cpp`) fail when bound, for every connection of this database
    /// instance: DuckDB lets a locked-down database's SQL open its own files, and some
    /// functions read theirs while binding, before [`Conn::guard`] sees a plan. Call once,
    /// right after opening.
    pub fn lock_down(&self) -> Result<()> {
        guard_result(unsafe { openduck_lock_down(self.raw() as *mut c_void) }, "locking down the catalog failed")
    }

    /// Sets the memory limit of this connection's database instance (SQL cannot: the
    /// configuration is locked). Fails when more than `bytes` is in use and cannot be freed.
    pub fn set_memory_limit(&self, bytes: u64) -> Result<()> {
        guard_result(unsafe { openduck_set_memory_limit(self.raw() as *mut c_void, bytes) }, "setting the memory limit failed")
    }

    /// Marks this connection's database instance invalidated, as DuckDB does after a fatal
    /// error (for tests of the server's recovery).
    #[cfg(test)]
    pub fn invalidate_for_test(&self, why: &str) {
        let why = cstring(why, "reason").unwrap_or_default();
        unsafe { openduck_invalidate_for_test(self.raw() as *mut c_void, why.as_ptr()) };
    }

    /// A handle that interrupts this connection's running query.
    pub fn interrupter(&self) -> Interrupter {
        Interrupter(self.inner.clone())
    }

    fn raw(&self) -> ffi::duckdb_connection {
        self.inner.0
    }

    /// Runs SQL (one or more statements) and discards any result.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        let csql = cstring(sql, "SQL")?;
        unsafe {
            let mut result: ffi::duckdb_result = std::mem::zeroed();
            let state = ffi::duckdb_query(self.raw(), csql.as_ptr(), &mut result);
            let outcome =
                if state == ffi::DuckDBSuccess { Ok(()) } else { Err(err(c_str(ffi::duckdb_result_error(&mut result), "query failed"))) };
            ffi::duckdb_destroy_result(&mut result);
            outcome
        }
    }

    /// Runs a query and collects its whole result; for small catalog queries only.
    pub fn query_all(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut p = self.prepare(sql)?;
        let mut s = p.execute_streaming()?;
        let mut out = Vec::new();
        while let Some(b) = s.next_batch()? {
            out.push(b);
        }
        Ok(out)
    }

    /// Prepares one SQL statement.
    pub fn prepare(&self, sql: &str) -> Result<Prepared<'_>> {
        let csql = cstring(sql, "SQL")?;
        unsafe {
            let mut stmt: ffi::duckdb_prepared_statement = ptr::null_mut();
            let state = ffi::duckdb_prepare(self.raw(), csql.as_ptr(), &mut stmt);
            if state != ffi::DuckDBSuccess {
                let message = c_str(ffi::duckdb_prepare_error(stmt), "could not prepare statement");
                ffi::duckdb_destroy_prepare(&mut stmt);
                return Err(err(message));
            }
            Ok(Prepared { ptr: stmt, conn: self })
        }
    }

    /// An appender that adds rows to `catalog.schema.table`.
    pub fn appender(&self, catalog: Option<&str>, schema: Option<&str>, table: &str) -> Result<Appender<'_>> {
        let catalog = catalog.map(|c| cstring(c, "catalog")).transpose()?;
        let schema = schema.map(|s| cstring(s, "schema")).transpose()?;
        let table = cstring(table, "table")?;
        unsafe {
            let mut app: ffi::duckdb_appender = ptr::null_mut();
            let state = ffi::duckdb_appender_create_ext(
                self.raw(),
                catalog.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                schema.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
                table.as_ptr(),
                &mut app,
            );
            if state != ffi::DuckDBSuccess {
                let message = c_str(ffi::duckdb_appender_error(app), "could not create appender");
                ffi::duckdb_appender_destroy(&mut app);
                return Err(err(message));
            }
            Ok(Appender { ptr: app, conn: self, converted: None })
        }
    }

    fn arrow_options(&self) -> ArrowOptions {
        let mut options: ffi::duckdb_arrow_options = ptr::null_mut();
        unsafe { ffi::duckdb_connection_get_arrow_options(self.raw(), &mut options) };
        ArrowOptions(options)
    }
}

struct ArrowOptions(ffi::duckdb_arrow_options);

impl Drop for ArrowOptions {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe { ffi::duckdb_destroy_arrow_options(&mut self.0) };
        }
    }
}

struct LogicalType(ffi::duckdb_logical_type);

impl Drop for LogicalType {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe { ffi::duckdb_destroy_logical_type(&mut self.0) };
        }
    }
}

/// Converts DuckDB column types and names to an Arrow schema, the way DuckDB exports results.
fn arrow_schema(options: &ArrowOptions, types: &[LogicalType], names: &[CString]) -> Result<Schema> {
    let mut raw_types: Vec<ffi::duckdb_logical_type> = types.iter().map(|t| t.0).collect();
    let mut raw_names: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let mut out = FFI_ArrowSchema::empty();
    unsafe {
        check_error_data(ffi::duckdb_to_arrow_schema(
            options.0,
            raw_types.as_mut_ptr(),
            raw_names.as_mut_ptr(),
            types.len() as ffi::idx_t,
            &mut out as *mut FFI_ArrowSchema as *mut ffi::ArrowSchema,
        ))?;
    }
    Schema::try_from(&out).map_err(|e| err(format!("could not read DuckDB's Arrow schema: {e}")))
}

/// A prepared statement.
pub struct Prepared<'c> {
    ptr: ffi::duckdb_prepared_statement,
    conn: &'c Conn,
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        unsafe { ffi::duckdb_destroy_prepare(&mut self.ptr) };
    }
}

impl<'c> Prepared<'c> {
    /// Whether running the statement may change a database, as DuckDB's binder found (unlike
    /// [`Prepared::kind`], this knows that `CALL range(5)` only reads); `true` when unknown.
    pub fn modifies(&self) -> bool {
        unsafe { openduck_prepared_modifies(self.ptr as *mut c_void) != 0 }
    }

    /// Whether the statement can only shrink a database (DELETE, DROP): it still runs when the
    /// database is over its size cap.
    pub fn frees_space(&self) -> bool {
        matches!(
            unsafe { ffi::duckdb_prepared_statement_type(self.ptr) },
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_DELETE | ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_DROP
        )
    }

    /// The statement's kind.
    pub fn kind(&self) -> StatementKind {
        StatementKind::from_raw(unsafe { ffi::duckdb_prepared_statement_type(self.ptr) })
    }

    /// Number of parameters (`?`, `$1`, `$name`).
    pub fn parameter_count(&self) -> usize {
        unsafe { ffi::duckdb_nparams(self.ptr) as usize }
    }

    /// The Arrow schema the statement's result will have, known before it runs.
    pub fn result_schema(&self) -> Result<Schema> {
        let n = unsafe { ffi::duckdb_prepared_statement_column_count(self.ptr) } as usize;
        let mut types = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        for i in 0..n {
            unsafe {
                let name = ffi::duckdb_prepared_statement_column_name(self.ptr, i as ffi::idx_t);
                let owned = c_str(name, &format!("column{i}"));
                if !name.is_null() {
                    ffi::duckdb_free(name as *mut c_void);
                }
                names.push(cstring(&owned, "column name")?);
                types.push(LogicalType(ffi::duckdb_prepared_statement_column_logical_type(self.ptr, i as ffi::idx_t)));
            }
        }
        if types.iter().any(|t| t.0.is_null() || !is_concrete(t)) {
            return Ok(Schema::empty());
        }
        arrow_schema(&self.conn.arrow_options(), &types, &names)
    }

    /// The parameters as an Arrow schema, one field per parameter (named by its name or
    /// position). A parameter whose type DuckDB cannot infer is given type Null.
    pub fn parameter_schema(&self) -> Result<Schema> {
        let n = self.parameter_count();
        let options = self.conn.arrow_options();
        let mut fields = Vec::with_capacity(n);
        for i in 1..=n {
            let name = unsafe {
                let p = ffi::duckdb_parameter_name(self.ptr, i as ffi::idx_t);
                let s = c_str(p, &i.to_string());
                if !p.is_null() {
                    ffi::duckdb_free(p as *mut c_void);
                }
                s
            };
            let ty = LogicalType(unsafe { ffi::duckdb_param_logical_type(self.ptr, i as ffi::idx_t) });
            let field = if ty.0.is_null() || !is_concrete(&ty) {
                arrow::datatypes::Field::new(&name, arrow::datatypes::DataType::Null, true)
            } else {
                let one = arrow_schema(&options, &[ty], &[cstring(&name, "parameter name")?])?;
                one.field(0).clone()
            };
            fields.push(field);
        }
        Ok(Schema::new(fields))
    }

    /// Binds `value` to parameter `index` (1-based).
    pub fn bind(&mut self, index: usize, value: Value) -> Result<()> {
        let state = unsafe { ffi::duckdb_bind_value(self.ptr, index as ffi::idx_t, value.0) };
        if state != ffi::DuckDBSuccess {
            let detail = unsafe { c_str(ffi::duckdb_prepare_error(self.ptr), "") };
            return Err(err(format!("could not bind parameter {index}: {detail}")));
        }
        Ok(())
    }

    /// Clears all bound parameters.
    pub fn clear_bindings(&mut self) {
        unsafe { ffi::duckdb_clear_bindings(self.ptr) };
    }

    /// Runs the statement and returns the number of rows it changed.
    pub fn execute_update(&mut self) -> Result<u64> {
        unsafe {
            let mut result: ffi::duckdb_result = std::mem::zeroed();
            let state = ffi::duckdb_execute_prepared(self.ptr, &mut result);
            let outcome = if state == ffi::DuckDBSuccess {
                // Statements that report a count (INSERT, UPDATE, DELETE, CREATE TABLE AS) return
                // it as a single `Count` column; others changed no rows.
                let name = c_str(ffi::duckdb_column_name(&mut result, 0), "");
                if ffi::duckdb_column_count(&mut result) == 1 && name == "Count" && ffi::duckdb_row_count(&mut result) > 0 {
                    Ok(ffi::duckdb_value_int64(&mut result, 0, 0).max(0) as u64)
                } else {
                    Ok(ffi::duckdb_rows_changed(&mut result))
                }
            } else {
                Err(err(c_str(ffi::duckdb_result_error(&mut result), "statement failed")))
            };
            ffi::duckdb_destroy_result(&mut result);
            outcome
        }
    }

    /// Runs the statement and streams its result chunk by chunk.
    pub fn execute_streaming(&mut self) -> Result<ResultStream<'_>> {
        unsafe {
            let mut result: ffi::duckdb_result = std::mem::zeroed();
            if ffi::duckdb_execute_prepared_streaming(self.ptr, &mut result) != ffi::DuckDBSuccess {
                let message = c_str(ffi::duckdb_result_error(&mut result), "query failed");
                ffi::duckdb_destroy_result(&mut result);
                return Err(err(message));
            }
            let n = ffi::duckdb_column_count(&mut result) as usize;
            let mut types = Vec::with_capacity(n);
            let mut names = Vec::with_capacity(n);
            for i in 0..n {
                let name = c_str(ffi::duckdb_column_name(&mut result, i as ffi::idx_t), &format!("column{i}"));
                match cstring(&name, "column name") {
                    Ok(c) => names.push(c),
                    Err(e) => {
                        ffi::duckdb_destroy_result(&mut result);
                        return Err(e);
                    }
                }
                types.push(LogicalType(ffi::duckdb_column_logical_type(&mut result, i as ffi::idx_t)));
            }
            let options = ArrowOptions(ffi::duckdb_result_get_arrow_options(&mut result));
            let schema = arrow_schema(&options, &types, &names).and_then(|s| {
                let import = FFI_ArrowSchema::try_from(arrow::datatypes::DataType::Struct(s.fields().clone()))
                    .map_err(|e| err(format!("arrow schema export failed: {e}")))?;
                Ok((Arc::new(s), import))
            });
            let (schema, import_schema) = match schema {
                Ok(s) => s,
                Err(e) => {
                    ffi::duckdb_destroy_result(&mut result);
                    return Err(e);
                }
            };
            Ok(ResultStream { result, options, schema, import_schema, _stmt: PhantomData })
        }
    }
}

fn is_concrete(t: &LogicalType) -> bool {
    let id = unsafe { ffi::duckdb_get_type_id(t.0) };
    !matches!(id, ffi::DUCKDB_TYPE_DUCKDB_TYPE_INVALID | ffi::DUCKDB_TYPE_DUCKDB_TYPE_ANY) && id != ffi::DUCKDB_TYPE_DUCKDB_TYPE_SQLNULL
}

/// A running query's result, read as Arrow record batches.
pub struct ResultStream<'s> {
    result: ffi::duckdb_result,
    options: ArrowOptions,
    schema: SchemaRef,
    /// The schema as a struct, to import each chunk's Arrow data with (made once).
    import_schema: FFI_ArrowSchema,
    _stmt: PhantomData<&'s mut ()>,
}

impl Drop for ResultStream<'_> {
    fn drop(&mut self) {
        unsafe { ffi::duckdb_destroy_result(&mut self.result) };
    }
}

impl ResultStream<'_> {
    /// The result's Arrow schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The next batch, `Ok(None)` at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        unsafe {
            let mut chunk = ffi::duckdb_fetch_chunk(self.result);
            if chunk.is_null() {
                let e = ffi::duckdb_result_error(&mut self.result);
                if !e.is_null() {
                    return Err(err(c_str(e, "query failed")));
                }
                return Ok(None);
            }
            let mut array = FFI_ArrowArray::empty();
            let converted = check_error_data(ffi::duckdb_data_chunk_to_arrow(
                self.options.0,
                chunk,
                &mut array as *mut FFI_ArrowArray as *mut ffi::ArrowArray,
            ));
            ffi::duckdb_destroy_data_chunk(&mut chunk);
            converted?;
            let data =
                arrow::ffi::from_ffi(array, &self.import_schema).map_err(|e| err(format!("could not import DuckDB's Arrow data: {e}")))?;
            let batch = RecordBatch::from(StructArray::from(data));
            // Keep the schema's field metadata (e.g. extension types) on the batch.
            Ok(Some(batch.with_schema(self.schema.clone()).map_err(|e| err(e.to_string()))?))
        }
    }
}

/// Adds Arrow record batches to a table through DuckDB's appender.
pub struct Appender<'c> {
    ptr: ffi::duckdb_appender,
    conn: &'c Conn,
    converted: Option<(SchemaRef, ffi::duckdb_arrow_converted_schema)>,
}

impl Drop for Appender<'_> {
    fn drop(&mut self) {
        unsafe {
            if let Some((_, mut c)) = self.converted.take() {
                ffi::duckdb_destroy_arrow_converted_schema(&mut c);
            }
            ffi::duckdb_appender_destroy(&mut self.ptr);
        }
    }
}

impl Appender<'_> {
    fn converted_for(&mut self, schema: &SchemaRef) -> Result<ffi::duckdb_arrow_converted_schema> {
        if let Some((s, c)) = &self.converted {
            if s == schema {
                return Ok(*c);
            }
        }
        let mut ffi_schema = FFI_ArrowSchema::try_from(schema.as_ref()).map_err(|e| err(format!("cannot export Arrow schema: {e}")))?;
        let mut converted: ffi::duckdb_arrow_converted_schema = ptr::null_mut();
        unsafe {
            check_error_data(ffi::duckdb_schema_from_arrow(
                self.conn.raw(),
                &mut ffi_schema as *mut FFI_ArrowSchema as *mut ffi::ArrowSchema,
                &mut converted,
            ))?;
            if let Some((_, mut old)) = self.converted.take() {
                ffi::duckdb_destroy_arrow_converted_schema(&mut old);
            }
        }
        self.converted = Some((schema.clone(), converted));
        Ok(converted)
    }

    /// Appends a batch; its columns must match the table's by position.
    pub fn append_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let converted = self.converted_for(&batch.schema())?;
        let step = unsafe { ffi::duckdb_vector_size() } as usize;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = step.min(batch.num_rows() - offset);
            let slice = StructArray::from(batch.slice(offset, len));
            let mut array = FFI_ArrowArray::new(&slice.to_data());
            unsafe {
                let mut chunk: ffi::duckdb_data_chunk = ptr::null_mut();
                check_error_data(ffi::duckdb_data_chunk_from_arrow(
                    self.conn.raw(),
                    &mut array as *mut FFI_ArrowArray as *mut ffi::ArrowArray,
                    converted,
                    &mut chunk,
                ))?;
                let state = ffi::duckdb_append_data_chunk(self.ptr, chunk);
                ffi::duckdb_destroy_data_chunk(&mut chunk);
                if state != ffi::DuckDBSuccess {
                    return Err(err(c_str(ffi::duckdb_appender_error(self.ptr), "append failed")));
                }
            }
            offset += len;
        }
        Ok(())
    }

    /// Flushes buffered rows and closes the appender.
    pub fn close(self) -> Result<()> {
        unsafe {
            if ffi::duckdb_appender_close(self.ptr) != ffi::DuckDBSuccess {
                return Err(err(c_str(ffi::duckdb_appender_error(self.ptr), "appender close failed")));
            }
        }
        Ok(())
    }
}

/// A DuckDB value, for binding parameters.
pub struct Value(ffi::duckdb_value);

impl Drop for Value {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe { ffi::duckdb_destroy_value(&mut self.0) };
        }
    }
}

impl Value {
    fn wrap(p: ffi::duckdb_value) -> Result<Value> {
        if p.is_null() {
            Err(err("could not create DuckDB value"))
        } else {
            Ok(Value(p))
        }
    }
    /// SQL NULL.
    pub fn null() -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_null_value() })
    }
    /// BOOLEAN.
    pub fn boolean(v: bool) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_bool(v) })
    }
    /// BIGINT.
    pub fn int64(v: i64) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_int64(v) })
    }
    /// INTEGER.
    pub fn int32(v: i32) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_int32(v) })
    }
    /// SMALLINT.
    pub fn int16(v: i16) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_int16(v) })
    }
    /// TINYINT.
    pub fn int8(v: i8) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_int8(v) })
    }
    /// UBIGINT.
    pub fn uint64(v: u64) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_uint64(v) })
    }
    /// UINTEGER.
    pub fn uint32(v: u32) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_uint32(v) })
    }
    /// USMALLINT.
    pub fn uint16(v: u16) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_uint16(v) })
    }
    /// UTINYINT.
    pub fn uint8(v: u8) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_uint8(v) })
    }
    /// FLOAT.
    pub fn float(v: f32) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_float(v) })
    }
    /// DOUBLE.
    pub fn double(v: f64) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_double(v) })
    }
    /// VARCHAR.
    pub fn varchar(v: &str) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_varchar_length(v.as_ptr() as *const c_char, v.len() as ffi::idx_t) })
    }
    /// BLOB.
    pub fn blob(v: &[u8]) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_blob(v.as_ptr(), v.len() as ffi::idx_t) })
    }
    /// DATE, as days since 1970-01-01.
    pub fn date(days: i32) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_date(ffi::duckdb_date { days }) })
    }
    /// TIME, as microseconds since midnight.
    pub fn time(micros: i64) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_time(ffi::duckdb_time { micros }) })
    }
    /// TIMESTAMP (or TIMESTAMPTZ with `tz`), as microseconds since the epoch.
    pub fn timestamp(micros: i64, tz: bool) -> Result<Value> {
        let ts = ffi::duckdb_timestamp { micros };
        Value::wrap(unsafe {
            if tz {
                ffi::duckdb_create_timestamp_tz(ts)
            } else {
                ffi::duckdb_create_timestamp(ts)
            }
        })
    }
    /// TIMESTAMP_NS, as nanoseconds since the epoch.
    pub fn timestamp_ns(nanos: i64) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_timestamp_ns(ffi::duckdb_timestamp_ns { nanos }) })
    }
    /// INTERVAL.
    pub fn interval(months: i32, days: i32, micros: i64) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_interval(ffi::duckdb_interval { months, days, micros }) })
    }
    /// DECIMAL(width, scale) from its unscaled value.
    pub fn decimal(value: i128, width: u8, scale: u8) -> Result<Value> {
        let value = ffi::duckdb_hugeint { lower: value as u64, upper: (value >> 64) as i64 };
        Value::wrap(unsafe { ffi::duckdb_create_decimal(ffi::duckdb_decimal { width, scale, value }) })
    }
    /// HUGEINT.
    pub fn hugeint(value: i128) -> Result<Value> {
        Value::wrap(unsafe { ffi::duckdb_create_hugeint(ffi::duckdb_hugeint { lower: value as u64, upper: (value >> 64) as i64 }) })
    }
    /// UUID from its 16 bytes (big-endian, as written).
    pub fn uuid(bytes: [u8; 16]) -> Result<Value> {
        let v = u128::from_be_bytes(bytes);
        Value::wrap(unsafe { ffi::duckdb_create_uuid(ffi::duckdb_uhugeint { lower: v as u64, upper: (v >> 64) as u64 }) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};

    fn mem() -> (tempfile::TempDir, RawDatabase) {
        let dir = tempfile::tempdir().unwrap();
        let db = RawDatabase::open(&dir.path().join("t.duckdb"), &[]).unwrap();
        (dir, db)
    }

    #[test]
    fn schema_before_execution_and_streaming() {
        let (_d, db) = mem();
        let c = db.connect().unwrap();
        c.execute_batch("CREATE TABLE t AS SELECT range::INTEGER AS i, 'x' || range AS s FROM range(5000)").unwrap();
        let mut p = c.prepare("SELECT i, s FROM t WHERE i >= ? ORDER BY i").unwrap();
        assert_eq!(p.kind(), StatementKind::Select);
        assert_eq!(p.parameter_count(), 1);
        let planned = p.result_schema().unwrap();
        assert_eq!(planned.fields().len(), 2);
        p.bind(1, Value::int64(10).unwrap()).unwrap();
        let mut rows = 0;
        let mut s = p.execute_streaming().unwrap();
        assert_eq!(s.schema().as_ref(), &planned);
        while let Some(b) = s.next_batch().unwrap() {
            if rows == 0 {
                let first = b.column(0).as_any().downcast_ref::<Int32Array>().unwrap().value(0);
                assert_eq!(first, 10);
                let s0 = b.column(1).as_any().downcast_ref::<StringArray>().unwrap().value(0);
                assert_eq!(s0, "x10");
            }
            rows += b.num_rows();
        }
        assert_eq!(rows, 4990);
    }

    #[test]
    fn errors_are_messages_not_panics() {
        let (_d, db) = mem();
        let c = db.connect().unwrap();
        let e = c.prepare("SELEC 1").err().unwrap();
        assert!(e.0.starts_with("Parser Error"), "{e}");
        let e = c.prepare("SELECT * FROM missing").err().unwrap();
        assert!(e.0.starts_with("Catalog Error"), "{e}");
        let mut p = c.prepare("SELECT 1/0::INTEGER, error('boom')").unwrap();
        let e = p.execute_streaming().err().map(|e| e.0).unwrap_or_default();
        assert!(e.contains("boom"), "{e}");
    }

    #[test]
    fn update_counts_and_append() {
        let (_d, db) = mem();
        let c = db.connect().unwrap();
        c.execute_batch("CREATE TABLE t (i INTEGER, s VARCHAR)").unwrap();
        let batch = RecordBatch::try_from_iter(vec![
            ("i", Arc::new(Int32Array::from_iter_values(0..5000)) as arrow::array::ArrayRef),
            ("s", Arc::new(StringArray::from_iter_values((0..5000).map(|i| format!("v{i}"))))),
        ])
        .unwrap();
        let mut a = c.appender(None, None, "t").unwrap();
        a.append_batch(&batch).unwrap();
        a.close().unwrap();
        let mut p = c.prepare("UPDATE t SET s = 'z' WHERE i < 100").unwrap();
        assert_eq!(p.kind(), StatementKind::Dml);
        assert_eq!(p.execute_update().unwrap(), 100);
        let mut p = c.prepare("SELECT count(*) FROM t WHERE s = 'v4999'").unwrap();
        let mut s = p.execute_streaming().unwrap();
        let b = s.next_batch().unwrap().unwrap();
        assert_eq!(b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0), 1);
    }

    #[test]
    fn interrupt_stops_a_running_query() {
        let (_d, db) = mem();
        let c = db.connect().unwrap();
        let i = c.interrupter();
        let mut p = c.prepare("SELECT count(*) FROM range(100000000000) a").unwrap();
        // Interrupts until the query has returned: an interrupt before it starts is reset.
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let until = done.clone();
        let t = std::thread::spawn(move || {
            while !until.load(std::sync::atomic::Ordering::SeqCst) {
                i.interrupt();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        let r = p.execute_streaming().and_then(|mut s| s.next_batch());
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        t.join().unwrap();
        let e = r.err().unwrap();
        assert!(e.0.to_lowercase().contains("interrupt"), "{e}");
    }
}
