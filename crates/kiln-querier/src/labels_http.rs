//! Pyroscope's HTTP label endpoints: `/pyroscope/labels` (label names) and
//! `/pyroscope/label-values?label=` (values of one label; `__name__` lists the profile types),
//! each a JSON array of strings, honouring `query`, `from` and `until` where given.

use kiln_model::{TenantId, parse_time_nanos};
use kiln_proto::querier::v1::ProfileTypesRequest;
use serde::Deserialize;

use crate::selector::{Selector, parse_query};
use crate::service::now_millis;
use crate::{Querier, QuerierError};

/// Parameters of both endpoints.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LabelParams {
    /// `<profile type>{matchers}` or `{matchers}`; every series when absent.
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
    /// The label whose values are listed (`/pyroscope/label-values` only).
    label: Option<String>,
}

impl LabelParams {
    /// The profile type, the selectors and the [from, until) range in nanoseconds; default
    /// the last hour.
    fn resolve(&self) -> Result<(Option<String>, Vec<Selector>, i64, i64), QuerierError> {
        let now = now_millis().saturating_mul(1_000_000);
        let from = parse_time_nanos(self.from.as_deref().unwrap_or("now-1h"), now)?;
        let until = parse_time_nanos(self.until.as_deref().unwrap_or("now"), now)?;
        if from > until {
            return Err(QuerierError::BadRequest(format!(
                "invalid time range: from {from} is after until {until} (nanoseconds)"
            )));
        }
        let text = self.query.as_deref().unwrap_or("").trim();
        let (profile_type, selectors) = if text.is_empty() {
            (None, Vec::new())
        } else if text.starts_with('{') {
            (None, vec![Selector::parse(text)?])
        } else {
            let (profile_type, selector) = parse_query(text)?;
            (Some(profile_type), vec![selector])
        };
        Ok((profile_type, selectors, from, until))
    }
}

impl Querier {
    /// `/pyroscope/labels`: the label names of the matching series, sorted.
    pub(crate) async fn legacy_label_names(
        &self,
        tenant: &TenantId,
        params: LabelParams,
    ) -> Result<Vec<String>, QuerierError> {
        let (profile_type, selectors, from, until) = params.resolve()?;
        let sets = self
            .series_labels(tenant, profile_type, selectors, from, until)
            .await?;
        let mut names: Vec<String> = sets
            .iter()
            .flat_map(|labels| labels.iter().map(|(name, _)| name.to_string()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// `/pyroscope/label-values?label=`: the values of `label` on the matching series,
    /// sorted; for `__name__`, the profile types with data in the range.
    pub(crate) async fn legacy_label_values(
        &self,
        tenant: &TenantId,
        params: LabelParams,
    ) -> Result<Vec<String>, QuerierError> {
        let label = params
            .label
            .clone()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| QuerierError::BadRequest("label parameter is required".to_string()))?;
        let (profile_type, selectors, from, until) = params.resolve()?;
        if label == "__name__" {
            let types = self
                .profile_types(
                    tenant,
                    ProfileTypesRequest {
                        start: from.div_euclid(1_000_000),
                        end: until.div_euclid(1_000_000).max(1),
                    },
                )
                .await?;
            return Ok(types.profile_types.into_iter().map(|t| t.id).collect());
        }
        let sets = self
            .series_labels(tenant, profile_type, selectors, from, until)
            .await?;
        let mut values: Vec<String> = sets
            .iter()
            .filter_map(|labels| labels.get(&label).map(String::from))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}
