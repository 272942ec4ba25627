//! The tree in Pyroscope's serialization, the `tree` bytes of a `SelectMergeStacktraces`
//! response with `format` TREE: depth first from a root without a name, each node written as
//! `uvarint(name length) name uvarint(self) uvarint(child count)`, children sorted by name
//! and written last child first. An empty tree is no bytes at all.

use prost::encoding::encode_varint;

use super::{FrameTree, OTHER_NAME};

/// A node to write: one of the tree's, or the `other` node standing for the children too
/// small to keep, with their total.
enum Entry {
    Node(u32),
    Other(i64),
    /// A node of the tree named `other`, written with this self value (its own and that of
    /// its dropped siblings).
    OtherNode(u32, i64),
}

fn write_node(out: &mut Vec<u8>, name: &str, self_value: i64, children: usize) {
    encode_varint(name.len() as u64, out);
    out.extend_from_slice(name.as_bytes());
    // Values of merged profiles are not negative; a negative one (a delta gone wrong) would
    // not survive the unsigned encoding, so it is written as 0.
    encode_varint(self_value.max(0) as u64, out);
    encode_varint(children as u64, out);
}

impl FrameTree {
    /// Serializes the tree with at most about `max_nodes` nodes (0: no limit); the children
    /// too small to keep are merged into one `other` child of their parent, as in the flame
    /// graph.
    pub fn pyroscope_tree(&mut self, max_nodes: usize) -> Vec<u8> {
        self.compute_totals();
        let threshold = self.threshold(max_nodes);
        let children = self.sorted_children();
        if children[0].is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut stack = vec![Entry::Node(0)];
        while let Some(entry) = stack.pop() {
            let (node, self_value) = match entry {
                Entry::Other(total) => {
                    write_node(&mut out, OTHER_NAME, total, 0);
                    continue;
                }
                Entry::Node(node) => (node, self.nodes[node as usize].self_value[0]),
                Entry::OtherNode(node, self_value) => (node, self_value),
            };
            let mut kept = Vec::new();
            let mut dropped = 0;
            for &child in &children[node as usize] {
                let total = self.nodes[child as usize].total[0];
                if total >= threshold {
                    kept.push(Entry::Node(child));
                } else {
                    dropped += total;
                }
            }
            if dropped > 0 {
                // In name order among the kept children; a kept child that is itself named
                // `other` takes the dropped value, as Pyroscope does (a reader finds children
                // by name, so two siblings named `other` would lose one).
                let name_of =
                    |child: u32| self.names[self.nodes[child as usize].name as usize].as_str();
                match kept
                    .iter()
                    .position(|e| matches!(e, Entry::Node(c) if name_of(*c) == OTHER_NAME))
                {
                    Some(at) => {
                        let Entry::Node(child) = kept[at] else {
                            unreachable!("matched a node")
                        };
                        let own = &self.nodes[child as usize];
                        kept[at] = Entry::OtherNode(child, own.self_value[0] + dropped);
                    }
                    None => {
                        let at = kept.partition_point(|entry| match entry {
                            Entry::Node(child) | Entry::OtherNode(child, _) => {
                                name_of(*child) < OTHER_NAME
                            }
                            Entry::Other(_) => true,
                        });
                        kept.insert(at, Entry::Other(dropped));
                    }
                }
            }
            let name = match node {
                0 => "",
                _ => &self.names[self.nodes[node as usize].name as usize],
            };
            write_node(&mut out, name, self_value, kept.len());
            stack.extend(kept);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::encoding::decode_varint;

    use super::*;
    use crate::flamegraph::tests::{dataset, tree};

    /// Reads a serialized tree back as self values by stack (`a;b`), as Pyroscope's
    /// `UnmarshalTree` does.
    fn stacks_of(mut bytes: &[u8]) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        // (path, children left to read) of the nodes whose children are pending.
        let mut parents: Vec<(String, u64)> = Vec::new();
        while !bytes.is_empty() {
            let length = decode_varint(&mut bytes).unwrap() as usize;
            let name = std::str::from_utf8(&bytes[..length]).unwrap().to_string();
            bytes = &bytes[length..];
            let self_value = decode_varint(&mut bytes).unwrap() as i64;
            let children = decode_varint(&mut bytes).unwrap();
            let path = match parents.last_mut() {
                None => String::new(),
                Some((parent, left)) => {
                    *left -= 1;
                    let path = if parent.is_empty() {
                        name
                    } else {
                        format!("{parent};{name}")
                    };
                    let done = *left == 0;
                    if done {
                        parents.pop();
                    }
                    path
                }
            };
            if self_value > 0 {
                out.insert(path.clone(), self_value);
            }
            if children > 0 {
                parents.push((path, children));
            }
        }
        out
    }

    #[test]
    fn writes_pyroscopes_layout_last_child_first() {
        let bytes = tree().pyroscope_tree(0);
        // Root: no name, self 0, two children (a, d); then d (the last) first.
        let mut expected = vec![0, 0, 2, 1, b'd', 1, 0, 1, b'a', 0, 2];
        expected.extend([1, b'c', 5, 0, 1, b'b', 3, 1, 1, b'b', 2, 0]);
        assert_eq!(bytes, expected);
        assert_eq!(
            stacks_of(&bytes),
            BTreeMap::from([
                ("a;b".to_string(), 3),
                ("a;b;b".to_string(), 2),
                ("a;c".to_string(), 5),
                ("d".to_string(), 1)
            ])
        );
    }

    #[test]
    fn small_children_become_other_and_empty_trees_no_bytes() {
        let stacks = stacks_of(&tree().pyroscope_tree(3));
        assert_eq!(
            stacks,
            BTreeMap::from([("a;other".to_string(), 10), ("other".to_string(), 1)])
        );
        assert!(FrameTree::default().pyroscope_tree(0).is_empty());
    }

    #[test]
    fn a_function_named_other_takes_the_dropped_value() {
        let (mut data, mut values) = dataset();
        // Function c is now named `other`, with a;other = 8: with four nodes it is kept, and
        // its sibling b (5, with b;b) is dropped into it rather than into a second `other`.
        std::sync::Arc::make_mut(&mut data.symbols).strings[3] = "other".to_string();
        values.insert(3, 8);
        let mut tree = FrameTree::default();
        tree.add_stacks(&data, values);
        let bytes = tree.pyroscope_tree(4);
        assert_eq!(
            stacks_of(&bytes),
            BTreeMap::from([("a;other".to_string(), 13), ("other".to_string(), 1)])
        );
        // a has exactly one child.
        assert!(bytes.windows(4).any(|w| w == [1, b'a', 0, 1]), "{bytes:?}");
    }
}
