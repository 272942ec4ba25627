//! Which stacks a query keeps (Pyroscope's `stack_trace_selector`): those starting with a call
//! site, root first, and those holding every included function and none of the excluded ones
//! (Profiles Drilldown's frame filter). A kept stack keeps all its frames and its whole value.

use kiln_block::Symbols;
use kiln_model::bounded_regex;
use kiln_proto::types::v1::StackTraceSelector;
use regex::Regex;

use crate::QuerierError;
use crate::flamegraph::unsymbolized_name;

/// Functions one filter may name (names and patterns together), so that the per-stack work
/// stays bounded.
const MAX_FILTER_FUNCTIONS: usize = 64;

/// A compiled `stack_trace_selector`.
#[derive(Debug)]
pub struct StackFilter {
    call_site: Vec<String>,
    include: Vec<Function>,
    exclude: Vec<Function>,
}

/// One function of a frame filter: a name or an unanchored pattern.
#[derive(Debug)]
enum Function {
    Name(String),
    Pattern(Regex),
}

impl Function {
    fn matches(&self, name: &str) -> bool {
        match self {
            Function::Name(wanted) => wanted == name,
            Function::Pattern(regex) => regex.is_match(name),
        }
    }
}

/// How far the frames of a stack node, from the root, went along the call site.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CallSite {
    /// The first this many names matched.
    Matched(usize),
    /// A frame differed from the call site.
    Failed,
}

/// What the frames from the root to a stack node hold.
#[derive(Clone, Copy, Debug)]
struct StackState {
    call_site: CallSite,
    /// Bit `i`: the stack holds a function matching `include[i]`.
    included: u64,
    excluded: bool,
}

/// Compiles a frame filter's patterns, each within the bounds of [`bounded_regex`].
fn patterns(patterns: &[String], what: &str) -> Result<Vec<Function>, QuerierError> {
    patterns
        .iter()
        .map(|p| {
            bounded_regex(p).map(Function::Pattern).map_err(|e| {
                QuerierError::BadRequest(format!("invalid {what} function name regex {p:?}: {e}"))
            })
        })
        .collect()
}

impl StackFilter {
    /// The filter of a request's selector; `None` when it keeps every stack. `go_pgo` (which
    /// trims stacks for Go's profile-guided optimisation) is refused as not supported.
    pub fn from_selector(
        selector: Option<&StackTraceSelector>,
    ) -> Result<Option<Self>, QuerierError> {
        let Some(selector) = selector else {
            return Ok(None);
        };
        if selector.go_pgo.is_some() {
            return Err(QuerierError::BadRequest(
                "stack_trace_selector.go_pgo is not supported".to_string(),
            ));
        }
        let filter = selector.frame_filter.clone().unwrap_or_default();
        // Counted before anything is compiled: a request names at most this many functions.
        let named = selector.call_site.len()
            + filter.include_function_names.len()
            + filter.include_function_name_regexes.len()
            + filter.exclude_function_names.len()
            + filter.exclude_function_name_regexes.len();
        if named > MAX_FILTER_FUNCTIONS {
            return Err(QuerierError::BadRequest(format!(
                "stack_trace_selector names {named} functions, over the limit of {MAX_FILTER_FUNCTIONS}"
            )));
        }
        if named == 0 {
            return Ok(None);
        }
        let mut include: Vec<Function> = filter
            .include_function_names
            .into_iter()
            .map(Function::Name)
            .collect();
        include.extend(patterns(&filter.include_function_name_regexes, "include")?);
        let mut exclude: Vec<Function> = filter
            .exclude_function_names
            .into_iter()
            .map(Function::Name)
            .collect();
        exclude.extend(patterns(&filter.exclude_function_name_regexes, "exclude")?);
        let call_site: Vec<String> = selector.call_site.iter().map(|l| l.name.clone()).collect();
        Ok(Some(Self {
            call_site,
            include,
            exclude,
        }))
    }

    fn advance(&self, mut state: StackState, name: &str) -> StackState {
        if let CallSite::Matched(matched) = state.call_site
            && matched < self.call_site.len()
        {
            state.call_site = if self.call_site[matched] == name {
                CallSite::Matched(matched + 1)
            } else {
                CallSite::Failed
            };
        }
        for (bit, function) in self.include.iter().enumerate() {
            if function.matches(name) {
                state.included |= 1 << bit;
            }
        }
        state.excluded |= self.exclude.iter().any(|f| f.matches(name));
        state
    }

    fn keeps(&self, state: StackState) -> bool {
        let all_included = if self.include.is_empty() {
            0
        } else {
            u64::MAX >> (64 - self.include.len())
        };
        state.call_site == CallSite::Matched(self.call_site.len())
            && state.included == all_included
            && !state.excluded
    }

    /// Per stack node of `symbols` (index 0: the empty stack): whether the filter keeps the
    /// samples of that stack. Frames are named as the flame graph names them.
    pub fn kept_stacks(&self, symbols: &Symbols) -> Vec<bool> {
        let root = StackState {
            call_site: CallSite::Matched(0),
            included: 0,
            excluded: false,
        };
        let mut states: Vec<Option<StackState>> = vec![None; symbols.stacks.len() + 1];
        states[0] = Some(root);
        let mut pending = Vec::new();
        for stack in 1..states.len() {
            let mut cursor = stack;
            while states[cursor].is_none() {
                pending.push(cursor);
                cursor = symbols.stacks[cursor - 1].0 as usize;
            }
            let mut state = states[cursor].expect("the walk stops at a known state");
            while let Some(node) = pending.pop() {
                let location = symbols.stacks[node - 1].1;
                let lines = &symbols.locations[location as usize].lines;
                if lines.is_empty() {
                    state = self.advance(state, &unsymbolized_name(symbols, location));
                } else {
                    // Lines are innermost first; frames go outermost first.
                    for (function, _) in lines.iter().rev() {
                        let name = symbols.string(symbols.functions[*function as usize].name);
                        state = self.advance(state, name);
                    }
                }
                states[node] = Some(state);
            }
        }
        states
            .into_iter()
            .map(|state| state.is_some_and(|s| self.keeps(s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use kiln_proto::types::v1::{Location, StackFrameFilter};

    use super::*;
    use crate::flamegraph::tests::dataset;

    fn selector(call_site: &[&str], filter: StackFrameFilter) -> StackTraceSelector {
        StackTraceSelector {
            call_site: call_site
                .iter()
                .map(|name| Location {
                    name: name.to_string(),
                })
                .collect(),
            go_pgo: None,
            frame_filter: Some(filter),
        }
    }

    /// Stacks of the test dataset: 1 a, 2 a;b, 3 a;c, 4 a;b;b, 5 d.
    fn kept(selector: StackTraceSelector) -> Vec<bool> {
        let (data, _) = dataset();
        StackFilter::from_selector(Some(&selector))
            .unwrap()
            .unwrap()
            .kept_stacks(&data.symbols)
    }

    #[test]
    fn a_call_site_keeps_the_stacks_it_starts() {
        let none = StackFrameFilter::default();
        assert_eq!(
            kept(selector(&["a", "b"], none.clone())),
            [false, false, true, false, true, false]
        );
        assert_eq!(
            kept(selector(&["a"], none.clone())),
            [false, true, true, true, true, false]
        );
        assert_eq!(kept(selector(&["b"], none)), [false; 6]);
    }

    #[test]
    fn frame_filters_include_all_and_exclude_any() {
        let filter = StackFrameFilter {
            include_function_names: vec!["a".to_string()],
            exclude_function_name_regexes: vec!["^c$".to_string()],
            ..Default::default()
        };
        assert_eq!(
            kept(selector(&[], filter)),
            [false, true, true, false, true, false]
        );
        let filter = StackFrameFilter {
            include_function_name_regexes: vec!["[bd]".to_string()],
            ..Default::default()
        };
        assert_eq!(
            kept(selector(&[], filter)),
            [false, false, true, false, true, true]
        );
    }

    #[test]
    fn bad_selectors_are_refused_with_what_is_wrong() {
        let filter = StackFrameFilter {
            exclude_function_name_regexes: vec!["(".to_string()],
            ..Default::default()
        };
        let error = StackFilter::from_selector(Some(&selector(&[], filter))).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid exclude function name regex \"(\""),
            "{error}"
        );
        let many: Vec<&str> = vec!["f"; 65];
        let error =
            StackFilter::from_selector(Some(&selector(&many, Default::default()))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "stack_trace_selector names 65 functions, over the limit of 64"
        );
        let filter = StackFrameFilter {
            include_function_name_regexes: vec!["a{1000}{1000}".to_string()],
            ..Default::default()
        };
        let error = StackFilter::from_selector(Some(&selector(&[], filter))).unwrap_err();
        assert!(
            error.to_string().contains("size limit"),
            "a pattern compiling past 256 KiB is refused: {error}"
        );
        assert!(
            StackFilter::from_selector(Some(&StackTraceSelector::default()))
                .unwrap()
                .is_none()
        );
    }
}
