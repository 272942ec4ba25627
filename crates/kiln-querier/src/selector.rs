//! Label selectors as Pyroscope and Prometheus write them: `{name="value", other=~"re.*"}`,
//! optionally after a profile type id (`process_cpu:cpu:nanoseconds:cpu:nanoseconds{...}`).

use kiln_model::Labels;

use crate::QuerierError;

pub use kiln_model::MatchOp;

/// One `name op "value"` condition, the same as the metastore prunes blocks with. An absent
/// label has the value "".
pub use kiln_model::LabelMatcher as Matcher;

/// A conjunction of matchers; empty matches everything.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// The matchers, all of which must hold.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// True when every matcher holds for `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels.get(&m.name)))
    }

    /// True when the matchers on `name` alone accept `value`; used to prune datasets by
    /// service before reading them.
    pub fn accepts(&self, name: &str, value: &str) -> bool {
        self.matchers
            .iter()
            .filter(|m| m.name == name)
            .all(|m| m.matches(Some(value)))
    }

    /// Parses `{...}`; an empty or blank string is the empty selector.
    pub fn parse(text: &str) -> Result<Self, QuerierError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::default());
        }
        Self::parse_trimmed(text).map_err(|e| {
            QuerierError::BadRequest(format!(
                "invalid label selector {text:?} at offset {}: {}",
                e.offset, e.reason
            ))
        })
    }

    fn parse_trimmed(text: &str) -> Result<Self, SyntaxError> {
        let mut parser = Parser { text, pos: 0 };
        let selector = parser.selector()?;
        parser.skip_space();
        if parser.pos != text.len() {
            return Err(parser.error("unexpected text after '}'"));
        }
        Ok(selector)
    }
}

/// Where and why a query does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset into the text as given.
    pub offset: usize,
    /// What was expected there.
    pub reason: String,
}

/// Checks `<profile type id>{matchers}` as [`parse_query`] does and, when it does not parse,
/// says where in `query` (for clients that point at the mistake).
pub fn check_query(query: &str) -> Result<(), SyntaxError> {
    let lead = query.len() - query.trim_start().len();
    let trimmed = query.trim();
    let brace = trimmed.find('{').unwrap_or(trimmed.len());
    if kiln_model::ProfileType::parse(trimmed[..brace].trim()).is_none() {
        return Err(SyntaxError {
            offset: lead,
            reason: "expected a profile type <name>:<sample_type>:<sample_unit>:<period_type>:<period_unit>".to_string(),
        });
    }
    let selector = &trimmed[brace..];
    if selector.is_empty() {
        return Ok(());
    }
    Selector::parse_trimmed(selector)
        .map(|_| ())
        .map_err(|e| SyntaxError {
            offset: lead + brace + e.offset,
            reason: e.reason,
        })
}

/// Parses `<profile type id>{matchers}` as used by /pyroscope/render and /api/v1/pprof.
pub fn parse_query(query: &str) -> Result<(String, Selector), QuerierError> {
    let query = query.trim();
    let (profile_type, selector) = match query.find('{') {
        Some(i) => (&query[..i], &query[i..]),
        None => (query, ""),
    };
    let profile_type = profile_type.trim();
    if kiln_model::ProfileType::parse(profile_type).is_none() {
        return Err(QuerierError::BadRequest(format!(
            "invalid query {query:?}: expected <name>:<sample_type>:<sample_unit>:<period_type>:<period_unit>{{matchers}}"
        )));
    }
    Ok((profile_type.to_string(), Selector::parse(selector)?))
}

/// Parses a query as the label calls and AnalyzeQuery take it: `<profile type>{matchers}`,
/// `{matchers}`, or empty for everything; returns the profile type when one is named, and the
/// selectors.
pub(crate) fn parse_selection(text: &str) -> Result<(Option<String>, Vec<Selector>), QuerierError> {
    let text = text.trim();
    if text.is_empty() {
        Ok((None, Vec::new()))
    } else if text.starts_with('{') {
        Ok((None, vec![Selector::parse(text)?]))
    } else {
        let (profile_type, selector) = parse_query(text)?;
        Ok((Some(profile_type), vec![selector]))
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &str) -> SyntaxError {
        SyntaxError {
            offset: self.pos,
            reason: reason.to_string(),
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn selector(&mut self) -> Result<Selector, SyntaxError> {
        if !self.eat("{") {
            return Err(self.error("expected '{'"));
        }
        let mut matchers = Vec::new();
        if self.eat("}") {
            return Ok(Selector { matchers });
        }
        loop {
            let name = self.name()?;
            let op = if self.eat("=~") {
                MatchOp::Regex
            } else if self.eat("!~") {
                MatchOp::NotRegex
            } else if self.eat("!=") {
                MatchOp::NotEqual
            } else if self.eat("=") {
                MatchOp::Equal
            } else {
                return Err(self.error("expected one of = != =~ !~"));
            };
            let at = self.pos;
            let value = self.string()?;
            matchers.push(Matcher::new(&name, op, &value).map_err(|e| SyntaxError {
                offset: at,
                reason: e.to_string(),
            })?);
            if self.eat("}") {
                return Ok(Selector { matchers });
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or '}'"));
            }
            if self.eat("}") {
                return Ok(Selector { matchers });
            }
        }
    }

    fn name(&mut self) -> Result<String, SyntaxError> {
        self.skip_space();
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(self.rest().len());
        let name = self.rest()[..len].to_string();
        kiln_model::validate_label_name(&name).map_err(|_| self.error("expected a label name"))?;
        self.pos += len;
        Ok(name)
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.skip_space();
        let quote = match self.rest().chars().next() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => return Err(self.error("expected a quoted value")),
        };
        self.pos += 1;
        let mut value = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(value);
                }
                '\\' if quote != '`' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, escaped)) => value.push(escaped),
                    None => break,
                },
                c => value.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        Labels::from_pairs([
            ("service_name", "api"),
            ("env", "prod"),
            ("region", "eu-west"),
        ])
    }

    #[test]
    fn parses_and_matches_all_operators() {
        let cases = [
            ("{}", true),
            ("", true),
            (r#"{service_name="api"}"#, true),
            (r#"{service_name!="api"}"#, false),
            (r#"{region=~"eu-.*"}"#, true),
            (r#"{region=~"eu"}"#, false),
            (r#"{region!~"us-.*", env="prod",}"#, true),
            (r#"{missing=""}"#, true),
            (r#"{missing!=""}"#, false),
            (r#"{ env = 'prod' }"#, true),
            (r#"{env="pr\"od"}"#, false),
        ];
        for (text, expected) in cases {
            let selector = Selector::parse(text).unwrap();
            assert_eq!(selector.matches(&labels()), expected, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_selectors() {
        for text in [
            "{",
            "{a}",
            "{a=b}",
            "{a=\"b\"",
            "{a=\"b\"} x",
            "{1a=\"b\"}",
            "{a=~\"(\"}",
        ] {
            let err = Selector::parse(text).unwrap_err().to_string();
            assert!(err.contains("invalid"), "{text}: {err}");
        }
    }

    #[test]
    fn parses_queries() {
        let (profile_type, selector) =
            parse_query(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="api"}"#)
                .unwrap();
        assert_eq!(profile_type, "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        assert_eq!(selector.matchers.len(), 1);
        assert!(parse_query("cpu{}").is_err());
    }

    #[test]
    fn check_query_points_into_the_query_as_given() {
        let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
        assert_eq!(
            check_query(&format!(r#"{cpu}{{service_name="a"}}"#)),
            Ok(())
        );
        assert_eq!(check_query(cpu), Ok(()));
        let missing_op = format!(r#"  {cpu}{{service_name "a"}}"#);
        let err = check_query(&missing_op).unwrap_err();
        assert_eq!(&missing_op[err.offset..], r#""a"}"#);
        assert_eq!(err.reason, "expected one of = != =~ !~");
        let bad_regex = format!(r#"{cpu}{{env=~"("}}"#);
        let err = check_query(&bad_regex).unwrap_err();
        assert_eq!(&bad_regex[err.offset..], r#""("}"#);
        assert_eq!(check_query("cpu{}").unwrap_err().offset, 0);
    }
}
