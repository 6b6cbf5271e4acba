//! Table functions whose rows the server computes (e.g. `openduck_snapshots()`): every column is
//! a BIGINT or a TIMESTAMP (microseconds), any value may be NULL, and the rows are fetched once
//! per query, at bind time.

use std::ffi::{c_void, CString};
use std::sync::Arc;

use libduckdb_sys as ffi;

use super::{err, Conn, Result};

/// A column's SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsColumn {
    /// BIGINT.
    BigInt,
    /// TIMESTAMP; values are microseconds since the epoch.
    Timestamp,
}

/// Produces the rows, or an error message DuckDB reports as the query's error.
pub type RowsProvider = Arc<dyn Fn() -> std::result::Result<Vec<Vec<Option<i64>>>, String> + Send + Sync>;

/// A table function without parameters.
#[derive(Clone)]
pub struct RowsFunction {
    /// Its SQL name.
    pub name: String,
    /// Column names and types.
    pub columns: Vec<(String, RowsColumn)>,
    /// The rows, one `Vec` per row with one value per column.
    pub rows: RowsProvider,
}

struct BindData {
    rows: Vec<Vec<Option<i64>>>,
}

unsafe extern "C" fn drop_box<T>(data: *mut c_void) {
    if !data.is_null() {
        drop(unsafe { Box::from_raw(data as *mut T) });
    }
}

fn with_message(message: &str, f: impl FnOnce(*const std::ffi::c_char)) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    f(c.as_ptr());
}

unsafe extern "C" fn bind(info: ffi::duckdb_bind_info) {
    // SAFETY: the extra info is the `RowsFunction` leaked at registration; DuckDB frees it with
    // the function.
    let function = unsafe { &*(ffi::duckdb_bind_get_extra_info(info) as *const RowsFunction) };
    for (name, kind) in &function.columns {
        let ty = match kind {
            RowsColumn::BigInt => ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT,
            RowsColumn::Timestamp => ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP,
        };
        let Ok(cname) = CString::new(name.as_str()) else {
            continue;
        };
        unsafe {
            let mut logical = ffi::duckdb_create_logical_type(ty);
            ffi::duckdb_bind_add_result_column(info, cname.as_ptr(), logical);
            ffi::duckdb_destroy_logical_type(&mut logical);
        }
    }
    match (function.rows)() {
        Ok(rows) => unsafe {
            ffi::duckdb_bind_set_cardinality(info, rows.len() as u64, true);
            let data = Box::into_raw(Box::new(BindData { rows })) as *mut c_void;
            ffi::duckdb_bind_set_bind_data(info, data, Some(drop_box::<BindData>));
        },
        Err(message) => with_message(&message, |m| unsafe { ffi::duckdb_bind_set_error(info, m) }),
    }
}

unsafe extern "C" fn init(info: ffi::duckdb_init_info) {
    unsafe { ffi::duckdb_init_set_init_data(info, Box::into_raw(Box::new(0usize)) as *mut c_void, Some(drop_box::<usize>)) };
}

unsafe extern "C" fn produce(info: ffi::duckdb_function_info, output: ffi::duckdb_data_chunk) {
    // SAFETY: bind and init data are the boxes set above, alive for the whole scan.
    unsafe {
        let data = &*(ffi::duckdb_function_get_bind_data(info) as *const BindData);
        let position = &mut *(ffi::duckdb_function_get_init_data(info) as *mut usize);
        let start = (*position).min(data.rows.len());
        let n = (data.rows.len() - start).min(ffi::duckdb_vector_size() as usize);
        let columns = ffi::duckdb_data_chunk_get_column_count(output);
        for c in 0..columns {
            let vector = ffi::duckdb_data_chunk_get_vector(output, c);
            let values = ffi::duckdb_vector_get_data(vector) as *mut i64;
            for r in 0..n {
                match data.rows[start + r].get(c as usize).copied().flatten() {
                    Some(v) => *values.add(r) = v,
                    None => {
                        ffi::duckdb_vector_ensure_validity_writable(vector);
                        ffi::duckdb_validity_set_row_invalid(ffi::duckdb_vector_get_validity(vector), r as u64);
                    }
                }
            }
        }
        ffi::duckdb_data_chunk_set_size(output, n as u64);
        *position = start + n;
    }
}

impl Conn {
    /// Registers `function` in the database (visible to every connection).
    pub fn register_rows_function(&self, function: RowsFunction) -> Result<()> {
        let name = CString::new(function.name.as_str()).map_err(|_| err("function name contains NUL"))?;
        unsafe {
            let mut f = ffi::duckdb_create_table_function();
            ffi::duckdb_table_function_set_name(f, name.as_ptr());
            let extra = Box::into_raw(Box::new(function)) as *mut c_void;
            ffi::duckdb_table_function_set_extra_info(f, extra, Some(drop_box::<RowsFunction>));
            ffi::duckdb_table_function_set_bind(f, Some(bind));
            ffi::duckdb_table_function_set_init(f, Some(init));
            ffi::duckdb_table_function_set_function(f, Some(produce));
            let state = ffi::duckdb_register_table_function(self.raw(), f);
            ffi::duckdb_destroy_table_function(&mut f);
            if state != ffi::DuckDBSuccess {
                return Err(err(format!("could not register table function {}", name.to_string_lossy())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duck::RawDatabase;

    #[test]
    fn rows_nulls_and_errors() {
        let db = RawDatabase::open(std::path::Path::new(":memory:"), &[]).unwrap();
        let conn = db.connect().unwrap();
        let rows: Vec<Vec<Option<i64>>> = (0..5000).map(|i| vec![Some(i), if i % 2 == 0 { None } else { Some(1_000_000 * i) }]).collect();
        conn.register_rows_function(RowsFunction {
            name: "numbers".into(),
            columns: vec![("n".into(), RowsColumn::BigInt), ("ts".into(), RowsColumn::Timestamp)],
            rows: Arc::new(move || Ok(rows.clone())),
        })
        .unwrap();
        conn.register_rows_function(RowsFunction {
            name: "broken".into(),
            columns: vec![("x".into(), RowsColumn::BigInt)],
            rows: Arc::new(|| Err("store is down".into())),
        })
        .unwrap();
        // Visible from another connection; spans several vectors.
        let other = db.connect().unwrap();
        let batches = other.query_all("SELECT count(*), sum(n), count(ts), max(ts)::VARCHAR FROM numbers()").unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(
            text.contains("5000") && text.contains("12497500") && text.contains("2500") && text.contains("1970-01-01 01:23:19"),
            "{text}"
        );
        let e = other.query_all("SELECT * FROM broken()").unwrap_err();
        assert!(e.to_string().contains("store is down"), "{e}");
    }
}
