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
use kiln_runtime::{FirstTick, spawn_every};
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

/// Jump consistent hash (Lamping and Veach, 2014): the bucket in `0..buckets` of `key`.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j) = (-1_i64, 0_i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1_i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// A stable 64-bit hash of (tenant, service): FNV-1a.
fn placement_key(tenant: &str, service: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant.bytes().chain([0]).chain(service.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
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
            match ingester.push(tenant.clone(), profiles.clone()).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_is_stable_and_moves_little_when_a_bucket_is_added() {
        let keys: Vec<u64> = (0..10_000)
            .map(|i| placement_key("t", &format!("svc-{i}")))
            .collect();
        let before: Vec<usize> = keys.iter().map(|&k| jump_hash(k, 4)).collect();
        let after: Vec<usize> = keys.iter().map(|&k| jump_hash(k, 5)).collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // One fifth of the keys move to the new bucket, and only there.
        assert!((1_700..2_300).contains(&moved), "{moved} keys moved");
        assert!(before.iter().zip(&after).all(|(a, b)| a == b || *b == 4));
        let mut per_bucket = [0; 4];
        for b in before {
            per_bucket[b] += 1;
        }
        assert!(
            per_bucket.iter().all(|&n| (2_200..2_800).contains(&n)),
            "{per_bucket:?}"
        );
        assert_eq!(jump_hash(placement_key("t", "svc-1"), 1), 0);
    }
}
