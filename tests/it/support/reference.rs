//! Reference figures computed from the input pprof files, and the same figures read back from
//! Kiln's answers, so that tests compare them exactly.

use std::collections::BTreeMap;

use kiln_proto::google::v1::Profile;

/// Per function: (self, total). Self sums the values of samples whose leaf frame is the
/// function; total counts a function once per sample even when it recurses.
pub(crate) type FunctionTotals = BTreeMap<String, (i64, i64)>;

/// The frames of a pprof sample, leaf first, with inlined lines expanded (innermost first).
pub(crate) fn sample_frames(
    profile: &Profile,
    sample: &kiln_proto::google::v1::Sample,
) -> Vec<String> {
    let name_of = |function_id: u64| {
        let function = profile
            .function
            .iter()
            .find(|f| f.id == function_id)
            .unwrap();
        profile.string_table[function.name as usize].clone()
    };
    sample
        .location_id
        .iter()
        .flat_map(|id| {
            let location = profile.location.iter().find(|l| l.id == *id).unwrap();
            location
                .line
                .iter()
                .map(|l| name_of(l.function_id))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The figures `go tool pprof -raw` implies, per function, for sample type `type_index`.
/// Frames are pprof lines: a location's inlined lines are expanded, innermost last.
pub(crate) fn pprof_function_totals(profile: &Profile, type_index: usize) -> FunctionTotals {
    let mut totals = FunctionTotals::new();
    for sample in &profile.sample {
        let value = sample.value[type_index];
        if value == 0 {
            continue;
        }
        // Leaf first: the first location's first line is the leaf frame.
        let frames = sample_frames(profile, sample);
        if let Some(leaf) = frames.first() {
            totals.entry(leaf.clone()).or_default().0 += value;
        }
        let mut seen = std::collections::BTreeSet::new();
        for frame in frames {
            if seen.insert(frame.clone()) {
                totals.entry(frame).or_default().1 += value;
            }
        }
    }
    totals
}

/// Per function figures of a flame graph given as names and delta-encoded levels of
/// `[x offset, total, self, name index]` quadruples; `total` counts a function once per stack
/// (a node nested under a node of the same name is not added again).
pub(crate) fn flamegraph_function_totals(names: &[String], levels: &[Vec<i64>]) -> FunctionTotals {
    struct Node {
        x: i64,
        total: i64,
        self_value: i64,
        name: usize,
        parent: Option<usize>,
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut previous_level: Vec<usize> = Vec::new();
    for (depth, level) in levels.iter().enumerate() {
        let mut current = Vec::new();
        let mut end = 0;
        for quad in level.chunks(4) {
            let (x, total) = (end + quad[0], quad[1]);
            end = x + total;
            let parent = previous_level
                .iter()
                .copied()
                .find(|&p| nodes[p].x <= x && x < nodes[p].x + nodes[p].total);
            assert!(
                depth == 0 || parent.is_some(),
                "a node at depth {depth} has no parent"
            );
            nodes.push(Node {
                x,
                total,
                self_value: quad[2],
                name: quad[3] as usize,
                parent,
            });
            current.push(nodes.len() - 1);
        }
        previous_level = current;
    }
    let mut totals = FunctionTotals::new();
    for node in nodes.iter().filter(|n| n.parent.is_some()) {
        let entry = totals.entry(names[node.name].clone()).or_default();
        entry.0 += node.self_value;
        let mut ancestor = node.parent;
        let mut nested = false;
        while let Some(a) = ancestor.filter(|&a| nodes[a].parent.is_some()) {
            if nodes[a].name == node.name {
                nested = true;
                break;
            }
            ancestor = nodes[a].parent;
        }
        if !nested {
            entry.1 += node.total;
        }
    }
    totals
}

/// (total, per-function figures) of a flame graph in JSON: Connect's `FlameGraph` (levels as
/// `{"values": [...]}`, `total`) or render's flamebearer (levels as arrays, `numTicks`).
pub(crate) fn json_flamegraph_figures(graph: &serde_json::Value) -> (i64, FunctionTotals) {
    let names: Vec<String> = graph["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let levels: Vec<Vec<i64>> = graph["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|level| {
            let values = level.get("values").unwrap_or(level);
            values.as_array().unwrap().iter().map(json_i64).collect()
        })
        .collect();
    let total = graph
        .get("total")
        .or_else(|| graph.get("numTicks"))
        .map(json_i64)
        .unwrap_or(0);
    (total, flamegraph_function_totals(&names, &levels))
}

/// Reads an int64 that the protobuf JSON mapping may write as a string or a number.
pub(crate) fn json_i64(value: &serde_json::Value) -> i64 {
    match value {
        serde_json::Value::String(s) => s.parse().unwrap(),
        serde_json::Value::Number(n) => n.as_i64().unwrap(),
        serde_json::Value::Null => 0,
        other => panic!("not an integer: {other}"),
    }
}
