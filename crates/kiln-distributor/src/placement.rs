//! Placement of profiles on ingesters in other processes.
//!
//! The live ingesters come from the metastore's membership (their heartbeats), refreshed every
//! second. Each (tenant, service) goes to one ingester chosen by jump consistent hashing over the
//! ingesters sorted by address, so that a service's symbols stay together in one segment and a
//! change of membership moves only the services of the ingester that came or went. A failed push
//! is retried on the next ingester of the ring; an ingester that failed is tried last for a few
//! seconds, so a dead one is routed around before its heartbeats expire.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kiln_contract::ingester::{IngestError, Ingester, IngesterClient};
use kiln_contract::metastore::Metastore;
use kiln_contract::{ChannelPool, Role};
use kiln_model::{NormalizedProfile, TenantId};
use kiln_runtime::{FirstTick, jump_hash, spawn_every, stable_hash};
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

/// How long an ingester that failed a push is tried after the others.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// The ingesters of the cluster, as seen by a distributor.
#[derive(Debug)]
pub struct IngesterRing {
    metastore: Arc<dyn Metastore>,
    channels: ChannelPool,
    ingesters: RwLock<Vec<IngesterClient>>,
    suspects: Mutex<HashMap<String, Instant>>,
    push_timeout: Duration,
}

/// The placement key of (tenant, service).
fn placement_key(tenant: &str, service: &str) -> u64 {
    stable_hash([tenant, service])
}

impl IngesterRing {
    /// Starts following the ingester membership in `metastore`, dialing ingesters through
    /// `channels` (the cluster's TLS). `push_timeout` bounds one push to one ingester.
    pub fn start(
        metastore: Arc<dyn Metastore>,
        channels: ChannelPool,
        push_timeout: Duration,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let ring = Arc::new(Self {
            metastore,
            channels,
            ingesters: RwLock::default(),
            suspects: Mutex::default(),
            push_timeout,
        });
        let refreshing = Arc::clone(&ring);
        spawn_every(Duration::from_secs(1), FirstTick::Now, stop, move || {
            let ring = Arc::clone(&refreshing);
            async move {
                if let Err(e) = ring.refresh().await {
                    tracing::warn!(error = %e, "cannot refresh the ingester membership");
                }
            }
        });
        ring
    }

    /// Reads the live ingesters from the metastore.
    pub async fn refresh(&self) -> Result<usize, IngestError> {
        let members = self
            .metastore
            .members(Some(Role::Ingester))
            .await
            .map_err(|e| IngestError::Unavailable(format!("membership: {e}")))?;
        let mut current: BTreeMap<String, IngesterClient> = self
            .ingesters
            .read()
            .iter()
            .map(|c| (c.addr().to_string(), c.clone()))
            .collect();
        let mut next = Vec::with_capacity(members.len());
        for member in members {
            let client = match current.remove(&member.addr) {
                Some(client) => client,
                None => IngesterClient::new(&self.channels, &member.addr, self.push_timeout)?,
            };
            next.push(client);
        }
        next.sort_by(|a, b| a.addr().cmp(b.addr()));
        let count = next.len();
        *self.ingesters.write() = next;
        Ok(count)
    }

    /// The ingesters to try for (tenant, service): its own first, then around the ring, with
    /// recently failed ones last.
    fn candidates(&self, tenant: &str, service: &str) -> Vec<IngesterClient> {
        let ingesters = self.ingesters.read().clone();
        if ingesters.is_empty() {
            return ingesters;
        }
        let first = jump_hash(placement_key(tenant, service), ingesters.len());
        let ordered =
            (0..ingesters.len()).map(|i| ingesters[(first + i) % ingesters.len()].clone());
        let suspects = self.suspects.lock();
        let suspect = |c: &IngesterClient| {
            suspects
                .get(c.addr())
                .is_some_and(|since| since.elapsed() < SUSPECT_FOR)
        };
        let (healthy, failed): (Vec<_>, Vec<_>) = ordered.partition(|c| !suspect(c));
        healthy.into_iter().chain(failed).collect()
    }

    async fn push_service(
        &self,
        tenant: &TenantId,
        service: &str,
        profiles: Vec<NormalizedProfile>,
    ) -> Result<(), IngestError> {
        let candidates = self.candidates(tenant.as_str(), service);
        if candidates.is_empty() {
            return Err(IngestError::Unavailable("no live ingester is known".into()));
        }
        let mut saturated = 0;
        let mut last = None;
        for ingester in &candidates {
            match ingester.push_profiles(tenant, &profiles).await {
                Ok(()) => return Ok(()),
                Err(e @ IngestError::Invalid(_)) => return Err(e),
                Err(e) => {
                    if e.is_overload() {
                        saturated += 1;
                    } else {
                        self.suspects
                            .lock()
                            .insert(ingester.addr().to_string(), Instant::now());
                    }
                    tracing::debug!(ingester = ingester.addr(), error = %e, "push failed; trying the next ingester");
                    last = Some(e);
                }
            }
        }
        let last = last.expect("at least one candidate failed");
        if saturated == candidates.len() {
            return Err(IngestError::Saturated(last.to_string()));
        }
        Err(last)
    }
}

#[async_trait]
impl Ingester for IngesterRing {
    async fn push(
        &self,
        tenant: TenantId,
        profiles: Vec<NormalizedProfile>,
    ) -> Result<(), IngestError> {
        let mut by_service: BTreeMap<String, Vec<NormalizedProfile>> = BTreeMap::new();
        for profile in profiles {
            by_service
                .entry(profile.service_name.clone())
                .or_default()
                .push(profile);
        }
        let pushes = by_service.into_iter().map(|(service, profiles)| {
            let tenant = tenant.clone();
            async move { self.push_service(&tenant, &service, profiles).await }
        });
        futures::future::try_join_all(pushes).await.map(|_| ())
    }
}
