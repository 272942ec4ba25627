//! A frame tree on the wire between queriers (`kiln.querier.v1.FrameTreePart`): every node,
//! untruncated, so that the merge of the parts is exact.

use kiln_proto::kiln::querier::v1::FrameTreePart;

use super::FrameTree;

impl FrameTree {
    /// The tree with every node: node `i` is named `names[name[i]]`, its parent is node
    /// `parent[i]`, and it holds `self_value[i]`.
    pub(crate) fn to_part(&self) -> FrameTreePart {
        FrameTreePart {
            names: self.names.clone(),
            name: self.nodes.iter().map(|n| n.name).collect(),
            parent: self.nodes.iter().map(|n| n.parent).collect(),
            self_value: self.nodes.iter().map(|n| n.self_value[0]).collect(),
        }
    }

    /// The tree `part` holds, checked so that no index can go out of bounds: every node's
    /// parent comes before it and every name exists.
    pub(crate) fn from_part(part: FrameTreePart) -> Result<FrameTree, String> {
        let count = part.name.len();
        if part.parent.len() != count || part.self_value.len() != count {
            return Err(format!(
                "frame tree of {count} names, {} parents and {} values",
                part.parent.len(),
                part.self_value.len()
            ));
        }
        let mut tree = FrameTree::default();
        if count == 0 {
            return Ok(tree);
        }
        // This tree's node of each node of `part`; the root is the root.
        let mut merged = vec![0u32; count];
        tree.nodes[0].self_value[0] = part.self_value[0];
        for index in 1..count {
            let (name, parent) = (part.name[index] as usize, part.parent[index] as usize);
            let Some(text) = part.names.get(name) else {
                return Err(format!(
                    "frame tree node {index} names {name} of {} names",
                    part.names.len()
                ));
            };
            if parent >= index {
                return Err(format!(
                    "frame tree node {index} has parent {parent}, not before it"
                ));
            }
            let name = tree.name_id(text);
            let at = tree.child(merged[parent], name);
            tree.nodes[at as usize].self_value[0] += part.self_value[index];
            merged[index] = at;
        }
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flamegraph::tests::dataset;

    #[test]
    fn a_tree_comes_back_equal_and_bad_parts_are_refused() {
        let (data, values) = dataset();
        let mut tree = FrameTree::default();
        tree.add_stacks(&data, values);
        let mut back = FrameTree::from_part(tree.to_part()).unwrap();
        assert_eq!(back.flamegraph(0), tree.flamegraph(0));

        let mut bad = tree.to_part();
        bad.parent[2] = 2;
        assert!(FrameTree::from_part(bad).unwrap_err().contains("parent 2"));
        let mut bad = tree.to_part();
        bad.name[1] = 99;
        assert!(FrameTree::from_part(bad).unwrap_err().contains("names 99"));
        let mut bad = tree.to_part();
        bad.self_value.pop();
        assert!(FrameTree::from_part(bad).is_err());
    }
}
