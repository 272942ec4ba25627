//! Label matchers of query selectors; they also prune blocks by their dataset summaries.

use regex::Regex;

use crate::{DatasetMeta, ModelError};

/// Longest pattern a request may give for one regex, in bytes.
pub const MAX_REGEX_BYTES: usize = 1024;

/// Memory a compiled regex (and its lazy DFA) may take: what a request can make the server
/// build is bounded per pattern.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Compiles a regex from a request within bounds: at most [`MAX_REGEX_BYTES`] of pattern and
/// 256 KiB of compiled program and DFA cache; the error says which bound or syntax failed.
pub fn bounded_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_REGEX_BYTES {
        return Err(format!(
            "pattern of {} bytes is over the limit of {MAX_REGEX_BYTES}",
            pattern.len()
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

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
                Some(bounded_regex(&format!("^(?:{value})$")).map_err(|reason| {
                    ModelError::InvalidMatcher {
                        name: name.to_string(),
                        pattern: value.to_string(),
                        reason,
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
