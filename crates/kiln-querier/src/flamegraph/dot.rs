//! The tree as Graphviz text, shaped as `go tool pprof -dot` draws a profile: one box per
//! function with its flat (self) and cumulative values, the functions with the largest
//! cumulative values kept, and an edge from caller to callee weighted by the values of the
//! stacks that make that call (dotted where dropped functions lie between).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use super::FrameTree;

/// How values of a profile type's unit are written.
fn scaled(value: i64, unit: &str) -> String {
    let v = value as f64;
    let pick = |steps: &[(f64, &str)]| {
        let (divisor, suffix) = steps
            .iter()
            .find(|(divisor, _)| v.abs() >= *divisor)
            .copied()
            .unwrap_or(*steps.last().expect("steps"));
        let scaled = v / divisor;
        let text = format!("{scaled:.2}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}{suffix}")
    };
    match unit {
        "nanoseconds" => pick(&[(1e9, "s"), (1e6, "ms"), (1e3, "us"), (1.0, "ns")]),
        "microseconds" => pick(&[(1e6, "s"), (1e3, "ms"), (1.0, "us")]),
        "bytes" => pick(&[
            (1024f64.powi(3), "GB"),
            (1024f64.powi(2), "MB"),
            (1024.0, "kB"),
            (1.0, "B"),
        ]),
        _ => value.to_string(),
    }
}

fn percent(value: i64, total: i64) -> String {
    if total == 0 {
        return "0%".to_string();
    }
    format!("{:.2}%", value as f64 * 100.0 / total as f64)
}

/// `package.Function` as pprof's boxes show it: the package on a line of its own.
fn box_name(name: &str) -> String {
    let start = name.rfind('/').map_or(0, |slash| slash + 1);
    match name[start..].find('.') {
        Some(dot) => format!("{}\\n{}", &name[..start + dot], &name[start + dot + 1..]),
        None => name.to_string(),
    }
}

/// Escapes text for a quoted DOT string.
fn quoted(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

impl FrameTree {
    /// Graphviz text of the tree with at most `node_count` functions, values written in
    /// `unit` (`nanoseconds`, `bytes`, ...) under the title `type_name`. Each box's tooltip
    /// also carries its exact flat and cumulative values.
    pub fn dot(&mut self, node_count: usize, type_name: &str, unit: &str) -> String {
        self.compute_totals();
        let total = self.nodes[0].total[0];
        let functions = self.function_totals();
        let mut ranked: Vec<(&String, &(i64, i64))> = functions.iter().collect();
        ranked.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.0.cmp(b.0)));
        ranked.truncate(node_count.max(1));
        let kept: HashMap<&str, usize> = ranked
            .iter()
            .enumerate()
            .map(|(index, (name, _))| (name.as_str(), index + 1))
            .collect();

        // Edges between kept functions, from every stack (a tree node with a self value), each
        // call once per stack; `true` when dropped functions lie between.
        let mut edges: BTreeMap<(usize, usize, bool), i64> = BTreeMap::new();
        for (index, node) in self.nodes.iter().enumerate().skip(1) {
            let value = node.self_value[0];
            if value == 0 {
                continue;
            }
            let mut path = Vec::new();
            let mut cursor = index;
            while cursor != 0 {
                path.push(self.names[self.nodes[cursor].name as usize].as_str());
                cursor = self.nodes[cursor].parent as usize;
            }
            let mut seen = HashSet::new();
            let (mut caller, mut skipped) = (None, false);
            for name in path.into_iter().rev() {
                let Some(&callee) = kept.get(name) else {
                    skipped |= caller.is_some();
                    continue;
                };
                if let Some(caller) = caller
                    && caller != callee
                    && seen.insert((caller, callee))
                {
                    *edges.entry((caller, callee, skipped)).or_insert(0) += value;
                }
                (caller, skipped) = (Some(callee), false);
            }
        }

        let shown: i64 = ranked.iter().map(|(_, (flat, _))| flat).sum();
        let max_flat = ranked
            .iter()
            .map(|(_, (flat, _))| *flat)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut out = String::new();
        let _ = writeln!(out, "digraph \"{}\" {{", quoted(type_name));
        out.push_str("node [style=filled fillcolor=\"#f8f8f8\"]\n");
        let dropped = functions.len() - ranked.len();
        let _ = writeln!(
            out,
            "subgraph cluster_L {{ \"Type: {name}\" [shape=box fontsize=16 label=\"Type: {name}\\lShowing nodes accounting for {shown}, {share} of {total} total\\lDropped {dropped} nodes\\l\"] }}",
            name = quoted(type_name),
            shown = scaled(shown, unit),
            share = percent(shown, total),
            total = scaled(total, unit),
        );
        for (index, (name, (flat, cum))) in ranked.iter().enumerate() {
            let fontsize = 8 + 16 * flat.max(&0) / max_flat;
            let _ = writeln!(
                out,
                "N{id} [label=\"{label}\\n{flat_text} ({flat_share})\\nof {cum_text} ({cum_share})\" id=\"node{id}\" fontsize={fontsize} shape=box tooltip=\"{tooltip} (flat {flat}, cum {cum})\" color=\"#b23c00\" fillcolor=\"#edddd5\"]",
                id = index + 1,
                label = quoted(&box_name(name)),
                flat_text = scaled(*flat, unit),
                flat_share = percent(*flat, total),
                cum_text = scaled(*cum, unit),
                cum_share = percent(*cum, total),
                tooltip = quoted(name),
            );
        }
        for ((caller, callee, skipped), value) in &edges {
            let width = 1 + 5 * value / total.max(1);
            let weight = 1 + 100 * value / total.max(1);
            let style = if *skipped { " style=\"dotted\"" } else { "" };
            let _ = writeln!(
                out,
                "N{caller} -> N{callee} [label=\" {}\" weight={weight} penwidth={width}{style}]",
                scaled(*value, unit)
            );
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flamegraph::tests::tree;

    #[test]
    fn draws_functions_calls_and_dropped_ones() {
        let mut tree = tree();
        let dot = tree.dot(10, "cpu", "nanoseconds");
        // a (cum 10), b (5), c (5), d (1): boxes ranked by cum, then name.
        assert!(dot.starts_with("digraph \"cpu\" {\n"), "{dot}");
        assert!(
            dot.contains("N1 [label=\"a\\n0ns (0.00%)\\nof 10ns (90.91%)\""),
            "{dot}"
        );
        assert!(dot.contains("tooltip=\"b (flat 5, cum 5)\""), "{dot}");
        assert!(dot.contains("N1 -> N2 [label=\" 5ns\""), "{dot}");
        assert!(dot.contains("N1 -> N3 [label=\" 5ns\""), "{dot}");
        assert!(
            !dot.contains("N2 -> N2"),
            "recursion draws no self edge: {dot}"
        );
        assert!(dot.ends_with("}\n"));
        // With two boxes, c and d are dropped.
        let dot = tree.dot(2, "cpu", "nanoseconds");
        assert!(dot.contains("Dropped 2 nodes"), "{dot}");
        assert!(!dot.contains("N3 ["), "{dot}");
    }

    #[test]
    fn values_are_scaled_by_unit_and_names_split_at_the_package() {
        assert_eq!(scaled(6_100_000_000, "nanoseconds"), "6.1s");
        assert_eq!(scaled(1_500_000, "nanoseconds"), "1.5ms");
        assert_eq!(scaled(3 * 1024 * 1024, "bytes"), "3MB");
        assert_eq!(scaled(42, "count"), "42");
        assert_eq!(box_name("sort.insertionSort"), "sort\\ninsertionSort");
        assert_eq!(
            box_name("github.com/x/y.(*T).Run"),
            "github.com/x/y\\n(*T).Run"
        );
        assert_eq!(box_name("main"), "main");
    }
}
