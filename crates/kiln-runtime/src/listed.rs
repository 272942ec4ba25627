//! Metrics listed in `/metrics` before their first series.
//!
//! prometheus-client leaves a labelled family out of the exposition until it has a series, so
//! a dashboard or an alert on a metric that has not happened yet (no push refused since the
//! start) finds no such metric, and a scrape cannot tell a misspelt name from a quiet one.
//! Families whose label values are known up front create their series at start instead; the
//! ones labelled by tenant cannot, and are registered wrapped in [`Listed`].

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// `M`, whose `# HELP` and `# TYPE` lines are written even while it has no series.
#[derive(Clone, Debug)]
pub struct Listed<M>(pub M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

impl<M: TypedMetric> TypedMetric for Listed<M> {
    const TYPE: MetricType = M::TYPE;
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn an_empty_family_is_described_only_when_listed() {
        let mut registry = Registry::default();
        let family = Family::<Vec<(String, String)>, Counter>::default();
        registry.register("quiet", "A family with no series", family.clone());
        registry.register("listed", "A listed family with no series", Listed(family));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("# TYPE quiet"), "{text}");
        assert!(text.contains("# TYPE listed counter\n"), "{text}");
    }
}
