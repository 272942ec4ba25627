//! Parts of queries on other queriers (ADR 0005): the planning querier's side, which runs a
//! part on the querier its window is placed on and on the next when it fails there, and the side
//! that runs a part for another querier (`kiln.querier.v1.QueryPartService`).

use std::sync::Arc;

use async_trait::async_trait;
use kiln_contract::metastore::wire::{block_from_pb, block_to_pb, matcher_from_pb, matcher_to_pb};
use kiln_contract::querier::{PartError, QueryParts};
use kiln_model::BlockMeta;
use kiln_proto::kiln::querier::v1 as pb;
use kiln_proto::kiln::querier::v1::query_part_service_server::{
    QueryPartService, QueryPartServiceServer,
};

use crate::budget::QueryBudget;
use crate::fold::{AnyFold, Fold};
use crate::partial::Partial;
use crate::peers::{MAX_PART_MESSAGE_BYTES, Peer, QuerierPeers};
use crate::select::Query;
use crate::selector::Selector;
use crate::stacks::StackFilter;
use crate::{Querier, QuerierError};

/// Parts one query keeps running on each querier at once.
pub(crate) const PARTS_IN_FLIGHT_PER_QUERIER: usize = 2;

/// A part's result: folded here, or encoded by the querier that folded it.
pub(crate) enum PartResult<T> {
    Local(T),
    Remote(Box<pb::ExecutePartResponse>),
}

/// The part of `query` over `blocks`, as another querier receives it.
fn part_request<Fo: Fold>(
    query: &Query,
    blocks: &[BlockMeta],
    fold: &Fo,
) -> pb::ExecutePartRequest {
    pb::ExecutePartRequest {
        tenant: query.tenant.clone(),
        profile_type: query.profile_type.clone().unwrap_or_default(),
        selectors: query
            .selectors
            .iter()
            .map(|s| pb::Selector {
                matchers: s.matchers.iter().map(matcher_to_pb).collect(),
            })
            .collect(),
        start_nanos: query.start_nanos,
        end_nanos: query.end_nanos,
        stack_trace_selector: query.stack_selector.clone(),
        blocks: blocks.iter().map(block_to_pb).collect(),
        fold: Some(fold.to_pb()),
    }
}

/// The query and blocks of a part another querier sent, checked as a request of its own.
fn part_from_request(
    request: &mut pb::ExecutePartRequest,
) -> Result<(Query, Vec<BlockMeta>), QuerierError> {
    let invalid =
        |e: kiln_contract::metastore::MetastoreError| QuerierError::BadRequest(e.to_string());
    let mut selectors = Vec::with_capacity(request.selectors.len());
    for selector in std::mem::take(&mut request.selectors) {
        let matchers = selector
            .matchers
            .into_iter()
            .map(matcher_from_pb)
            .collect::<Result<_, _>>()
            .map_err(invalid)?;
        selectors.push(Selector { matchers });
    }
    let stack_selector = request.stack_trace_selector.take();
    let query = Query {
        tenant: std::mem::take(&mut request.tenant),
        profile_type: Some(std::mem::take(&mut request.profile_type)).filter(|t| !t.is_empty()),
        selectors,
        start_nanos: request.start_nanos,
        end_nanos: request.end_nanos,
        stack_filter: StackFilter::from_selector(stack_selector.as_ref())?.map(Arc::new),
        stack_selector,
    };
    let blocks = std::mem::take(&mut request.blocks)
        .into_iter()
        .map(block_from_pb)
        .collect::<Result<_, _>>()
        .map_err(invalid)?;
    Ok((query, blocks))
}

impl Querier {
    /// Runs the part `window` over `blocks` on the first of `peers`' candidates that answers,
    /// starting at the querier the window is placed on, whose cache holds its blocks when it
    /// ran the same part before.
    /// A querier that fails (unreachable, storage, shutting down) is suspected and the next
    /// is tried; a part over a budget, or refused as malformed, fails the query at once, as
    /// it would anywhere. When every querier failed, the error names each failure.
    pub(crate) async fn run_part<Fo: Fold>(
        &self,
        peers: &QuerierPeers,
        fold: &Arc<Fo>,
        window: Query,
        blocks: Vec<BlockMeta>,
        budget: &QueryBudget,
    ) -> Result<PartResult<Fo::Acc>, QuerierError> {
        let (start, end) = (window.start_nanos, window.end_nanos);
        let window = Arc::new(window);
        // Encoded once, when another querier is asked; not at all for a part that runs here.
        let mut request = None;
        let mut failures = Vec::new();
        // Placed by where its window starts: the cut points are the first profile times of
        // blocks, so the same blocks make the same windows query after query (all but the
        // first window of a range that slides, which starts at the range's start).
        let key = kiln_runtime::stable_hash([start.to_string().as_str()]);
        for peer in peers.candidates(key) {
            if !failures.is_empty() {
                self.metrics.parts_retried.inc();
            }
            match peer {
                Peer::Local => {
                    let _slot = self.part_slots.acquire().await;
                    self.metrics.parts_executed.inc();
                    let folded = self
                        .fold_blocks(window.clone(), blocks.clone(), fold.new_acc(), fold, budget)
                        .await;
                    match folded {
                        Ok(acc) => return Ok(PartResult::Local(acc)),
                        // Storage as this querier sees it; another may read it.
                        Err(e @ (QuerierError::Block { .. } | QuerierError::Internal(_))) => {
                            failures.push(format!("this querier: {e}"));
                        }
                        Err(e) => return Err(e),
                    }
                }
                Peer::Remote(client) => match client
                    .execute(
                        request
                            .get_or_insert_with(|| part_request(&window, &blocks, fold.as_ref()))
                            .clone(),
                    )
                    .await
                {
                    Ok(response) => return Ok(PartResult::Remote(Box::new(response))),
                    Err(PartError::OverBudget(message)) => {
                        return Err(QuerierError::PartOverBudget(message));
                    }
                    Err(PartError::Invalid(message)) => {
                        return Err(QuerierError::Internal(format!("part refused: {message}")));
                    }
                    Err(e @ PartError::Unavailable(_)) => {
                        tracing::warn!(querier = client.addr(), error = %e, "a part failed; trying the next querier");
                        peers.suspect(client.addr());
                        failures.push(e.to_string());
                    }
                },
            }
        }
        Err(QuerierError::PartFailed {
            start,
            end,
            failures: failures.join("; "),
        })
    }

    /// Runs a part another querier planned: folds it here and encodes the result.
    async fn execute_part(
        &self,
        mut request: pb::ExecutePartRequest,
    ) -> Result<pb::ExecutePartResponse, QuerierError> {
        let (query, blocks) = part_from_request(&mut request)?;
        let fold = AnyFold::from_pb(request.fold.take())?;
        let _slot = self.part_slots.acquire().await;
        self.metrics.parts_executed.inc();
        match fold {
            AnyFold::Tree(fold) => self.fold_part(query, blocks, fold).await,
            AnyFold::Pprof(fold) => self.fold_part(query, blocks, fold).await,
            AnyFold::Series(fold) => self.fold_part(query, blocks, fold).await,
            AnyFold::TreeAndSeries(fold) => self.fold_part(query, blocks, fold).await,
        }
    }

    async fn fold_part<Fo: Fold>(
        &self,
        query: Query,
        blocks: Vec<BlockMeta>,
        fold: Fo,
    ) -> Result<pb::ExecutePartResponse, QuerierError> {
        let budget = QueryBudget::new(&query.tenant, &self.overrides.limits(&query.tenant));
        let _cancel = budget.cancel_on_drop();
        let fold = Arc::new(fold);
        let acc = self
            .fold_blocks(Arc::new(query), blocks, fold.new_acc(), &fold, &budget)
            .await?;
        self.pool
            .run("encode a part", move || {
                let mut response = pb::ExecutePartResponse::default();
                acc.write_part(&mut response);
                response
            })
            .await
    }

    /// The gRPC service that runs parts for other queriers, for the cluster port.
    pub fn part_service(self: &Arc<Self>) -> QueryPartServiceServer<PartService> {
        QueryPartServiceServer::new(PartService(Arc::clone(self)))
            .max_decoding_message_size(MAX_PART_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PART_MESSAGE_BYTES)
    }
}

#[async_trait]
impl QueryParts for Querier {
    async fn execute(
        &self,
        request: pb::ExecutePartRequest,
    ) -> Result<pb::ExecutePartResponse, PartError> {
        self.execute_part(request).await.map_err(|e| match e {
            QuerierError::TooManyBlocks { .. }
            | QuerierError::MergeTooLarge { .. }
            | QuerierError::PartOverBudget(_) => PartError::OverBudget(e.to_string()),
            QuerierError::BadRequest(_) | QuerierError::Request(_) => {
                PartError::Invalid(e.to_string())
            }
            _ => PartError::Unavailable(e.to_string()),
        })
    }
}

/// `kiln.querier.v1.QueryPartService` over a querier.
#[derive(Debug, Clone)]
pub struct PartService(Arc<Querier>);

#[tonic::async_trait]
impl QueryPartService for PartService {
    async fn execute(
        &self,
        request: tonic::Request<pb::ExecutePartRequest>,
    ) -> Result<tonic::Response<pb::ExecutePartResponse>, tonic::Status> {
        QueryParts::execute(self.0.as_ref(), request.into_inner())
            .await
            .map(tonic::Response::new)
            .map_err(tonic::Status::from)
    }
}
