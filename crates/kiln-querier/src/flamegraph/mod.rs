//! Merges selected stacks into a tree of frames and encodes it as Pyroscope's flame graph.
//!
//! A frame is one pprof line: a location with inlined functions contributes one frame per
//! line, outermost first, each named by its function. The root is `total`.
//!
//! The tree holds `N` sides of values per node: one for a flame graph, two (left and right)
//! for a diff ([`diff`]); both are laid out into levels by the same walk.

mod diff;
mod dot;
mod serialized;
mod wire;

pub use diff::DiffTree;

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use kiln_block::{DatasetData, Symbols};
use kiln_proto::querier::v1::{FlameGraph, Level};

use crate::budget::{ENTRY_OVERHEAD, MergeMemory, STRING_OVERHEAD};
use crate::select::SelectedDataset;

const ROOT_NAME: &str = "total";
const OTHER_NAME: &str = "other";

#[derive(Debug, Clone)]
struct Node<const N: usize> {
    name: u32,
    parent: u32,
    self_value: [i64; N],
    total: [i64; N],
}

impl<const N: usize> Node<N> {
    fn new(name: u32, parent: u32) -> Self {
        Self {
            name,
            parent,
            self_value: [0; N],
            total: [0; N],
        }
    }
}

/// A node laid out in a level: (absolute x, total, self) of every side, and its name index.
type PlacedNode<const N: usize> = ([(i64, i64, i64); N], i64);

/// A node waiting to be laid out: the tree's node, or `None` for an `other` node with its
/// per-side value; its depth; its per-side x.
type PendingNode<const N: usize> = (Option<u32>, [i64; N], usize, [i64; N]);

/// A merged tree of frames with `N` sides of self and total values per node.
#[derive(Debug)]
pub struct Tree<const N: usize> {
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
    nodes: Vec<Node<N>>,
    /// (parent, name) -> child; FxHash, as these small integer keys are hashed for every
    /// frame of every merged stack.
    children: FxHashMap<(u32, u32), u32>,
    totals_computed: bool,
    /// Bytes of the names' text, for the merge's memory estimate.
    name_bytes: usize,
}

/// A merged tree of frames with self and total values per node: one flame graph.
pub type FrameTree = Tree<1>;

impl<const N: usize> Default for Tree<N> {
    fn default() -> Self {
        let mut tree = Self {
            names: Vec::new(),
            name_ids: HashMap::new(),
            nodes: Vec::new(),
            children: FxHashMap::default(),
            totals_computed: false,
            name_bytes: 0,
        };
        let root = tree.name_id(ROOT_NAME);
        tree.nodes.push(Node::new(root, 0));
        tree
    }
}

/// The display name of a frame without symbols, `<mapping file base name>+0x<address>` as
/// perf prints it; the location keeps the address and the mapping its build id, so that a
/// later symbolizer can still resolve it.
pub(crate) fn unsymbolized_name(symbols: &Symbols, location: u32) -> String {
    let location = &symbols.locations[location as usize];
    let mapping = location
        .mapping
        .checked_sub(1)
        .map(|m| &symbols.mappings[m as usize]);
    match mapping {
        Some(mapping) if mapping.filename != 0 => {
            let file = symbols.string(mapping.filename);
            let base = file.rsplit('/').next().unwrap_or(file);
            format!("{base}+0x{:x}", location.address)
        }
        _ => format!("0x{:x}", location.address),
    }
}

impl<const N: usize> Tree<N> {
    fn name_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.name_bytes += name.len();
        self.names.push(name.to_string());
        self.name_ids.insert(name.to_string(), id);
        id
    }

    fn child(&mut self, parent: u32, name: u32) -> u32 {
        if let Some(&node) = self.children.get(&(parent, name)) {
            return node;
        }
        let node = self.nodes.len() as u32;
        self.nodes.push(Node::new(name, parent));
        self.children.insert((parent, name), node);
        node
    }

    fn compute_totals(&mut self) {
        if self.totals_computed {
            return;
        }
        for node in &mut self.nodes {
            node.total = node.self_value;
        }
        // Children are created after their parents, so a reverse walk sees every child first.
        for index in (1..self.nodes.len()).rev() {
            let (parent, total) = (self.nodes[index].parent, self.nodes[index].total);
            let parent = &mut self.nodes[parent as usize].total;
            for side in 0..N {
                parent[side] += total[side];
            }
        }
        self.totals_computed = true;
    }

    /// Lays the tree out in levels of at most about `max_nodes` nodes (0: no limit): the nodes
    /// with the largest total on any side are kept, and the rest of each parent's children
    /// are merged into one `other` node. Each level holds, per node, for every side its x
    /// offset from the end of the previous node of that side (delta-encoded), its total and
    /// its self value, then the node's index in the returned names. Also returns the largest
    /// self value of any side.
    fn levels(&mut self, max_nodes: usize) -> (Vec<String>, Vec<Level>, i64) {
        self.compute_totals();
        let threshold = self.threshold(max_nodes);
        let children = self.sorted_children();

        let mut names = vec![ROOT_NAME.to_string()];
        let mut name_index: HashMap<String, i64> = HashMap::from([(ROOT_NAME.to_string(), 0)]);
        let mut intern = |name: &str| -> i64 {
            if let Some(&i) = name_index.get(name) {
                return i;
            }
            names.push(name.to_string());
            name_index.insert(name.to_string(), names.len() as i64 - 1);
            names.len() as i64 - 1
        };
        // Per level: per node, (absolute x, total, self) of every side and the name index.
        let mut levels: Vec<Vec<PlacedNode<N>>> = Vec::new();
        let mut max_self = 0;
        let mut stack: Vec<PendingNode<N>> = vec![(Some(0), [0; N], 0, [0; N])];
        while let Some((node, other_totals, depth, x)) = stack.pop() {
            if levels.len() <= depth {
                levels.push(Vec::new());
            }
            let Some(node) = node else {
                let sides =
                    std::array::from_fn(|side| (x[side], other_totals[side], other_totals[side]));
                levels[depth].push((sides, intern(OTHER_NAME)));
                max_self = max_self.max(other_totals.into_iter().max().unwrap_or(0));
                continue;
            };
            let current = &self.nodes[node as usize];
            let name = intern(&self.names[current.name as usize]);
            let sides = std::array::from_fn(|side| {
                (x[side], current.total[side], current.self_value[side])
            });
            levels[depth].push((sides, name));
            max_self = max_self.max(current.self_value.into_iter().max().unwrap_or(0));
            // Children are laid out left to right from the parent's x; push in reverse so
            // that the leftmost is visited first and levels stay ordered by x.
            let mut placed = Vec::new();
            let mut child_x = x;
            let mut dropped = [0; N];
            for &child in &children[node as usize] {
                let total = self.nodes[child as usize].total;
                if total.iter().any(|t| *t >= threshold) {
                    placed.push((Some(child), [0; N], depth + 1, child_x));
                    for side in 0..N {
                        child_x[side] += total[side];
                    }
                } else {
                    for side in 0..N {
                        dropped[side] += total[side];
                    }
                }
            }
            if dropped.iter().any(|d| *d > 0) {
                placed.push((None, dropped, depth + 1, child_x));
            }
            stack.extend(placed.into_iter().rev());
        }

        let levels = levels
            .into_iter()
            .map(|level| {
                let mut values = Vec::with_capacity(level.len() * (3 * N + 1));
                let mut previous_end = [0; N];
                for (sides, name) in level {
                    for (side, (x, total, self_value)) in sides.into_iter().enumerate() {
                        values.extend([x - previous_end[side], total, self_value]);
                        previous_end[side] = x + total;
                    }
                    values.push(name);
                }
                Level { values }
            })
            .collect();
        (names, levels, max_self)
    }

    /// Adds the values of `source` to side `side` of this tree, node by node along their
    /// paths of frame names: the exact merge of two partial results.
    pub(crate) fn absorb(&mut self, source: &FrameTree, side: usize) {
        // The node of this tree of each node of `source`; parents come before children.
        let mut merged = vec![0u32; source.nodes.len()];
        for index in 1..source.nodes.len() {
            let node = &source.nodes[index];
            let name = self.name_id(&source.names[node.name as usize]);
            let at = self.child(merged[node.parent as usize], name);
            self.nodes[at as usize].self_value[side] += node.self_value[0];
            merged[index] = at;
        }
        self.nodes[0].self_value[side] += source.nodes[0].self_value[0];
        self.totals_computed = false;
    }

    /// The children of every node, sorted by name (bytewise).
    fn sorted_children(&self) -> Vec<Vec<u32>> {
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); self.nodes.len()];
        for (index, node) in self.nodes.iter().enumerate().skip(1) {
            children[node.parent as usize].push(index as u32);
        }
        for list in &mut children {
            list.sort_by(|a, b| {
                let (a, b) = (&self.nodes[*a as usize], &self.nodes[*b as usize]);
                self.names[a.name as usize].cmp(&self.names[b.name as usize])
            });
        }
        children
    }

    /// The smallest total (on any side) a node needs to be shown with `max_nodes` nodes at
    /// most.
    fn threshold(&self, max_nodes: usize) -> i64 {
        if max_nodes == 0 || self.nodes.len() <= max_nodes {
            return i64::MIN;
        }
        let mut totals: Vec<i64> = self
            .nodes
            .iter()
            .map(|n| n.total.into_iter().max().unwrap_or(0))
            .collect();
        let (_, nth, _) = totals.select_nth_unstable_by(max_nodes - 1, |a, b| b.cmp(a));
        // Nodes tied with the cut-off would push the count over the limit; drop them too
        // unless that would drop everything but the root.
        (*nth + 1).max(1)
    }
}

impl FrameTree {
    /// Adds the selected samples of one dataset.
    pub fn add_selected(&mut self, dataset: &SelectedDataset) {
        self.add_stack_values(dataset.data(), &dataset.stack_value_table(|_| true));
    }

    /// Adds `value` to the stack node `stack` of `data`, for every `(stack, value)`.
    pub fn add_stacks(&mut self, data: &DatasetData, values: HashMap<u32, i64>) {
        let mut table = vec![0; data.symbols.stacks.len() + 1];
        for (stack, value) in values {
            table[stack as usize] += value;
        }
        self.add_stack_values(data, &table);
    }

    /// Adds `values[stack]` to each stack node `stack` of `data` (`values` has one entry per
    /// stack node, the empty stack 0 included; nodes of value 0 add nothing).
    ///
    /// Each stack node on the path of a stack with a value is resolved to its tree node once,
    /// in id order: parents have smaller ids than their children, so a node's parent is
    /// resolved before it, and the dataset's arrays are walked in order rather than chased.
    pub fn add_stack_values(&mut self, data: &DatasetData, values: &[i64]) {
        let symbols = &data.symbols;
        let stacks = &symbols.stacks;
        assert_eq!(values.len(), stacks.len() + 1, "one value per stack node");
        // The stack nodes to resolve: those with a value and their ancestors, marked in one
        // walk from the largest id down.
        let mut needed = vec![false; values.len()];
        for id in (1..values.len()).rev() {
            if values[id] != 0 {
                needed[id] = true;
            }
            if needed[id] {
                needed[stacks[id - 1].0 as usize] = true;
            }
        }
        self.nodes[0].self_value[0] += values[0];
        // Tree node of each resolved stack node (0, the root, for the empty stack).
        let mut resolved = vec![0u32; values.len()];
        // Frame name ids per location, made once per dataset.
        let mut location_frames: Vec<Option<Vec<u32>>> = vec![None; symbols.locations.len()];
        for id in 1..values.len() {
            if !needed[id] {
                continue;
            }
            let (parent, location) = stacks[id - 1];
            let mut node = resolved[parent as usize];
            let frames = &mut location_frames[location as usize];
            if frames.is_none() {
                *frames = Some(self.frames_of(symbols, location));
            }
            for &name in frames.as_deref().unwrap_or_default() {
                node = self.child(node, name);
            }
            resolved[id] = node;
            self.nodes[node as usize].self_value[0] += values[id];
        }
        self.totals_computed = false;
    }

    /// Frame name ids of a location, outermost first.
    fn frames_of(&mut self, symbols: &Symbols, location: u32) -> Vec<u32> {
        let lines = &symbols.locations[location as usize].lines;
        if lines.is_empty() {
            let name = unsymbolized_name(symbols, location);
            return vec![self.name_id(&name)];
        }
        lines
            .iter()
            .rev()
            .map(|(function, _)| {
                let name = symbols
                    .string(symbols.functions[*function as usize].name)
                    .to_string();
                self.name_id(&name)
            })
            .collect()
    }

    /// The total of the root: the sum of all values.
    pub fn total(&mut self) -> i64 {
        self.compute_totals();
        self.nodes[0].total[0]
    }

    /// Per function: (self, total), total counting a function once per stack even when it
    /// recurses, as `go tool pprof` does.
    pub fn function_totals(&mut self) -> HashMap<String, (i64, i64)> {
        self.compute_totals();
        let mut out: HashMap<String, (i64, i64)> = HashMap::new();
        for (index, node) in self.nodes.iter().enumerate().skip(1) {
            let entry = out
                .entry(self.names[node.name as usize].clone())
                .or_default();
            entry.0 += node.self_value[0];
            let mut ancestor = node.parent;
            let mut nested = false;
            while ancestor != 0 {
                if self.nodes[ancestor as usize].name == node.name {
                    nested = true;
                    break;
                }
                ancestor = self.nodes[ancestor as usize].parent;
            }
            if !nested {
                entry.1 += self.nodes[index].total[0];
            }
        }
        out
    }

    /// Encodes the tree as a flame graph of at most about `max_nodes` nodes (0: no limit):
    /// the nodes with the largest totals are kept and the rest of each parent's children are
    /// merged into one `other` node.
    pub fn flamegraph(&mut self, max_nodes: usize) -> FlameGraph {
        let (names, levels, max_self) = self.levels(max_nodes);
        FlameGraph {
            names,
            levels,
            total: self.nodes[0].total[0],
            max_self,
        }
    }
}

impl<const N: usize> MergeMemory for Tree<N> {
    fn merge_bytes(&self) -> usize {
        // Each name is held twice: in `names` and as a key of `name_ids`.
        2 * self.name_bytes
            + self.names.capacity() * STRING_OVERHEAD
            + self.name_ids.capacity() * (STRING_OVERHEAD + 4 + ENTRY_OVERHEAD)
            + self.nodes.capacity() * std::mem::size_of::<Node<N>>()
            + self.children.capacity() * (12 + ENTRY_OVERHEAD)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use kiln_block::{Function, Location};

    use super::*;

    /// Stacks a;b = 3, a;c = 5, a;b;b = 2, d = 1 (root first).
    pub(crate) fn dataset() -> (DatasetData, HashMap<u32, i64>) {
        let mut data = DatasetData::default();
        let symbols = std::sync::Arc::make_mut(&mut data.symbols);
        symbols.strings = ["", "a", "b", "c", "d"].map(String::from).to_vec();
        for name in 1..=4 {
            symbols.functions.push(Function {
                name,
                system_name: 0,
                filename: 0,
                start_line: 0,
            });
            symbols.locations.push(Location {
                mapping: 0,
                address: 0,
                lines: vec![(name - 1, 1)],
                is_folded: false,
            });
        }
        symbols.stacks = vec![(0, 0), (1, 1), (1, 2), (2, 1), (0, 3)];
        (data, HashMap::from([(2, 3), (3, 5), (4, 2), (5, 1)]))
    }

    /// The tree of [`dataset`]'s stacks.
    pub(crate) fn tree() -> FrameTree {
        let (data, values) = dataset();
        let mut tree = FrameTree::default();
        tree.add_stacks(&data, values);
        tree
    }

    #[test]
    fn encodes_levels_with_delta_offsets() {
        let graph = tree().flamegraph(0);
        assert_eq!(graph.names, ["total", "a", "b", "c", "d"]);
        let levels: Vec<Vec<i64>> = graph.levels.into_iter().map(|l| l.values).collect();
        assert_eq!(
            levels,
            [
                vec![0, 11, 0, 0],
                vec![0, 10, 0, 1, 0, 1, 1, 4],
                vec![0, 5, 3, 2, 0, 5, 5, 3],
                vec![0, 2, 2, 2],
            ]
        );
        assert_eq!((graph.total, graph.max_self), (11, 5));
    }

    #[test]
    fn function_totals_count_recursion_once() {
        let totals = tree().function_totals();
        assert_eq!(totals["a"], (0, 10));
        assert_eq!(totals["b"], (5, 5));
        assert_eq!(totals["c"], (5, 5));
        assert_eq!(totals["d"], (1, 1));
    }

    #[test]
    fn max_nodes_merges_small_children_into_other() {
        let graph = tree().flamegraph(3);
        assert_eq!(graph.names, ["total", "a", "other"]);
        let levels: Vec<Vec<i64>> = graph.levels.into_iter().map(|l| l.values).collect();
        assert_eq!(
            levels,
            [
                vec![0, 11, 0, 0],
                vec![0, 10, 0, 1, 0, 1, 1, 2],
                vec![0, 10, 10, 2]
            ]
        );
        assert_eq!(graph.total, 11);
    }

    #[test]
    fn inlined_lines_become_frames_outermost_first() {
        let (mut data, _) = dataset();
        // Location 0 now holds c inlined into a: lines are innermost first.
        std::sync::Arc::make_mut(&mut data.symbols).locations[0].lines = vec![(2, 7), (0, 3)];
        let mut tree = FrameTree::default();
        tree.add_stacks(&data, HashMap::from([(1, 4)]));
        let graph = tree.flamegraph(0);
        assert_eq!(graph.names, ["total", "a", "c"]);
        assert_eq!(graph.levels[2].values, [0, 4, 4, 2]);
    }
}
