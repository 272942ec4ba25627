//! Label matchers of query selectors; they also prune blocks by their dataset summaries.

use regex::Regex;

use crate::{DatasetMeta, ModelError};

/// How a matcher compares a label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (anchored)
    Regex,
    /// `!~` (anchored)
    NotRegex,
}

/// One label matcher of a selector, compiled.
#[derive(Clone, Debug)]
pub struct LabelMatcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or pattern.
    pub value: String,
    regex: Option<Regex>,
}

impl LabelMatcher {
    /// Builds a matcher, compiling the pattern of regex matchers (anchored, as in PromQL).
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, ModelError> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    ModelError::InvalidMatcher {
                        name: name.to_string(),
                        pattern: value.to_string(),
                        reason: e.to_string(),
                    }
                })?)
            }
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// True when `value` satisfies the matcher; an absent label has the value "".
    pub fn matches(&self, value: Option<&str>) -> bool {
        self.matches_value(value.unwrap_or(""))
    }

    fn matches_value(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            _ => unreachable!("regex matchers always carry their regex"),
        }
    }

    /// False only when no series of the dataset can match: the summary holds the service, the
    /// profile types and the label names, not every label value.
    pub fn may_match(&self, dataset: &DatasetMeta) -> bool {
        match self.name.as_str() {
            "service_name" => self.matches_value(&dataset.service_name),
            "__profile_type__" => dataset.profile_types.iter().any(|t| self.matches_value(t)),
            name => {
                // A matcher that the empty value fails needs the label to exist.
                let needs_label = !self.matches_value("");
                !needs_label || dataset.label_names.iter().any(|n| n == name)
            }
        }
    }
}
