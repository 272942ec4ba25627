//! The `samples` table of one tenant: a DataFusion table whose scans select blocks through the
//! querier (the metastore's index, the datasets' series, Parquet statistics of the row groups),
//! with the time range, service, profile type and label equalities of the WHERE clause pushed
//! down.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::StreamExt;
use kiln_model::TenantId;
use kiln_querier::{Querier, Query, SelectedDataset, Selector};

use crate::error::{SqlError, querier_error};
use crate::filters::ScanFilters;
use crate::schema::{SAMPLES, dataset_batch};

/// `samples` as one tenant sees it.
#[derive(Debug)]
pub(crate) struct SamplesTable {
    querier: Arc<Querier>,
    tenant: TenantId,
    now_nanos: i64,
    /// Only the series this selector matches (the leak report's label selector).
    selector: Option<Selector>,
}

impl SamplesTable {
    pub(crate) fn new(
        querier: Arc<Querier>,
        tenant: TenantId,
        now_nanos: i64,
        selector: Option<Selector>,
    ) -> Self {
        Self {
            querier,
            tenant,
            now_nanos,
            selector,
        }
    }

    /// The querier's query for `filters`: refused without a lower bound on `time`, and
    /// bounded as every query of the tenant is (`max_query_length`, `max_query_lookback`).
    fn query(&self, filters: &ScanFilters) -> Result<Query, SqlError> {
        let start = filters.start.ok_or(SqlError::NoTimeRange)?;
        let end = filters.end.unwrap_or(self.now_nanos);
        let (start, end) = self
            .querier
            .bounded_range(self.tenant.as_str(), start, end.max(start))
            .map_err(SqlError::from)?;
        Ok(Query {
            tenant: self.tenant.as_str().to_string(),
            profile_type: filters.profile_type.clone(),
            selectors: self.selectors(filters),
            start_nanos: start,
            end_nanos: end,
            stack_filter: None,
            stack_selector: None,
        })
    }
}

impl SamplesTable {
    /// The WHERE clause's services, each with the table's own selector: alternatives, any of
    /// which may match (none: every series).
    fn selectors(&self, filters: &ScanFilters) -> Vec<Selector> {
        let services = filters.selectors();
        let Some(own) = &self.selector else {
            return services;
        };
        if services.is_empty() {
            return vec![own.clone()];
        }
        services
            .into_iter()
            .map(|mut service| {
                service.matchers.extend(own.matchers.iter().cloned());
                service
            })
            .collect()
    }
}

#[async_trait]
impl TableProvider for SamplesTable {
    fn schema(&self) -> SchemaRef {
        SAMPLES.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // The scan narrows what it reads by them; DataFusion still applies each exactly.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let query = self
            .query(&ScanFilters::from_exprs(filters))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..SAMPLES.fields().len()).collect(),
        };
        let schema = Arc::new(SAMPLES.project(&projection)?);
        let partition = SamplesPartition {
            querier: self.querier.clone(),
            query,
            projection,
            schema: schema.clone(),
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![Arc::new(partition)],
            None,
            [],
            false,
            limit,
        )?))
    }
}

/// The one partition of a scan: the selected datasets, a batch each.
#[derive(Debug)]
struct SamplesPartition {
    querier: Arc<Querier>,
    query: Query,
    projection: Vec<usize>,
    schema: SchemaRef,
}

impl PartitionStream for SamplesPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (querier, query) = (self.querier.clone(), self.query.clone());
        let (projection, schema) = (self.projection.clone(), self.schema.clone());
        let batches = futures::stream::once(async move { querier.scan(&query).await })
            .map(move |scan| {
                let (projection, schema) = (projection.clone(), schema.clone());
                match scan {
                    Err(e) => futures::stream::once(async move { Err(querier_error(e)) }).boxed(),
                    Ok(datasets) => datasets
                        .map(move |dataset| batch(dataset, &projection, &schema))
                        .boxed(),
                }
            })
            .flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

fn batch(
    dataset: Result<SelectedDataset, kiln_querier::QuerierError>,
    projection: &[usize],
    schema: &SchemaRef,
) -> Result<arrow::record_batch::RecordBatch> {
    let dataset = dataset.map_err(querier_error)?;
    Ok(dataset_batch(&dataset, projection, schema)?)
}
