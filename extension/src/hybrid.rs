//! The C ABI of hybrid execution: the C++ shim describes the query's relations as DuckDB
//! resolved them, asks the server to split it ([`openduck_split_run`]), reads the answer, and
//! streams each fragment's rows ([`openduck_exchange`]). See `include/openduck_client.h`.

use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr;
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::ffi::FFI_ArrowSchema;
use arrow::ffi_stream::FFI_ArrowArrayStream;
use arrow::ipc::writer::IpcWriteOptions;
use openduck_proto::v1::{Location, Relation, SplitRequest, SplitResponse};

use crate::client::Client;
use crate::{client_arg, export_schema, guarded, interrupt_check, str_arg, txn_arg};

/// A split request being described, then its answer.
pub struct Split {
    request: SplitRequest,
    response: Option<SplitResponse>,
    /// The answer's texts as C strings: fallback reason, local SQL, explain, then per fragment
    /// its SQL and explain.
    texts: Vec<CString>,
}

fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// An Arrow schema as an IPC schema message (as the server encodes the fragments' schemas).
fn schema_ipc(schema: &Schema) -> Result<Vec<u8>, String> {
    let message: arrow_flight::IpcMessage = arrow_flight::SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| format!("openduck: cannot encode a schema: {e}"))?;
    Ok(message.0.to_vec())
}

/// Starts describing the split of `sql`.
#[no_mangle]
pub extern "C" fn openduck_split_new(sql: *const c_char) -> *mut Split {
    let sql = unsafe { str_arg(sql, "SQL") }.unwrap_or_default().to_string();
    Box::into_raw(Box::new(Split { request: SplitRequest { sql, ..Default::default() }, response: None, texts: Vec::new() }))
}

/// Adds a relation: `reference` (`parts` strings) as the query spells it; `remote` non-zero for a
/// table of the server the split is asked of (then `schema`.`table` are its names there and
/// `arrow_schema` may be NULL), else a local one (`catalog`.`schema`.`table`, with its columns in
/// `arrow_schema`, which is consumed). `rows` is its row estimate, -1 if unknown.
#[no_mangle]
pub extern "C" fn openduck_split_add_relation(
    split: *mut Split,
    reference: *const *const c_char,
    parts: usize,
    remote: c_int,
    catalog: *const c_char,
    schema: *const c_char,
    table: *const c_char,
    arrow_schema: *mut FFI_ArrowSchema,
    rows: i64,
    err: *mut *mut c_char,
) -> c_int {
    guarded(err, || {
        let split = unsafe { split.as_mut() }.ok_or("openduck: split is NULL")?;
        let mut spelled = Vec::with_capacity(parts);
        for i in 0..parts {
            spelled.push(unsafe { str_arg(*reference.add(i), "reference") }?.to_string());
        }
        let encoded = if arrow_schema.is_null() {
            Vec::new()
        } else {
            let ffi = unsafe { FFI_ArrowSchema::from_raw(arrow_schema) };
            let schema = Schema::try_from(&ffi).map_err(|e| format!("openduck: cannot read a relation's schema: {e}"))?;
            schema_ipc(&schema)?
        };
        split.request.relations.push(Relation {
            reference: spelled,
            location: if remote != 0 { Location::Remote } else { Location::Local } as i32,
            catalog: if catalog.is_null() { String::new() } else { unsafe { str_arg(catalog, "catalog") }?.to_string() },
            schema: unsafe { str_arg(schema, "schema") }?.to_string(),
            table: unsafe { str_arg(table, "table") }?.to_string(),
            arrow_schema: encoded,
            estimated_rows: (rows >= 0).then_some(rows as u64),
        });
        Ok(())
    })
}

/// Adds a session setting that changes what SQL means (the server falls back if its own differs).
#[no_mangle]
pub extern "C" fn openduck_split_add_setting(split: *mut Split, name: *const c_char, value: *const c_char) {
    let (Some(split), Ok(name), Ok(value)) =
        (unsafe { split.as_mut() }, unsafe { str_arg(name, "name") }, unsafe { str_arg(value, "value") })
    else {
        return;
    };
    split.request.settings.insert(name.to_string(), value.to_string());
}

/// Asks the server (inside transaction `txn`, may be NULL) to split the query described.
#[no_mangle]
pub extern "C" fn openduck_split_run(client: *const Client, split: *mut Split, txn: *const c_char, err: *mut *mut c_char) -> c_int {
    guarded(err, || {
        let client = unsafe { client_arg(client) }?;
        let split = unsafe { split.as_mut() }.ok_or("openduck: split is NULL")?;
        split.request.transaction = unsafe { txn_arg(txn) }?.map(|t| t.to_vec()).unwrap_or_default();
        let response = client.split(&split.request).map_err(|e| e.to_string())?;
        let mut texts = vec![c_text(&response.fallback_reason), c_text(&response.local_sql), c_text(&response.explain)];
        for f in &response.fragments {
            texts.push(c_text(&f.sql));
            texts.push(c_text(&f.explain));
        }
        split.texts = texts;
        split.response = Some(response);
        Ok(())
    })
}

fn text(split: *const Split, i: usize) -> *const c_char {
    match unsafe { split.as_ref() }.and_then(|s| s.texts.get(i)) {
        Some(t) => t.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Why the server left the query to the client ("" when it split it).
#[no_mangle]
pub extern "C" fn openduck_split_fallback(split: *const Split) -> *const c_char {
    text(split, 0)
}

/// The local part, DuckDB SQL reading `__openduck_fragment_<id>` tables.
#[no_mangle]
pub extern "C" fn openduck_split_local_sql(split: *const Split) -> *const c_char {
    text(split, 1)
}

/// The whole plan, one labelled operator per line.
#[no_mangle]
pub extern "C" fn openduck_split_explain(split: *const Split) -> *const c_char {
    text(split, 2)
}

/// The fragments of a split's answer; the caller keeps `split` alive while it uses them.
fn fragments<'a>(split: *const Split) -> &'a [openduck_proto::v1::Fragment] {
    match unsafe { split.as_ref() }.and_then(|s| s.response.as_ref()) {
        Some(r) => r.fragments.as_slice(),
        None => &[],
    }
}

/// How many fragments the plan has.
#[no_mangle]
pub extern "C" fn openduck_split_fragment_count(split: *const Split) -> usize {
    fragments(split).len()
}

/// Fragment `i`'s id.
#[no_mangle]
pub extern "C" fn openduck_split_fragment_id(split: *const Split, i: usize) -> u32 {
    fragments(split).get(i).map(|f| f.id).unwrap_or(u32::MAX)
}

/// Fragment `i`'s row estimate, -1 if unknown.
#[no_mangle]
pub extern "C" fn openduck_split_fragment_rows(split: *const Split, i: usize) -> i64 {
    fragments(split).get(i).and_then(|f| f.estimated_rows).map(|r| r.min(i64::MAX as u64) as i64).unwrap_or(-1)
}

/// Fragment `i`'s SQL (shown by EXPLAIN; also what runs when its plan cannot travel).
#[no_mangle]
pub extern "C" fn openduck_split_fragment_sql(split: *const Split, i: usize) -> *const c_char {
    text(split, 3 + 2 * i)
}

/// Fragment `i`'s operators, one per line.
#[no_mangle]
pub extern "C" fn openduck_split_fragment_explain(split: *const Split, i: usize) -> *const c_char {
    text(split, 4 + 2 * i)
}

/// Fragment `i`'s encoded plan (`*len` bytes; empty when it travels as SQL).
#[no_mangle]
pub extern "C" fn openduck_split_fragment_plan(split: *const Split, i: usize, len: *mut usize) -> *const u8 {
    bytes_out(fragments(split).get(i).map(|f| f.plan.as_slice()).unwrap_or(&[]), len)
}

/// Fragment `i`'s result schema as an Arrow IPC schema message (`*len` bytes).
#[no_mangle]
pub extern "C" fn openduck_split_fragment_schema(split: *const Split, i: usize, len: *mut usize) -> *const u8 {
    bytes_out(fragments(split).get(i).map(|f| f.arrow_schema.as_slice()).unwrap_or(&[]), len)
}

/// `bytes` for C: their address, their length in `*len`.
fn bytes_out(bytes: &[u8], len: *mut usize) -> *const u8 {
    if !len.is_null() {
        unsafe { *len = bytes.len() };
    }
    bytes.as_ptr()
}

/// Frees a split.
#[no_mangle]
pub extern "C" fn openduck_split_free(split: *mut Split) {
    if !split.is_null() {
        drop(unsafe { Box::from_raw(split) });
    }
}

fn read_schema(bytes: &[u8]) -> Result<Schema, String> {
    arrow::ipc::convert::try_schema_from_ipc_buffer(bytes).map_err(|e| format!("openduck: malformed fragment schema: {e}"))
}

/// Exports an Arrow IPC schema message (`len` bytes) as an Arrow C schema the caller releases.
#[no_mangle]
pub extern "C" fn openduck_schema_from_ipc(bytes: *const u8, len: usize, out: *mut FFI_ArrowSchema, err: *mut *mut c_char) -> c_int {
    guarded(err, || {
        let data = if len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(bytes, len) } };
        export_schema(&read_schema(data)?, out)
    })
}

/// Runs one fragment on the server (DoExchange): by its encoded `plan` (`plan_len` bytes), or by
/// `sql` when the plan is empty, inside `txn` (may be NULL). Its rows, whose schema is the IPC
/// message `schema` (`schema_len` bytes) reduced to the `columns` listed in `projection` (all
/// when `projection` is NULL), stream through `out`; interrupts as `openduck_query`.
#[no_mangle]
pub extern "C" fn openduck_exchange(
    client: *const Client,
    plan: *const u8,
    plan_len: usize,
    sql: *const c_char,
    schema: *const u8,
    schema_len: usize,
    projection: *const u32,
    columns: usize,
    txn: *const c_char,
    interrupted: Option<extern "C" fn(*mut c_void) -> c_int>,
    interrupted_arg: *mut c_void,
    out: *mut FFI_ArrowArrayStream,
    err: *mut *mut c_char,
) -> c_int {
    guarded(err, || {
        let client = unsafe { client_arg(client) }?;
        let plan = if plan_len == 0 { Vec::new() } else { unsafe { std::slice::from_raw_parts(plan, plan_len) }.to_vec() };
        let sql = unsafe { str_arg(sql, "SQL") }?.to_string();
        let schema_bytes = if schema_len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(schema, schema_len) } };
        let mut schema = read_schema(schema_bytes)?;
        if !projection.is_null() && columns == 0 {
            // No column read (count(*)): the SQL selects one constant column.
            schema = Schema::new(vec![arrow::datatypes::Field::new("openduck_rows", arrow::datatypes::DataType::Boolean, true)]);
        } else if !projection.is_null() {
            let indices: Vec<usize> = unsafe { std::slice::from_raw_parts(projection, columns) }.iter().map(|&i| i as usize).collect();
            schema = schema.project(&indices).map_err(|e| format!("openduck: bad fragment projection: {e}"))?;
        }
        let schema = Arc::new(schema);
        let txn = unsafe { txn_arg(txn) }?;
        let check = interrupt_check(interrupted, interrupted_arg);
        let reader = client.exchange(plan, sql, schema, txn, check).map_err(|e| e.to_string())?;
        unsafe { ptr::write(out, FFI_ArrowArrayStream::new(Box::new(reader))) };
        Ok(())
    })
}
