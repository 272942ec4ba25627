//! SQL over profiles. Each query gets its own DataFusion session holding only the tables of
//! the caller's tenant ([`samples`](crate::schema::SAMPLES)), read-only (no DDL, DML, COPY or
//! SET), with a memory pool of `--sql.memory-bytes`; scans read through the querier, so the
//! tenant's retention, query length and block limits hold for SQL as for every other read.

mod catalog;
mod error;
mod filters;
mod flight;
mod http;
mod leaks;
mod samples;
mod schema;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use kiln_model::TenantId;
use kiln_querier::Querier;

pub use error::SqlError;
pub use flight::FlightSql;
pub use leaks::{Leak, LeakQuery, LeakReport};

/// Limits of one SQL query (the deadline is the querier's `query_timeout`).
#[derive(Clone, Copy, Debug)]
pub struct SqlLimits {
    /// Rows a query may return.
    pub max_rows: usize,
    /// Memory of the query's operators (aggregations, sorts, joins): DataFusion's pool.
    pub memory_bytes: usize,
}

/// Runs SQL queries over the profiles the querier reads.
#[derive(Debug)]
pub struct SqlEngine {
    querier: Arc<Querier>,
    limits: SqlLimits,
}

/// The result of a query: its schema and rows.
#[derive(Debug)]
pub struct SqlAnswer {
    /// The columns.
    pub schema: SchemaRef,
    /// The rows, in batches.
    pub batches: Vec<RecordBatch>,
}

impl SqlEngine {
    /// An engine reading through `querier`.
    pub fn new(querier: Arc<Querier>, limits: SqlLimits) -> Self {
        Self { querier, limits }
    }

    /// The querier the engine reads through.
    pub fn querier(&self) -> &Arc<Querier> {
        &self.querier
    }

    /// Runs `sql` over `tenant`'s profiles.
    pub async fn query(&self, tenant: &TenantId, sql: &str) -> Result<SqlAnswer, SqlError> {
        self.query_selected(tenant, sql, None).await
    }

    /// The columns `sql` would answer with, planned without reading anything.
    pub async fn schema(&self, tenant: &TenantId, sql: &str) -> Result<SchemaRef, SqlError> {
        let frame = self.plan(tenant, sql, None).await?;
        Ok(Arc::new(frame.schema().as_arrow().clone()))
    }

    /// Plans `sql` in a new session holding `tenant`'s tables (of the series `selector`
    /// matches; all with `None`), refusing anything but a query.
    async fn plan(
        &self,
        tenant: &TenantId,
        sql: &str,
        selector: Option<kiln_querier::Selector>,
    ) -> Result<DataFrame, SqlError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .build_arc()?;
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_default_catalog_and_schema(catalog::CATALOG, catalog::SCHEMA);
        let context = SessionContext::new_with_config_rt(config, runtime);
        let now_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        context.register_table(
            "samples",
            Arc::new(samples::SamplesTable::new(
                self.querier.clone(),
                tenant.clone(),
                now_nanos,
                selector,
            )),
        )?;
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        match context.sql_with_options(sql, read_only).await {
            Ok(frame) => Ok(frame),
            // The read-only options refuse DDL, DML and statements as plan errors.
            Err(e) => match e.find_root() {
                DataFusionError::Plan(message) if message.contains("not supported") => {
                    Err(SqlError::NotAQuery(message.clone()))
                }
                _ => Err(e.into()),
            },
        }
    }

    /// Runs `sql` over `tenant`'s profiles of the series `selector` matches (all with `None`).
    pub(crate) async fn query_selected(
        &self,
        tenant: &TenantId,
        sql: &str,
        selector: Option<kiln_querier::Selector>,
    ) -> Result<SqlAnswer, SqlError> {
        let frame = self.plan(tenant, sql, selector).await?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let mut stream = frame.execute_stream().await?;
        let (mut rows, mut batches) = (0usize, Vec::new());
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            if rows > self.limits.max_rows {
                return Err(SqlError::TooManyRows {
                    limit: self.limits.max_rows,
                });
            }
            batches.push(batch);
        }
        Ok(SqlAnswer { schema, batches })
    }
}

pub use http::router;
