use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// The label that names the profile (`process_cpu`, `memory`, ...).
pub const LABEL_NAME: &str = "__name__";
/// The label holding the full profile type id.
pub const LABEL_PROFILE_TYPE: &str = "__profile_type__";
/// The label that names the service; every series has one.
pub const LABEL_SERVICE_NAME: &str = "service_name";

/// Longest label name accepted, in bytes (Pyroscope's default).
pub const MAX_LABEL_NAME_LEN: usize = 1024;
/// Longest label value accepted, in bytes (Pyroscope's default).
pub const MAX_LABEL_VALUE_LEN: usize = 2048;

/// A set of labels sorted by name, names unique.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Builds a label set from pairs; a later pair with the same name replaces an earlier one.
    /// Pairs with an empty value are dropped, as in Prometheus: an empty value means "absent".
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut labels = Self::default();
        for (name, value) in pairs {
            labels.set(name.into(), value.into());
        }
        labels
    }

    /// Sets `name` to `value`, replacing any previous value; an empty value removes the label.
    pub fn set(&mut self, name: String, value: String) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Iterates over `(name, value)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks every name and value against the naming rules and length limits.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in self.iter() {
            validate_label_name(name)?;
            validate_label_value(name, value)?;
        }
        Ok(())
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={value:?}")?;
        }
        f.write_str("}")
    }
}

/// Checks that `name` matches `[a-zA-Z_][a-zA-Z0-9_.]*` and is not too long.
pub fn validate_label_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if valid_start && valid_rest && name.len() <= MAX_LABEL_NAME_LEN {
        Ok(())
    } else {
        Err(ModelError::InvalidLabelName {
            name: truncate_for_message(name),
            max: MAX_LABEL_NAME_LEN,
        })
    }
}

/// Checks the length of a label value (UTF-8 is guaranteed by `&str`).
pub fn validate_label_value(name: &str, value: &str) -> Result<()> {
    if value.len() > MAX_LABEL_VALUE_LEN {
        return Err(ModelError::LabelValueTooLong {
            name: name.to_string(),
            len: value.len(),
            max: MAX_LABEL_VALUE_LEN,
        });
    }
    Ok(())
}

fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Parses Pyroscope's application name syntax, `app.name{key=value,key2="value 2"}`, into the
/// name and its labels. Values may be bare or double-quoted.
pub fn parse_app_name(input: &str) -> Result<(String, Labels)> {
    let invalid = |reason: &str| ModelError::InvalidAppName {
        name: input.to_string(),
        reason: reason.to_string(),
    };
    let (name, rest) = match input.find('{') {
        Some(i) => (&input[..i], Some(&input[i + 1..])),
        None => (input, None),
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    let mut labels = Labels::default();
    if let Some(rest) = rest {
        let body = rest
            .trim_end()
            .strip_suffix('}')
            .ok_or_else(|| invalid("missing closing '}'"))?;
        for pair in split_pairs(body).map_err(|reason| invalid(&reason))? {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(&format!("label {pair:?} has no '='")))?;
            let key = key.trim();
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            validate_label_name(key)?;
            validate_label_value(key, value)?;
            if labels.get(key).is_some() {
                return Err(ModelError::DuplicateLabel(key.to_string()));
            }
            labels.set(key.to_string(), value.to_string());
        }
    }
    Ok((name.to_string(), labels))
}

/// Splits `a=1,b="x,y"` on commas outside quotes, skipping empty pieces.
fn split_pairs(body: &str) -> std::result::Result<Vec<&str>, String> {
    let mut pairs = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, c) in body.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                pairs.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err("unterminated quote".to_string());
    }
    pairs.push(&body[start..]);
    Ok(pairs.into_iter().filter(|p| !p.trim().is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_sorted_and_unique() {
        let labels = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(labels.to_string(), r#"{a="1", b="3"}"#);
    }

    #[test]
    fn label_names_follow_the_pattern() {
        for ok in ["a", "_x", "otel.scope.name", "A9_.b"] {
            validate_label_name(ok).unwrap();
        }
        for bad in ["", "9a", ".a", "a-b", "a b", "é"] {
            assert!(validate_label_name(bad).is_err(), "{bad}");
        }
        assert!(validate_label_name(&"a".repeat(MAX_LABEL_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn parses_app_names() {
        let (name, labels) = parse_app_name(r#"my.app.cpu{env=prod, region="eu,west"}"#).unwrap();
        assert_eq!(name, "my.app.cpu");
        assert_eq!(labels.get("env"), Some("prod"));
        assert_eq!(labels.get("region"), Some("eu,west"));

        let (name, labels) = parse_app_name("plain").unwrap();
        assert_eq!((name.as_str(), labels.len()), ("plain", 0));
    }

    #[test]
    fn rejects_bad_app_names() {
        for bad in [
            "",
            "{a=b}",
            "app{a=b",
            "app{a}",
            "app{1a=b}",
            "app{a=\"b}",
            "app{a=1,a=2}",
        ] {
            assert!(parse_app_name(bad).is_err(), "{bad}");
        }
    }
}
