//! Per-tenant metric series for tenant ids that requests choose: at most a number of tenants
//! at once, each forgotten after a while without use.
//!
//! Until requests are authenticated, `X-Scope-OrgID` is whatever a client sends: a client
//! sending a new random id with every request would otherwise add series to every metric
//! labelled by tenant, for ever. Tenants beyond the cap share the label [`OTHER_TENANTS`].

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The tenant label of the tenants beyond the cap. Not a valid tenant id (`#` is not allowed),
/// so it never stands for one tenant.
pub const OTHER_TENANTS: &str = "#other";

#[derive(Debug)]
struct Tracked<K> {
    last_seen: Instant,
    series: HashSet<K>,
}

/// The tenants named in metric labels, with the series (of type `K`) made for each.
#[derive(Debug)]
pub struct BoundedTenants<K> {
    max: usize,
    idle: Duration,
    tenants: Mutex<HashMap<String, Tracked<K>>>,
}

impl<K: Clone + Eq + Hash> BoundedTenants<K> {
    /// Labels for at most `max` tenants at once (0: none, every tenant is [`OTHER_TENANTS`]),
    /// each forgotten `idle` after its last use.
    pub fn new(max: usize, idle: Duration) -> Self {
        Self {
            max,
            idle,
            tenants: Mutex::default(),
        }
    }

    /// The series key for `tenant` that `key` builds from a tenant label: the tenant itself
    /// while it is tracked or there is room to track it, else [`OTHER_TENANTS`]. The key of a
    /// tracked tenant is remembered, for [`BoundedTenants::expire`]. An empty tenant (none
    /// named) stays empty and is not tracked.
    pub fn series(&self, tenant: &str, now: Instant, key: impl FnOnce(&str) -> K) -> K {
        if tenant.is_empty() {
            return key("");
        }
        let mut tenants = self.tenants.lock();
        if !tenants.contains_key(tenant) && tenants.len() >= self.max {
            return key(OTHER_TENANTS);
        }
        let tracked = tenants
            .entry(tenant.to_string())
            .or_insert_with(|| Tracked {
                last_seen: now,
                series: HashSet::new(),
            });
        tracked.last_seen = now;
        let key = key(tenant);
        if !tracked.series.contains(&key) {
            tracked.series.insert(key.clone());
        }
        key
    }

    /// Forgets the tenants unused for the idle time as of `now`, and returns their series, to
    /// be removed from the metrics.
    pub fn expire(&self, now: Instant) -> Vec<K> {
        let mut expired = Vec::new();
        self.tenants.lock().retain(|_, tracked| {
            let keep = now.saturating_duration_since(tracked.last_seen) < self.idle;
            if !keep {
                expired.extend(tracked.series.drain());
            }
            keep
        });
        expired
    }

    /// How many tenants are tracked now.
    pub fn len(&self) -> usize {
        self.tenants.lock().len()
    }

    /// True when no tenant is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How often [`BoundedTenants::expire`] should run: half the idle time, between 100 ms and a
    /// minute.
    pub fn sweep_period(&self) -> Duration {
        (self.idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_beyond_the_cap_share_a_label_and_idle_ones_expire() {
        let tenants = BoundedTenants::new(2, Duration::from_secs(10));
        let start = Instant::now();
        let key = |label: &str| (label.to_string(), "reason");
        assert_eq!(tenants.series("a", start, key).0, "a");
        assert_eq!(tenants.series("b", start, key).0, "b");
        assert_eq!(tenants.series("c", start, key).0, OTHER_TENANTS);
        assert_eq!(tenants.series("", start, key).0, "");
        assert_eq!(tenants.len(), 2);
        // `a` stays in use; `b` goes idle and is forgotten with its series.
        let later = start + Duration::from_secs(6);
        tenants.series("a", later, |label| (label.to_string(), "other"));
        let expired = tenants.expire(start + Duration::from_secs(12));
        assert_eq!(expired, vec![("b".to_string(), "reason")]);
        assert_eq!(tenants.len(), 1);
        // Its place is free again.
        assert_eq!(tenants.series("c", later, key).0, "c");
        let none = BoundedTenants::new(0, Duration::from_secs(1));
        assert_eq!(none.series("a", start, key).0, OTHER_TENANTS);
        assert!(none.is_empty());
    }
}
