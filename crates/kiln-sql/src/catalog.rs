//! What Flight SQL clients ask about the server before they query: its name and abilities
//! (GetSqlInfo), and its catalogs, schemas, table types and tables with their columns
//! (GetCatalogs, GetDbSchemas, GetTableTypes, GetTables). JDBC asks for the first on connect;
//! ADBC's `get_objects`, DBeaver's tree and Grafana's Flight SQL query builder ask for the
//! others. Every tenant sees the same tables (their rows are the tenant's own), so the answers
//! are fixed; the calls still need read credentials like every other.

use std::sync::LazyLock;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, SqlInfo, SqlSupportedCaseSensitivity, SqlSupportedTransaction,
};

use crate::schema::SAMPLES;

/// The one catalog: queries may name `kiln.public.samples` as well as `samples`.
pub(crate) const CATALOG: &str = "kiln";
/// The one schema of [`CATALOG`].
pub(crate) const SCHEMA: &str = "public";
/// The type of every table.
const TABLE_TYPE: &str = "TABLE";

/// The tables, with their columns.
fn tables() -> [(&'static str, SchemaRef); 1] {
    [("samples", SAMPLES.clone())]
}

/// The server's answers to GetSqlInfo.
static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "Kiln");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow format version (Schema.fbs's MetadataVersion V5 is format 1.x).
    info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, false);
    // DataFusion folds unquoted identifiers to lower case.
    info.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    info.append(SqlInfo::SqlAllTablesAreSelectable, true);
    info.build()
        .expect("the server's SQL info is a fixed, valid set")
});

/// GetSqlInfo's rows: the infos asked for (all when none are named).
pub(crate) fn sql_info(command: CommandGetSqlInfo) -> Result<RecordBatch, FlightError> {
    command.into_builder(&SQL_INFO).build()
}

/// GetCatalogs' rows.
pub(crate) fn catalogs(command: CommandGetCatalogs) -> Result<RecordBatch, FlightError> {
    let mut builder = command.into_builder();
    builder.append(CATALOG);
    builder.build()
}

/// GetDbSchemas' rows, filtered by the command's catalog and schema pattern.
pub(crate) fn schemas(command: CommandGetDbSchemas) -> Result<RecordBatch, FlightError> {
    let mut builder = command.into_builder();
    builder.append(CATALOG, SCHEMA);
    builder.build()
}

/// GetTableTypes' rows.
pub(crate) fn table_types(command: CommandGetTableTypes) -> Result<RecordBatch, FlightError> {
    let mut builder = command.into_builder();
    builder.append(TABLE_TYPE);
    builder.build()
}

/// GetTables' rows, filtered by the command's catalog, patterns and table types.
pub(crate) fn tables_batch(command: CommandGetTables) -> Result<RecordBatch, FlightError> {
    let mut builder = command.into_builder();
    for (name, schema) in tables() {
        builder.append(CATALOG, SCHEMA, name, TABLE_TYPE, &schema)?;
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
        let array = batch.column_by_name(column).unwrap().as_string::<i32>();
        (0..array.len())
            .map(|i| array.value(i).to_string())
            .collect()
    }

    #[test]
    fn tables_are_filtered_by_pattern_and_type() {
        let all = tables_batch(CommandGetTables::default()).unwrap();
        assert_eq!(strings(&all, "table_name"), ["samples"]);
        assert_eq!(strings(&all, "catalog_name"), [CATALOG]);
        let none = tables_batch(CommandGetTables {
            table_name_filter_pattern: Some("prof%".into()),
            ..CommandGetTables::default()
        })
        .unwrap();
        assert_eq!(none.num_rows(), 0);
        let views = tables_batch(CommandGetTables {
            table_types: vec!["VIEW".into()],
            ..CommandGetTables::default()
        })
        .unwrap();
        assert_eq!(views.num_rows(), 0);
        let with_columns = tables_batch(CommandGetTables {
            table_name_filter_pattern: Some("sam%".into()),
            include_schema: true,
            ..CommandGetTables::default()
        })
        .unwrap();
        assert_eq!(with_columns.num_rows(), 1);
        assert!(with_columns.column_by_name("table_schema").is_some());
    }

    #[test]
    fn sql_info_answers_every_info_or_the_ones_asked() {
        assert!(sql_info(CommandGetSqlInfo::default()).unwrap().num_rows() >= 10);
        let one = sql_info(CommandGetSqlInfo {
            info: vec![SqlInfo::FlightSqlServerName as u32],
        })
        .unwrap();
        assert_eq!(one.num_rows(), 1);
    }
}
