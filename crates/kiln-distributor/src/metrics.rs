use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Prometheus metrics of the distributor.
#[derive(Clone, Debug)]
pub struct DistributorMetrics {
    /// Profiles accepted, by protocol.
    pub received_profiles: Family<Vec<(String, String)>, Counter>,
    /// Decompressed profile bytes accepted, by protocol.
    pub received_bytes: Family<Vec<(String, String)>, Counter>,
    /// Requests refused, by protocol, tenant (empty when none was valid) and reason.
    pub rejected_requests: Family<Vec<(String, String)>, Counter>,
    /// Profiles refused by a tenant's limits, by tenant and reason.
    pub discarded_profiles: Family<Vec<(String, String)>, Counter>,
    /// Samples (deep stacks) or symbols (long names) truncated, by tenant and what.
    pub truncated: Family<Vec<(String, String)>, Counter>,
}

impl DistributorMetrics {
    /// Creates the metrics and registers them under `kiln_distributor_`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            received_profiles: Family::default(),
            received_bytes: Family::default(),
            rejected_requests: Family::default(),
            discarded_profiles: Family::default(),
            truncated: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("kiln_distributor");
        registry.register(
            "received_profiles",
            "Profiles accepted",
            metrics.received_profiles.clone(),
        );
        registry.register(
            "received_bytes",
            "Decompressed profile bytes accepted",
            metrics.received_bytes.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests refused, by protocol, tenant and reason",
            metrics.rejected_requests.clone(),
        );
        registry.register(
            "discarded_profiles",
            "Profiles refused by a tenant's limits, by tenant and reason",
            metrics.discarded_profiles.clone(),
        );
        registry.register(
            "truncated",
            "Stacks cut to the maximum depth and symbols cut to the maximum length, by tenant",
            metrics.truncated.clone(),
        );
        metrics
    }

    pub(crate) fn discarded(&self, tenant: &str, reason: &str, profiles: u64) {
        let labels = vec![
            ("tenant".to_string(), tenant.to_string()),
            ("reason".to_string(), reason.to_string()),
        ];
        self.discarded_profiles
            .get_or_create(&labels)
            .inc_by(profiles);
    }

    pub(crate) fn truncated(&self, tenant: &str, what: &str, count: u64) {
        if count == 0 {
            return;
        }
        let labels = vec![
            ("tenant".to_string(), tenant.to_string()),
            ("what".to_string(), what.to_string()),
        ];
        self.truncated.get_or_create(&labels).inc_by(count);
    }

    pub(crate) fn accepted(&self, protocol: &str, profiles: u64, bytes: u64) {
        let labels = vec![("protocol".to_string(), protocol.to_string())];
        self.received_profiles
            .get_or_create(&labels)
            .inc_by(profiles);
        self.received_bytes.get_or_create(&labels).inc_by(bytes);
    }

    pub(crate) fn rejected(&self, protocol: &str, tenant: &str, reason: &str) {
        let labels = vec![
            ("protocol".to_string(), protocol.to_string()),
            ("tenant".to_string(), tenant.to_string()),
            ("reason".to_string(), reason.to_string()),
        ];
        self.rejected_requests.get_or_create(&labels).inc();
    }
}
