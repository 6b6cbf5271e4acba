//! The server's answers to GetSqlInfo and GetXdbcTypeInfo: what this server and DuckDB support.

use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedTransaction, SqlTransactionIsolationLevel,
    XdbcDataType,
};

use crate::auth::Grant;
use crate::error::ServerError;

/// SqlInfo answers for read-write and read-only grants.
pub struct SqlInfos {
    read_write: SqlInfoData,
    read_only: SqlInfoData,
}

impl SqlInfos {
    /// Builds both answers.
    pub fn new() -> Result<Self, ServerError> {
        Ok(SqlInfos { read_write: build(false)?, read_only: build(true)? })
    }

    /// The answer for `grant`.
    pub fn for_grant(&self, grant: &Grant) -> &SqlInfoData {
        if grant.read_only {
            &self.read_only
        } else {
            &self.read_write
        }
    }
}

fn build(read_only: bool) -> Result<SqlInfoData, ServerError> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "OpenDuck");
    b.append(
        SqlInfo::FlightSqlServerVersion,
        format!("{} (DuckDB {})", env!("CARGO_PKG_VERSION"), crate::duck::library_version()).as_str(),
    );
    b.append(SqlInfo::FlightSqlServerArrowVersion, "58");
    b.append(SqlInfo::FlightSqlServerReadOnly, read_only);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::Transaction as i32);
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, !read_only);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, true);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(SqlInfo::SqlIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32);
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, SqlNullOrdering::SqlNullsSortedAtEnd as i32);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlCatalogTerm, "database");
    b.append(SqlInfo::SqlProcedureTerm, "macro");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlTransactionsSupported, true);
    b.append(SqlInfo::SqlDefaultTransactionIsolation, SqlTransactionIsolationLevel::SqlTransactionSerializable as i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    b.append(SqlInfo::SqlBatchUpdatesSupported, true);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, true);
    b.append(SqlInfo::SqlMaxColumnNameLength, 0i64);
    b.append(
        SqlInfo::SqlKeywords,
        &["ANTI", "ASOF", "ATTACH", "DESCRIBE", "PIVOT", "POSITIONAL", "QUALIFY", "SEMI", "SUMMARIZE", "UNPIVOT"][..],
    );
    b.append(SqlInfo::SqlNumericFunctions, &["abs", "ceil", "floor", "round", "sqrt", "pow", "ln", "log10", "exp", "sign"][..]);
    b.append(
        SqlInfo::SqlStringFunctions,
        &["concat", "lower", "upper", "length", "substring", "trim", "replace", "strpos", "regexp_matches"][..],
    );
    b.append(
        SqlInfo::SqlDatetimeFunctions,
        &["current_date", "current_timestamp", "date_part", "date_trunc", "strftime", "strptime", "now"][..],
    );
    b.append(SqlInfo::SqlSystemFunctions, &["current_database", "current_schema", "version"][..]);
    b.build().map_err(ServerError::from)
}

fn ty(name: &str, data_type: XdbcDataType, size: Option<i32>, prefix: Option<&str>, unsigned: Option<bool>) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type,
        column_size: size,
        literal_prefix: prefix.map(str::to_string),
        literal_suffix: prefix.map(str::to_string),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: matches!(data_type, XdbcDataType::XdbcVarchar),
        searchable: Searchable::Full,
        unsigned_attribute: unsigned,
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.to_string()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: unsigned.map(|_| 10),
        interval_precision: None,
    }
}

/// The DuckDB types with their JDBC/ODBC type codes.
pub fn xdbc_type_info() -> Result<XdbcTypeInfoData, ServerError> {
    use XdbcDataType::*;
    let q = Some("'");
    let mut b = XdbcTypeInfoDataBuilder::new();
    for info in [
        ty("BOOLEAN", XdbcBit, Some(1), None, None),
        ty("TINYINT", XdbcTinyint, Some(3), None, Some(false)),
        ty("SMALLINT", XdbcSmallint, Some(5), None, Some(false)),
        ty("INTEGER", XdbcInteger, Some(10), None, Some(false)),
        ty("BIGINT", XdbcBigint, Some(19), None, Some(false)),
        ty("UTINYINT", XdbcTinyint, Some(3), None, Some(true)),
        ty("USMALLINT", XdbcSmallint, Some(5), None, Some(true)),
        ty("UINTEGER", XdbcInteger, Some(10), None, Some(true)),
        ty("UBIGINT", XdbcBigint, Some(20), None, Some(true)),
        ty("HUGEINT", XdbcDecimal, Some(38), None, Some(false)),
        ty("FLOAT", XdbcReal, Some(7), None, Some(false)),
        ty("DOUBLE", XdbcDouble, Some(15), None, Some(false)),
        XdbcTypeInfo {
            create_params: Some(vec!["precision".into(), "scale".into()]),
            fixed_prec_scale: true,
            minimum_scale: Some(0),
            maximum_scale: Some(38),
            ..ty("DECIMAL", XdbcDecimal, Some(38), None, Some(false))
        },
        ty("VARCHAR", XdbcVarchar, None, q, None),
        ty("BLOB", XdbcVarbinary, None, q, None),
        ty("DATE", XdbcDate, Some(10), q, None),
        ty("TIME", XdbcTime, Some(15), q, None),
        ty("TIMESTAMP", XdbcTimestamp, Some(26), q, None),
        ty("TIMESTAMP WITH TIME ZONE", XdbcTimestamp, Some(32), q, None),
        ty("INTERVAL", XdbcInterval, None, q, None),
        ty("UUID", XdbcVarchar, Some(36), q, None),
    ] {
        b.append(info);
    }
    b.build().map_err(ServerError::from)
}
