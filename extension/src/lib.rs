//! The Rust half of the OpenDuck DuckDB extension.
//!
//! The C++ shim (DuckDB's catalog API) calls these `extern "C"` functions; everything with logic
//! lives here: parsing connection strings, the Flight SQL client, streaming results as Arrow C
//! streams. Conventions of the C ABI (see `include/openduck_client.h`):
//! - functions return 0 on success; on failure they return non-zero and store a message in
//!   `*err`, which the caller frees with [`openduck_free_string`];
//! - handles are freed by their `*_free` function;
//! - no panic crosses the boundary: a panic becomes an error message.

#![warn(missing_docs)]
// Every `extern "C"` function here takes pointers from the C++ shim, which upholds the contracts
// `include/openduck_client.h` states (valid, NUL-terminated, owned as documented); marking each
// `unsafe` would change nothing for a C caller.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod abortable;
pub mod client;
pub mod conn_string;
pub mod hybrid;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow::ffi_stream::FFI_ArrowArrayStream;

use client::{Client, IngestMode, TableInfo};

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad connection string or option.
    #[error("openduck: {0}")]
    Config(String),
    /// The server could not be reached.
    #[error("openduck: server unreachable: {0}")]
    Unreachable(String),
    /// The server refused the token.
    #[error("openduck: authentication failed (check the token): {0}")]
    Auth(String),
    /// The server reported an error.
    #[error("{0}")]
    Remote(String),
}

fn set_err(err: *mut *mut c_char, message: String) -> c_int {
    if !err.is_null() {
        let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the caller passes a valid out-pointer or NULL.
        unsafe { *err = c.into_raw() };
    }
    1
}

fn guarded(err: *mut *mut c_char, f: impl FnOnce() -> Result<(), String>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => set_err(err, message),
        Err(panic) => {
            let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            set_err(err, format!("openduck: internal error: {}", what.unwrap_or_else(|| "panic".into())))
        }
    }
}

/// Decodes an optional transaction id (hex text, NULL or empty for none).
unsafe fn txn_arg(p: *const c_char) -> Result<Option<client::TxnId>, String> {
    if p.is_null() {
        return Ok(None);
    }
    let text = unsafe { str_arg(p, "transaction id") }?;
    if text.is_empty() {
        return Ok(None);
    }
    hex::decode(text).map(|v| Some(bytes::Bytes::from(v))).map_err(|_| "openduck: malformed transaction id".to_string())
}

unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, String> {
    if p.is_null() {
        return Err(format!("openduck: {what} is NULL"));
    }
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| format!("openduck: {what} is not UTF-8"))
}

unsafe fn client_arg<'a>(p: *const Client) -> Result<&'a Client, String> {
    unsafe { p.as_ref() }.ok_or_else(|| "openduck: client is NULL".to_string())
}

/// Writes `schema` to `out` as an Arrow C schema the caller releases.
fn export_schema(schema: &arrow::datatypes::Schema, out: *mut FFI_ArrowSchema) -> Result<(), String> {
    if out.is_null() {
        return Err("openduck: schema output is NULL".into());
    }
    let ffi = FFI_ArrowSchema::try_from(schema).map_err(|e| format!("openduck: cannot export schema: {e}"))?;
    unsafe { ptr::write(out, ffi) };
    Ok(())
}

/// Frees a string returned by this library.
#[no_mangle]
pub extern "C" fn openduck_free_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: produced by CString::into_raw above.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// Connects to the database named by an `openduck:`/`od:` connection string. `token` (may be
/// NULL) overrides the string's and `OPENDUCK_TOKEN`.
#[no_mangle]
pub extern "C" fn openduck_connect(
    path: *const c_char,
    option_token: *const c_char,
    secret_token: *const c_char,
    out: *mut *mut Client,
    err: *mut *mut c_char,
) -> c_int {
    guarded(err, || {
        let path = unsafe { str_arg(path, "connection string") }?;
        let optional = |p: *const c_char, what: &str| if p.is_null() { Ok(None) } else { unsafe { str_arg(p, what) }.map(Some) };
        let (option_token, secret_token) = (optional(option_token, "token")?, optional(secret_token, "secret token")?);
        let info = conn_string::resolve(path, option_token, secret_token, |k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
        let client = Client::connect(info).map_err(|e| e.to_string())?;
        unsafe { *out = Box::into_raw(Box::new(client)) };
        Ok(())
    })
}

/// Closes a connection.
#[no_mangle]
pub extern "C" fn openduck_disconnect(client: *mut Client) {
    if !client.is_null() {
        drop(unsafe { Box::from_raw(client) });
    }
}

/// The remote tables and schemas, as lists the shim walks with the `openduck_tables_*` and
/// `openduck_schemas_*` accessors.
pub struct Tables(Vec<(TableInfo, CString, CString, CString)>, Vec<CString>);

/// Lists the remote tables and views with their columns.
#[no_mangle]
pub extern "C" fn openduck_tables(client: *const Client, out: *mut *mut Tables, err: *mut *mut c_char) -> c_int {
    guarded(err, || {
        let client = unsafe { client_arg(client) }?;
        let tables = client.tables().map_err(|e| e.to_string())?;
        let schemas = client.schemas().map_err(|e| e.to_string())?;
        let schemas = schemas.into_iter().map(|s| CString::new(s).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
        let mut list = Vec::with_capacity(tables.len());
        for t in tables {
            let s = CString::new(t.schema.clone()).map_err(|e| e.to_string())?;
            let n = CString::new(t.name.clone()).map_err(|e| e.to_string())?;
            let k = CString::new(t.kind.clone()).map_err(|e| e.to_string())?;
            list.push((t, s, n, k));
        }
        unsafe { *out = Box::into_raw(Box::new(Tables(list, schemas))) };
        Ok(())
    })
}

/// Number of tables in the list.
#[no_mangle]
pub extern "C" fn openduck_tables_len(tables: *const Tables) -> usize {
    unsafe { tables.as_ref() }.map_or(0, |t| t.0.len())
}

/// Schema name of table `i` (owned by the list).
#[no_mangle]
pub extern "C" fn openduck_tables_schema(tables: *const Tables, i: usize) -> *const c_char {
    unsafe { tables.as_ref() }.and_then(|t| t.0.get(i)).map_or(ptr::null(), |e| e.1.as_ptr())
}

/// Name of table `i` (owned by the list).
#[no_mangle]
pub extern "C" fn openduck_tables_name(tables: *const Tables, i: usize) -> *const c_char {
    unsafe { tables.as_ref() }.and_then(|t| t.0.get(i)).map_or(ptr::null(), |e| e.2.as_ptr())
}

/// Kind of table `i`: `TABLE`, `VIEW` or `LOCAL TEMPORARY` (owned by the list).
#[no_mangle]
pub extern "C" fn openduck_tables_kind(tables: *const Tables, i: usize) -> *const c_char {
    unsafe { tables.as_ref() }.and_then(|t| t.0.get(i)).map_or(ptr::null(), |e| e.3.as_ptr())
}

/// The server's row estimate for table `i`, or -1 if it has none.
#[no_mangle]
pub extern "C" fn openduck_tables_rows(tables: *const Tables, i: usize) -> i64 {
    unsafe { tables.as_ref() }
        .and_then(|t| t.0.get(i))
        .and_then(|e| e.0.estimated_rows)
        .map_or(-1, |r| i64::try_from(r).unwrap_or(i64::MAX))
}

/// Exports the columns of table `i` as an Arrow C schema (a struct); the caller releases it.
#[no_mangle]
pub extern "C" fn openduck_tables_arrow_schema(tables: *const Tables, i: usize, out: *mut FFI_ArrowSchema, err: *mut *mut c_char) -> c_int {
    guarded(err, || {
        let t = unsafe { tables.as_ref() }.and_then(|t| t.0.get(i)).ok_or("openduck: table index out of range")?;
        export_schema(&t.0.arrow_schema, out)
    })
}

/// Number of remote schemas.
#[no_mangle]
pub extern "C" fn openduck_schemas_len(tables: *const Tables) -> usize {
    unsafe { tables.as_ref() }.map_or(0, |t| t.1.len())
}

/// Name of schema `i` (owned by the list).
#[no_mangle]
pub extern "C" fn openduck_schemas_name(tables: *const Tables, i: usize) -> *const c_char {
    unsafe { tables.as_ref() }.and_then(|t| t.1.get(i)).map_or(ptr::null(), |s| s.as_ptr())
}

/// Frees a table list.
#[no_mangle]
pub extern "C" fn openduck_tables_free(tables: *mut Tables) {
    if !tables.is_null() {
        drop(unsafe { Box::from_raw(tables) });
    }
}

/// Begins a remote transaction; stores its id (hex text, freed with [`openduck_free_string`]).
#[no_mangle]
pub extern "C" fn openduck_begin(client: *const Client, txn: *mut *mut c_char, err: *mut *mut c_char) -> c_int {
    guarded(err, || {
        let client = unsafe { client_arg(client) }?;
        let id = client.begin().map_err(|e| e.to_string())?;
        let c = CString::new(hex::encode(id)).map_err(|e| e.to_string())?;
        unsafe { *txn = c.into_raw() };
        Ok(())
    })
}

/// Commits (`commit` non-zero) or rolls back a remote transaction.
#[no_mangle]
pub extern "C" fn openduck_end(client: *const Client, txn: *const c_char, commit: c_int, err: *mut *mut c_char) -> c_int {
    guarded(err, || {
        let client = unsafe { client_arg(client) }?;
        let id = unsafe { txn_arg(txn) }?.ok_or("openduck: no transaction to end")?;
        client.end(id, commit != 0).map_err(|e| e.to_string())
    })
}

/// Exports the columns of `schema.table` (inside transaction `txn`, may be NULL) as an Arrow C
/// schema (a struct); the caller releases it.
#[no_mangle]
pub extern "C" fn openduck_table_schema(
    client: *const Client,
    schema: *const c_char,
    table: *const c_char,
    txn: *const c_char,
    out: *mut FFI_ArrowSchema,
    err: *mut *mut c_char,
) -> c_int {
    guarded(err, || {
        let client = unsafe { client_arg(client) }?;
        let (schema, table) = (unsafe { str_arg(schema, "schema") }?, unsafe { str_arg(table, "table") }?);
        let arrow = client.table_schema(schema, table, unsafe { txn_arg(txn) }?).map_err(|e| e.to_string())?;
        export_schema(&arrow, out)
    })
}

/// Exports the result schema of query `sql` (inside transaction `txn`, may be NULL) without
/// running it; the caller releases it.
#[no_mangle]
pub extern "C" fn openduck_describe(
    client: *const Client,
    sql: *const c_char,
    txn: *const c_char,
    out: *mut FFI_ArrowSchema,
    err: *mut *mut c_char,
) -> c_int {
    guarded(err, || {
        let client = unsafe { client_arg(client) }?;
        let sql = unsafe { str_arg(sql, "SQL") }?;
        let arrow = client.describe(sql, unsafe { txn_arg(txn) }?).map_err(|e| e.to_string())?;
        export_schema(&arrow, out)
    })
}

/// A pointer the caller promises may be used from any thread.
struct SendPtr(*mut c_void);
// SAFETY: openduck_query's caller guarantees `interrupted_arg` is usable from any thread for the
// stream's lifetime (it is DuckDB's client context, whose interrupt check is thread-safe).
unsafe impl Send for SendPtr {}
impl SendPtr {
    fn get(&self) -> *mut c_void {
        self.0
    }
}

/// The caller's interrupt callback as a check a reader polls (none without a callback). The caller
/// keeps `arg` alive as long as the stream (see the header).
fn interrupt_check(interrupted: Option<extern "C" fn(*mut c_void) -> c_int>, arg: *mut c_void) -> Option<client::InterruptCheck> {
    interrupted.map(|check| {
        let arg = SendPtr(arg);
        Box::new(move || check(arg.get()) != 0) as client::InterruptCheck
    })
}

/// Runs `sql` on the server (inside transaction `txn`, may be NULL); its result streams through
/// `out` (an Arrow C stream the caller releases; releasing it early cancels the remote query).
/// While waiting on the server the stream calls `interrupted(interrupted_arg)` (when given) every
/// 50 ms and fails once it returns non-zero.
#[no_mangle]
pub extern "C" fn openduck_query(
    client: *const Client,
    sql: *const c_char,
    txn: *const c_char,
    interrupted: Option<extern "C" fn(*mut c_void) -> c_int>,
    interrupted_arg: *mut c_void,
    out: *mut FFI_ArrowArrayStream,
    err: *mut *mut c_char,
) -> c_int {
    guarded(err, || {
        let client = unsafe { client_arg(client) }?;
        let sql = unsafe { str_arg(sql, "SQL") }?;
        let txn = unsafe { txn_arg(txn) }?;
        let reader = match interrupt_check(interrupted, interrupted_arg) {
            Some(check) => client.query_interruptible(sql, txn, check),
            None => client.query(sql, txn),
        }
        .map_err(|e| e.to_string())?;
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        unsafe { ptr::write(out, stream) };
        Ok(())
    })
}

/// Runs a statement on the server (inside transaction `txn`, may be NULL) for its effect; stores
/// the number of changed rows.
#[no_mangle]
pub extern "C" fn openduck_execute(
    client: *const Client,
    sql: *const c_char,
    txn: *const c_char,
    rows: *mut i64,
    err: *mut *mut c_char,
) -> c_int {
    guarded(err, || {
        let client = unsafe { client_arg(client) }?;
        let sql = unsafe { str_arg(sql, "SQL") }?;
        let n = client.execute(sql, unsafe { txn_arg(txn) }?).map_err(|e| e.to_string())?;
        if !rows.is_null() {
            unsafe { *rows = n };
        }
        Ok(())
    })
}

/// Starts a bulk load into `schema.table` (`schema` may be NULL; inside transaction `txn`, may be
/// NULL) of batches shaped like
/// `arrow_schema` (a struct schema, consumed); `create` non-zero creates the table, else appends.
#[no_mangle]
pub extern "C" fn openduck_ingest_begin(
    client: *const Client,
    schema: *const c_char,
    table: *const c_char,
    create: c_int,
    txn: *const c_char,
    arrow_schema: *mut FFI_ArrowSchema,
    out: *mut *mut client::Upload,
    err: *mut *mut c_char,
) -> c_int {
    guarded(err, || {
        let client = unsafe { client_arg(client) }?;
        let schema_name = if schema.is_null() { None } else { Some(unsafe { str_arg(schema, "schema") }?) };
        let table = unsafe { str_arg(table, "table") }?;
        if arrow_schema.is_null() {
            return Err("openduck: Arrow schema is NULL".into());
        }
        // SAFETY: the caller hands over a valid schema; reading it moves ownership here.
        let ffi_schema = unsafe { ptr::replace(arrow_schema, FFI_ArrowSchema::empty()) };
        let arrow = arrow::datatypes::Schema::try_from(&ffi_schema).map_err(|e| format!("openduck: bad Arrow schema: {e}"))?;
        let mode = if create != 0 { IngestMode::Create } else { IngestMode::Append };
        let txn = unsafe { txn_arg(txn) }?;
        let upload = client.ingest_begin(schema_name, table, mode, std::sync::Arc::new(arrow), txn).map_err(|e| e.to_string())?;
        unsafe { *out = Box::into_raw(Box::new(upload)) };
        Ok(())
    })
}

/// Sends one batch (a struct array of the load's schema, consumed) of a bulk load.
#[no_mangle]
pub extern "C" fn openduck_ingest_push(upload: *mut client::Upload, array: *mut FFI_ArrowArray, err: *mut *mut c_char) -> c_int {
    guarded(err, || {
        let upload = unsafe { upload.as_mut() }.ok_or("openduck: upload is NULL")?;
        if array.is_null() {
            return Err("openduck: Arrow array is NULL".into());
        }
        let ffi_array = unsafe { ptr::replace(array, FFI_ArrowArray::empty()) };
        let struct_type = arrow::datatypes::DataType::Struct(upload.schema().fields().clone());
        let ffi_schema = FFI_ArrowSchema::try_from(&struct_type).map_err(|e| format!("openduck: {e}"))?;
        let data = unsafe { arrow::ffi::from_ffi(ffi_array, &ffi_schema) }.map_err(|e| format!("openduck: bad Arrow data: {e}"))?;
        let batch = arrow::array::RecordBatch::from(arrow::array::StructArray::from(data));
        let batch = batch.with_schema(upload.schema().clone()).map_err(|e| format!("openduck: {e}"))?;
        upload.push(batch).map_err(|e| e.to_string())
    })
}

/// Ends a bulk load, waits for the server to commit it and frees the handle; stores the rows.
#[no_mangle]
pub extern "C" fn openduck_ingest_finish(upload: *mut client::Upload, rows: *mut i64, err: *mut *mut c_char) -> c_int {
    guarded(err, || {
        if upload.is_null() {
            return Err("openduck: upload is NULL".into());
        }
        let upload = unsafe { Box::from_raw(upload) };
        let n = upload.finish().map_err(|e| e.to_string())?;
        if !rows.is_null() {
            unsafe { *rows = n };
        }
        Ok(())
    })
}

/// Aborts a bulk load (the server discards it) and frees the handle.
#[no_mangle]
pub extern "C" fn openduck_ingest_abort(upload: *mut client::Upload) {
    if !upload.is_null() {
        let mut upload = unsafe { Box::from_raw(upload) };
        upload.abort("cancelled by the client");
    }
}
