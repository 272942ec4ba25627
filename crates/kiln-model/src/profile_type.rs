use std::fmt;

use serde::{Deserialize, Serialize};

/// A profile type as Pyroscope names it:
/// `<name>:<sample_type>:<sample_unit>:<period_type>:<period_unit>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProfileType {
    /// The profile name, the `__name__` label (`process_cpu`, `memory`, ...).
    pub name: String,
    /// What a sample value measures (`cpu`, `alloc_space`, ...).
    pub sample_type: String,
    /// The unit of a sample value (`nanoseconds`, `bytes`, `count`).
    pub sample_unit: String,
    /// What the sampling period measures.
    pub period_type: String,
    /// The unit of the sampling period.
    pub period_unit: String,
}

impl ProfileType {
    /// The id, equal to the `__profile_type__` label.
    pub fn id(&self) -> String {
        self.to_string()
    }

    /// Parses an id of five colon-separated parts.
    pub fn parse(id: &str) -> Option<Self> {
        let parts: Vec<&str> = id.split(':').collect();
        let [name, sample_type, sample_unit, period_type, period_unit] = parts.as_slice() else {
            return None;
        };
        if name.is_empty() || sample_type.is_empty() {
            return None;
        }
        Some(Self {
            name: name.to_string(),
            sample_type: sample_type.to_string(),
            sample_unit: sample_unit.to_string(),
            period_type: period_type.to_string(),
            period_unit: period_unit.to_string(),
        })
    }
}

impl fmt::Display for ProfileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}:{}",
            self.name, self.sample_type, self.sample_unit, self.period_type, self.period_unit
        )
    }
}

/// The profile name (`__name__`) for a pprof that carries no explicit one, from its sample
/// types and period type; `hint` is the suffix of the /ingest application name
/// (`app.mutex` gives `mutex`), which tells mutex from block profiles apart since both look the
/// same in pprof. The table is documented in docs/profile-types.md.
pub fn profile_name_for(sample_types: &[&str], period_type: &str, hint: Option<&str>) -> String {
    let has = |t: &str| sample_types.contains(&t);
    match hint {
        Some("mutex" | "mutex_count" | "mutex_duration") => return "mutex".to_string(),
        Some("block" | "block_count" | "block_duration") => return "block".to_string(),
        _ => {}
    }
    if has("wall") {
        return "wall".to_string();
    }
    if sample_types.iter().any(|t| t.contains("cpu")) || period_type == "cpu" {
        return "process_cpu".to_string();
    }
    if sample_types.iter().any(|t| {
        t.starts_with("alloc_")
            || t.starts_with("inuse_")
            || t.contains("space")
            || t.contains("objects")
    }) || period_type == "space"
    {
        return "memory".to_string();
    }
    if has("goroutine") || has("goroutines") {
        return "goroutines".to_string();
    }
    if has("contentions") || has("delay") {
        // Go's mutex and block profiles share sample types; without a hint (the client's
        // sample_type_config) Pyroscope classes them as mutex, and so does Kiln.
        return "mutex".to_string();
    }
    sample_types
        .first()
        .map(|t| t.to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_ids() {
        let id = "memory:alloc_space:bytes:space:bytes";
        assert_eq!(ProfileType::parse(id).unwrap().id(), id);
        assert!(ProfileType::parse("a:b:c").is_none());
    }

    #[test]
    fn names_go_profiles() {
        assert_eq!(
            profile_name_for(&["samples", "cpu"], "cpu", None),
            "process_cpu"
        );
        assert_eq!(
            profile_name_for(
                &[
                    "alloc_objects",
                    "alloc_space",
                    "inuse_objects",
                    "inuse_space"
                ],
                "space",
                None
            ),
            "memory"
        );
        assert_eq!(
            profile_name_for(&["goroutine"], "goroutine", None),
            "goroutines"
        );
        assert_eq!(
            profile_name_for(&["contentions", "delay"], "contentions", Some("block")),
            "block"
        );
    }
}
