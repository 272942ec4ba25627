//! Pyroscope's HTTP label endpoints: `/pyroscope/labels` (label names) and
//! `/pyroscope/label-values?label=` (values of one label; `__name__` lists the profile types),
//! each a JSON array of strings, honouring `query`, `from` and `until` where given.

use kiln_model::TenantId;
use kiln_proto::querier::v1::ProfileTypesRequest;
use serde::Deserialize;

use crate::render::resolve_range;
use crate::selector::{Selector, parse_selection};
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
        let (from, until) = resolve_range(self.from.as_deref(), self.until.as_deref())?;
        let (profile_type, selectors) = parse_selection(self.query.as_deref().unwrap_or(""))?;
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
        // Profile types: from the index alone when every series is asked for; else those of
        // the matching series, read as the values of their `__profile_type__` label.
        let label = if label == "__name__" && (profile_type.is_some() || !selectors.is_empty()) {
            "__profile_type__".to_string()
        } else {
            label
        };
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
