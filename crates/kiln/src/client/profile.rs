//! What the CLI computes from a merged pprof: each function's self and total, the call tree,
//! and the difference of two profiles. The merged pprof is exact (never cut to a node limit),
//! so these figures are too.

use std::collections::HashMap;
use std::io::Read;

use anyhow::{Context, bail};
use kiln_proto::google::v1::Profile;
use prost::Message;

/// The most a merged profile may inflate to: far above any answer the server sends (it bounds
/// its responses), low enough that a wrong URL cannot exhaust the terminal's machine.
const MAX_PROFILE_BYTES: u64 = 1 << 30;

/// A merged profile as call stacks (root first) with their values.
#[derive(Debug, Default)]
pub(crate) struct Stacks {
    /// Function names, indexed by the ids in `stacks`.
    pub(crate) names: Vec<String>,
    /// Each sample's stack, root first, as indexes into `names`, with its value.
    pub(crate) stacks: Vec<(Vec<usize>, i64)>,
    /// The unit of the values (`nanoseconds`, `bytes`, `count`...).
    pub(crate) unit: String,
}

impl Stacks {
    /// Decodes a pprof (gzipped or not) with one sample type.
    pub(crate) fn from_pprof(bytes: &[u8]) -> anyhow::Result<Self> {
        let plain;
        let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .take(MAX_PROFILE_BYTES + 1)
                .read_to_end(&mut inflated)
                .context("the server's profile is not valid gzip")?;
            if inflated.len() as u64 > MAX_PROFILE_BYTES {
                bail!("the server's profile inflates to more than {MAX_PROFILE_BYTES} bytes");
            }
            plain = inflated;
            &plain[..]
        } else {
            bytes
        };
        let profile = Profile::decode(bytes).context("the server's answer is not a pprof")?;
        Ok(Self::from_profile(&profile))
    }

    fn from_profile(profile: &Profile) -> Self {
        let text = |i: i64| {
            usize::try_from(i)
                .ok()
                .and_then(|i| profile.string_table.get(i))
                .map_or("", String::as_str)
        };
        let mut names = Vec::new();
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut function_ids: HashMap<u64, usize> = HashMap::new();
        for function in &profile.function {
            let name = text(function.name);
            let id = *ids.entry(name).or_insert_with(|| {
                names.push(name.to_string());
                names.len() - 1
            });
            function_ids.insert(function.id, id);
        }
        // A location's lines are innermost first (the first is inlined into the next).
        let locations: HashMap<u64, Vec<usize>> = profile
            .location
            .iter()
            .map(|location| {
                let frames = location
                    .line
                    .iter()
                    .filter_map(|line| function_ids.get(&line.function_id).copied())
                    .collect();
                (location.id, frames)
            })
            .collect();
        let stacks = profile
            .sample
            .iter()
            .filter_map(|sample| {
                let value = *sample.value.first()?;
                let mut stack: Vec<usize> = sample
                    .location_id
                    .iter()
                    .filter_map(|id| locations.get(id))
                    .flatten()
                    .copied()
                    .collect();
                stack.reverse();
                Some((stack, value))
            })
            .filter(|(_, value)| *value != 0)
            .collect();
        let unit = profile
            .sample_type
            .first()
            .map(|t| text(t.unit).to_string())
            .unwrap_or_default();
        Self {
            names,
            stacks,
            unit,
        }
    }

    /// The sum of all values.
    pub(crate) fn total(&self) -> i64 {
        self.stacks.iter().map(|(_, v)| *v).sum()
    }

    /// Each function's self value (where it is the leaf) and total (stacks it is on, counted
    /// once per stack however often it recurses), by function name.
    pub(crate) fn functions(&self) -> Vec<FunctionValues> {
        let mut values = vec![(0i64, 0i64); self.names.len()];
        let mut seen = vec![usize::MAX; self.names.len()];
        for (i, (stack, value)) in self.stacks.iter().enumerate() {
            if let Some(&leaf) = stack.last() {
                values[leaf].0 += value;
            }
            for &function in stack {
                if seen[function] != i {
                    seen[function] = i;
                    values[function].1 += value;
                }
            }
        }
        let mut functions: Vec<FunctionValues> = values
            .into_iter()
            .enumerate()
            .filter(|(_, (_, total))| *total != 0)
            .map(|(i, (self_value, total))| FunctionValues {
                function: self.names[i].clone(),
                self_value,
                total,
            })
            .collect();
        functions.sort_by(|a, b| {
            b.self_value
                .cmp(&a.self_value)
                .then(b.total.cmp(&a.total))
                .then_with(|| a.function.cmp(&b.function))
        });
        functions
    }

    /// The call tree: the root (all stacks) and, below it, a node per distinct call path.
    pub(crate) fn tree(&self) -> CallTree {
        let mut tree = CallTree {
            nodes: vec![TreeNode::default()],
        };
        for (stack, value) in &self.stacks {
            let mut node = 0;
            tree.nodes[0].total += value;
            for &function in stack {
                node = match tree.nodes[node]
                    .children
                    .iter()
                    .find(|&&c| tree.nodes[c].function == function)
                {
                    Some(&child) => child,
                    None => {
                        tree.nodes.push(TreeNode {
                            function,
                            ..TreeNode::default()
                        });
                        let child = tree.nodes.len() - 1;
                        tree.nodes[node].children.push(child);
                        child
                    }
                };
                tree.nodes[node].total += value;
            }
            tree.nodes[node].self_value += value;
        }
        tree
    }
}

/// One function's figures in a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FunctionValues {
    pub(crate) function: String,
    pub(crate) self_value: i64,
    pub(crate) total: i64,
}

/// Call paths merged into a tree; node 0 is the root.
#[derive(Debug)]
pub(crate) struct CallTree {
    pub(crate) nodes: Vec<TreeNode>,
}

/// One call path's figures.
#[derive(Debug, Default)]
pub(crate) struct TreeNode {
    /// The function (an index into [`Stacks::names`]); meaningless for the root.
    pub(crate) function: usize,
    pub(crate) self_value: i64,
    pub(crate) total: i64,
    pub(crate) children: Vec<usize>,
}

/// One function's self value in two profiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FunctionChange {
    pub(crate) function: String,
    pub(crate) left: i64,
    pub(crate) right: i64,
}

impl FunctionChange {
    /// `right - left`, saturating.
    pub(crate) fn change(&self) -> i64 {
        self.right.saturating_sub(self.left)
    }
}

/// Self values per function in `left` and `right`, largest change (either way) first.
pub(crate) fn diff(left: &[FunctionValues], right: &[FunctionValues]) -> Vec<FunctionChange> {
    let mut changes: HashMap<&str, (i64, i64)> = HashMap::new();
    for f in left {
        changes.entry(&f.function).or_default().0 = f.self_value;
    }
    for f in right {
        changes.entry(&f.function).or_default().1 = f.self_value;
    }
    let mut changes: Vec<FunctionChange> = changes
        .into_iter()
        .filter(|(_, (l, r))| *l != 0 || *r != 0)
        .map(|(function, (left, right))| FunctionChange {
            function: function.to_string(),
            left,
            right,
        })
        .collect();
    changes.sort_by(|a, b| {
        b.change()
            .unsigned_abs()
            .cmp(&a.change().unsigned_abs())
            .then_with(|| a.function.cmp(&b.function))
    });
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stacks(samples: &[(&[&str], i64)]) -> Stacks {
        let mut names: Vec<String> = Vec::new();
        let stacks = samples
            .iter()
            .map(|(stack, value)| {
                let ids = stack
                    .iter()
                    .map(|name| match names.iter().position(|n| n == name) {
                        Some(i) => i,
                        None => {
                            names.push(name.to_string());
                            names.len() - 1
                        }
                    })
                    .collect();
                (ids, *value)
            })
            .collect();
        Stacks {
            names,
            stacks,
            unit: "nanoseconds".to_string(),
        }
    }

    #[test]
    fn recursion_counts_once_in_total() {
        let profile = stacks(&[(&["main", "f", "f", "g"], 5), (&["main", "f"], 3)]);
        let functions = profile.functions();
        let f = |name: &str| functions.iter().find(|v| v.function == name).unwrap();
        assert_eq!((f("g").self_value, f("g").total), (5, 5));
        assert_eq!((f("f").self_value, f("f").total), (3, 8));
        assert_eq!((f("main").self_value, f("main").total), (0, 8));
        assert_eq!(functions[0].function, "g");
        let tree = profile.tree();
        assert_eq!(tree.nodes[0].total, 8);
        let main = tree.nodes[0].children[0];
        assert_eq!(tree.nodes[main].total, 8);
        assert_eq!(tree.nodes.len(), 5);
    }

    #[test]
    fn diff_ranks_by_size_of_change() {
        let left = stacks(&[(&["main", "a"], 10), (&["main", "b"], 4)]).functions();
        let right = stacks(&[(&["main", "a"], 9), (&["main", "c"], 7)]).functions();
        let changes = diff(&left, &right);
        let summary: Vec<(&str, i64)> = changes
            .iter()
            .map(|c| (c.function.as_str(), c.change()))
            .collect();
        assert_eq!(summary, [("c", 7), ("b", -4), ("a", -1)]);
    }
}
