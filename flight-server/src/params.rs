//! Turning bound Arrow parameters into DuckDB values.
//!
//! Flight SQL clients bind parameters as Arrow record batches: one column per parameter, one row
//! per execution. Each cell becomes a DuckDB value of the matching type.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};

use crate::duck::{DuckError, Prepared, Value};

/// Binds row `row` of `batch` to the statement's parameters, column `i` to parameter `i + 1`.
pub fn bind_row(stmt: &mut Prepared<'_>, batch: &RecordBatch, row: usize) -> Result<(), DuckError> {
    let expected = stmt.parameter_count();
    if batch.num_columns() != expected {
        return Err(DuckError(format!("statement has {expected} parameter(s) but {} were bound", batch.num_columns())));
    }
    stmt.clear_bindings();
    for (i, column) in batch.columns().iter().enumerate() {
        let name = batch.schema().field(i).name().clone();
        let value = cell(column.as_ref(), row).map_err(|e| DuckError(format!("parameter {} ('{name}'): {}", i + 1, e.0)))?;
        stmt.bind(i + 1, value)?;
    }
    Ok(())
}

/// The DuckDB value of one Arrow cell.
pub fn cell(array: &dyn Array, row: usize) -> Result<Value, DuckError> {
    if array.is_null(row) {
        return Value::null();
    }
    match array.data_type() {
        DataType::Null => Value::null(),
        DataType::Boolean => Value::boolean(array.as_boolean().value(row)),
        DataType::Int8 => Value::int8(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::int16(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::int32(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::int64(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::uint8(array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::uint16(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::uint32(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::uint64(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float16 => Value::float(array.as_primitive::<Float16Type>().value(row).to_f32()),
        DataType::Float32 => Value::float(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => Value::double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::varchar(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Value::varchar(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Value::varchar(array.as_string_view().value(row)),
        DataType::Binary => Value::blob(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => Value::blob(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => Value::blob(array.as_binary_view().value(row)),
        // UUID is DuckDB's only 16-byte fixed type (a field's `arrow.uuid` name is not visible here).
        DataType::FixedSizeBinary(16) => {
            let bytes: [u8; 16] = array.as_fixed_size_binary().value(row).try_into().map_err(|_| DuckError("bad UUID".into()))?;
            Value::uuid(bytes)
        }
        DataType::FixedSizeBinary(_) => Value::blob(array.as_fixed_size_binary().value(row)),
        DataType::Date32 => Value::date(array.as_primitive::<Date32Type>().value(row)),
        DataType::Date64 => Value::date((array.as_primitive::<Date64Type>().value(row) / 86_400_000) as i32),
        DataType::Time32(TimeUnit::Second) => Value::time(i64::from(array.as_primitive::<Time32SecondType>().value(row)) * 1_000_000),
        DataType::Time32(_) => Value::time(i64::from(array.as_primitive::<Time32MillisecondType>().value(row)) * 1_000),
        DataType::Time64(TimeUnit::Nanosecond) => Value::time(array.as_primitive::<Time64NanosecondType>().value(row) / 1_000),
        DataType::Time64(_) => Value::time(array.as_primitive::<Time64MicrosecondType>().value(row)),
        DataType::Timestamp(unit, tz) => {
            let tz = tz.is_some();
            match unit {
                TimeUnit::Second => Value::timestamp(array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000, tz),
                TimeUnit::Millisecond => Value::timestamp(array.as_primitive::<TimestampMillisecondType>().value(row) * 1_000, tz),
                TimeUnit::Microsecond => Value::timestamp(array.as_primitive::<TimestampMicrosecondType>().value(row), tz),
                TimeUnit::Nanosecond if !tz => Value::timestamp_ns(array.as_primitive::<TimestampNanosecondType>().value(row)),
                TimeUnit::Nanosecond => Value::timestamp(array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000, tz),
            }
        }
        DataType::Interval(IntervalUnit::YearMonth) => Value::interval(array.as_primitive::<IntervalYearMonthType>().value(row), 0, 0),
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            Value::interval(0, v.days, i64::from(v.milliseconds) * 1_000)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            Value::interval(v.months, v.days, v.nanoseconds / 1_000)
        }
        DataType::Decimal128(precision, scale) if *scale >= 0 => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            Value::decimal(v, *precision, *scale as u8)
        }
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            let key = dict.normalized_keys()[row];
            cell(dict.values().as_ref(), key)
        }
        other => Err(DuckError(format!("Arrow type {other} cannot be bound as a parameter"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duck::RawDatabase;
    use arrow::array::{ArrayRef, Date32Array, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;

    #[test]
    fn binds_common_types() {
        let dir = tempfile::tempdir().unwrap();
        let db = RawDatabase::open(&dir.path().join("p.duckdb"), &[]).unwrap();
        let c = db.connect().unwrap();
        let mut p = c
            .prepare("SELECT ?::BIGINT + 1 AS a, ? || '!' AS b, ?::DATE AS c, ?::DECIMAL(10,2) AS d, ?::TIMESTAMP AS e, ? IS NULL AS f")
            .unwrap();
        let batch = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![41])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["hi"]))),
            ("c", Arc::new(Date32Array::from(vec![19000]))),
            ("d", Arc::new(Decimal128Array::from(vec![12345]).with_precision_and_scale(10, 2).unwrap())),
            ("e", Arc::new(TimestampMicrosecondArray::from(vec![1_000_000]))),
            ("f", Arc::new(Int64Array::from(vec![None::<i64>]))),
        ])
        .unwrap();
        bind_row(&mut p, &batch, 0).unwrap();
        let mut s = p.execute_streaming().unwrap();
        let b = s.next_batch().unwrap().unwrap();
        drop(s);
        let text = arrow::util::pretty::pretty_format_batches(&[b]).unwrap().to_string();
        assert!(text.contains("| 42 | hi! | 2022-01-08 | 123.45 | 1970-01-01T00:00:01 | true |"), "{text}");
        let short = RecordBatch::try_from_iter(vec![("a", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]).unwrap();
        assert!(bind_row(&mut p, &short, 0).unwrap_err().0.contains("6 parameter(s) but 1"));
    }
}
