//! The active-series limit: how many distinct series a tenant pushed within the last hour.
//!
//! Each distributor counts the series it has seen itself. Pushes of one series arrive every
//! 10–60 s, so behind a load balancer every distributor soon sees nearly all of a tenant's
//! active series: the local count approaches the global one, and a tenant can exceed the limit
//! at most by the number of distributors (docs/limits.md).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use kiln_model::NormalizedProfile;
use parking_lot::Mutex;

use crate::limits::LimitError;

/// How long a series stays active after its last push.
pub(crate) const ACTIVE_WINDOW: Duration = Duration::from_secs(3600);

/// How often a tenant's expired series are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct TenantSeries {
    /// Hash of the series labels (`__profile_type__` included) -> last push.
    last_seen: HashMap<u64, Instant>,
    pruned: Instant,
    /// The tenant's last accepted push.
    last_push: Instant,
}

/// Active series per tenant, tracked only for tenants with a limit, for at most `max_tenants`
/// tenants at once: tenant ids are chosen by clients, so a new tenant beyond the cap takes the
/// place of the one whose last push is oldest (which then counts from zero again when it comes
/// back: its limit is enforced loosely rather than new tenants refused).
#[derive(Debug)]
pub(crate) struct ActiveSeries {
    tenants: Mutex<HashMap<String, TenantSeries>>,
    max_tenants: usize,
}

impl ActiveSeries {
    /// Counts for at most `max_tenants` tenants (at least one).
    pub(crate) fn new(max_tenants: usize) -> Self {
        Self {
            tenants: Mutex::default(),
            max_tenants: max_tenants.max(1),
        }
    }

    /// Forgets the tenants with no push within the active window: none of their series is
    /// active. Returns how many tenants are left.
    pub(crate) fn forget_inactive(&self, now: Instant) -> usize {
        let mut tenants = self.tenants.lock();
        tenants.retain(|_, state| now.saturating_duration_since(state.last_push) < ACTIVE_WINDOW);
        tenants.len()
    }

    /// How many tenants are counted now.
    pub(crate) fn tracked_tenants(&self) -> usize {
        self.tenants.lock().len()
    }

    /// Records the series of `profiles`, unless they would take `tenant` over `limit` active
    /// series (0: no limit), in which case nothing is recorded and the request is refused.
    pub(crate) fn admit(
        &self,
        tenant: &str,
        limit: usize,
        profiles: &[NormalizedProfile],
        now: Instant,
    ) -> Result<(), LimitError> {
        let mut keys: Vec<u64> = profiles
            .iter()
            .flat_map(|p| &p.series)
            .map(|series| {
                let mut hasher = DefaultHasher::new();
                series.labels.hash(&mut hasher);
                hasher.finish()
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut tenants = self.tenants.lock();
        if limit == 0 {
            tenants.remove(tenant);
            return Ok(());
        }
        // Out of the map while it is checked: a refused push leaves a new tenant no entry and
        // takes no other tenant's place.
        let known = tenants.remove(tenant);
        let new_tenant = known.is_none();
        let mut state = known.unwrap_or_else(|| TenantSeries {
            last_seen: HashMap::new(),
            pruned: now,
            last_push: now,
        });
        let checked = Self::add_series(&mut state, &keys, limit, now);
        if checked.is_err() && new_tenant {
            return checked.map_err(|(series, limit)| LimitError::TooManySeries {
                tenant: tenant.to_string(),
                series,
                limit,
            });
        }
        if new_tenant && tenants.len() >= self.max_tenants {
            let oldest = tenants
                .iter()
                .min_by_key(|(_, state)| state.last_push)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                tenants.remove(&oldest);
            }
        }
        tenants.insert(tenant.to_string(), state);
        checked.map_err(|(series, limit)| LimitError::TooManySeries {
            tenant: tenant.to_string(),
            series,
            limit,
        })
    }

    /// Records `keys` (series hashes) in `state` unless they would make more than `limit`
    /// active series: then nothing is recorded and the error is (series, limit).
    fn add_series(
        state: &mut TenantSeries,
        keys: &[u64],
        limit: usize,
        now: Instant,
    ) -> Result<(), (usize, usize)> {
        if now.duration_since(state.pruned) >= PRUNE_EVERY {
            state
                .last_seen
                .retain(|_, seen| now.duration_since(*seen) < ACTIVE_WINDOW);
            state.pruned = now;
        }
        let active = |seen: &Instant| now.duration_since(*seen) < ACTIVE_WINDOW;
        let new = keys
            .iter()
            .filter(|key| !state.last_seen.get(key).is_some_and(active))
            .count();
        // Known entries bound the active ones from above, so most pushes pass without a count;
        // only near the limit are expired entries dropped to count exactly.
        if new > 0 && state.last_seen.len() + new > limit {
            state.last_seen.retain(|_, seen| active(seen));
            state.pruned = now;
            let series = state.last_seen.len() + new;
            if series > limit {
                return Err((series, limit));
            }
        }
        for &key in keys {
            state.last_seen.insert(key, now);
        }
        state.last_push = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kiln_model::{Labels, ProfileType, SeriesProfile};

    use super::*;

    fn profile(instances: &[&str]) -> NormalizedProfile {
        let profile_type = ProfileType::parse("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
            .expect("a valid profile type");
        NormalizedProfile {
            service_name: "svc".to_string(),
            profile_id: String::new(),
            time_nanos: 0,
            duration_nanos: 0,
            period: 0,
            symbols: Arc::default(),
            series: instances
                .iter()
                .map(|instance| SeriesProfile {
                    labels: Labels::from_pairs([
                        ("service_name".to_string(), "svc".to_string()),
                        ("instance".to_string(), instance.to_string()),
                    ]),
                    profile_type: profile_type.clone(),
                    samples: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn new_series_beyond_the_limit_are_refused_until_old_ones_expire() {
        let series = ActiveSeries::new(10);
        let start = Instant::now();
        series
            .admit("t", 2, &[profile(&["a", "b"])], start)
            .unwrap();
        // Known series always pass; a third is refused, and nothing of its request is kept.
        series
            .admit("t", 2, &[profile(&["a", "b"])], start)
            .unwrap();
        let refused = series
            .admit("t", 2, &[profile(&["a", "c"])], start)
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "tenant t: push would make 3 active series, over max_series_per_tenant 2"
        );
        // Other tenants have their own count.
        series
            .admit("u", 2, &[profile(&["c", "d"])], start)
            .unwrap();
        // `b` not pushed for an hour no longer counts; `a` still does.
        let later = start + ACTIVE_WINDOW;
        series
            .admit("t", 2, &[profile(&["a"])], start + Duration::from_secs(1))
            .unwrap();
        series.admit("t", 2, &[profile(&["c"])], later).unwrap();
        assert!(series.admit("t", 2, &[profile(&["d"])], later).is_err());
        // A limit of 0 turns it off.
        series
            .admit("t", 0, &[profile(&["e", "f", "g"])], later)
            .unwrap();
    }

    #[test]
    fn tenants_are_capped_refusals_leave_nothing_and_inactive_tenants_go() {
        let series = ActiveSeries::new(2);
        let start = Instant::now();
        series.admit("a", 5, &[profile(&["1"])], start).unwrap();
        series
            .admit("b", 5, &[profile(&["1"])], start + Duration::from_secs(1))
            .unwrap();
        // A push refused for its series leaves no entry.
        assert!(
            series
                .admit("c", 1, &[profile(&["1", "2"])], start)
                .is_err()
        );
        assert_eq!(series.tracked_tenants(), 2);
        // A third tenant takes the place of the one whose last push is oldest.
        series
            .admit("c", 5, &[profile(&["1"])], start + Duration::from_secs(2))
            .unwrap();
        assert_eq!(series.tracked_tenants(), 2);
        assert!(!series.tenants.lock().contains_key("a"));
        assert_eq!(series.forget_inactive(start + ACTIVE_WINDOW), 2);
        assert_eq!(
            series.forget_inactive(start + ACTIVE_WINDOW + Duration::from_secs(1)),
            1
        );
    }
}
