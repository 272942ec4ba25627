//! How the CLI shows figures to a person: values in their unit, aligned tables, and a flame
//! graph as an indented tree with bars.

use std::fmt::Write as _;

use super::profile::{CallTree, Stacks};

/// `value` in `unit` as a person reads it: durations for nanoseconds, binary sizes for bytes,
/// plain numbers otherwise.
pub(crate) fn human(value: i64, unit: &str) -> String {
    let magnitude = value.unsigned_abs() as f64;
    let sign = if value < 0 { "-" } else { "" };
    match unit {
        "nanoseconds" => {
            let (scaled, suffix) = if magnitude >= 3_600e9 {
                (magnitude / 3_600e9, "h")
            } else if magnitude >= 60e9 {
                (magnitude / 60e9, "min")
            } else if magnitude >= 1e9 {
                (magnitude / 1e9, "s")
            } else if magnitude >= 1e6 {
                (magnitude / 1e6, "ms")
            } else if magnitude >= 1e3 {
                (magnitude / 1e3, "µs")
            } else {
                return format!("{value} ns");
            };
            format!("{sign}{scaled:.2} {suffix}")
        }
        "bytes" => {
            const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
            if magnitude < 1024.0 {
                return format!("{value} B");
            }
            let mut scaled = magnitude / 1024.0;
            let mut unit = 0;
            while scaled >= 1024.0 && unit + 1 < UNITS.len() {
                scaled /= 1024.0;
                unit += 1;
            }
            format!("{sign}{scaled:.2} {}", UNITS[unit])
        }
        _ => value.to_string(),
    }
}

/// `part` as a percentage of `whole`.
pub(crate) fn percent(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Columns aligned to their widest cell; columns listed in `right` are right-aligned.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if right.contains(&i) {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i != last {
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            if i != last {
                out.push_str("  ");
            }
        }
        out.push('\n');
    }
    out
}

/// How much of the tree a text flame graph shows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TreeView {
    /// Call paths below this share of the total are left out (summed into a "…" line).
    pub(crate) min_percent: f64,
    /// Call depth shown at most.
    pub(crate) max_depth: usize,
    /// Width of the bars, in characters.
    pub(crate) bar_width: usize,
}

/// A flame graph for the terminal: one line per call path, children below their caller
/// ordered by total, each with a bar of its share of the total.
pub(crate) fn flamegraph(stacks: &Stacks, tree: &CallTree, view: TreeView) -> String {
    let total = tree.nodes[0].total;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>12}  function",
        "",
        "total%",
        "total",
        width = view.bar_width
    );
    let line = |out: &mut String, value: i64, prefix: &str, name: &str| {
        let share = percent(value, total);
        let _ = writeln!(
            out,
            "{}  {share:>6.2}%  {:>12}  {prefix}{name}",
            bar(share, view.bar_width),
            human(value, &stacks.unit),
        );
    };
    line(&mut out, total, "", "total");
    let shown = |value: i64| percent(value, total) >= view.min_percent;
    // Depth-first: the stack holds what is still to print, next entry on top.
    let mut pending = Vec::new();
    push_children(tree, 0, "", 1, &shown, &mut pending);
    while let Some(entry) = pending.pop() {
        let branch = if entry.is_last { "└─ " } else { "├─ " };
        let prefix = format!("{}{branch}", entry.prefix);
        match entry.node {
            None => line(&mut out, entry.total, &prefix, "… (smaller call paths)"),
            Some(node) => {
                line(
                    &mut out,
                    entry.total,
                    &prefix,
                    &stacks.names[tree.nodes[node].function],
                );
                if entry.depth < view.max_depth {
                    let continued = if entry.is_last { "   " } else { "│  " };
                    let below = format!("{}{continued}", entry.prefix);
                    push_children(tree, node, &below, entry.depth + 1, &shown, &mut pending);
                }
            }
        }
    }
    out
}

/// A line still to print: a call path, or (`node: None`) the sum of the call paths below one
/// caller that are too small to show.
struct Entry {
    node: Option<usize>,
    total: i64,
    prefix: String,
    is_last: bool,
    depth: usize,
}

/// Pushes the shown children of `node` (largest total first) onto the depth-first stack, and
/// the sum of the others as one summary line after them.
fn push_children(
    tree: &CallTree,
    node: usize,
    prefix: &str,
    depth: usize,
    shown: &impl Fn(i64) -> bool,
    pending: &mut Vec<Entry>,
) {
    let mut children = tree.nodes[node].children.clone();
    children.sort_by(|&a, &b| tree.nodes[b].total.cmp(&tree.nodes[a].total));
    let (visible, hidden): (Vec<usize>, Vec<usize>) = children
        .into_iter()
        .partition(|&c| shown(tree.nodes[c].total));
    let hidden_total: i64 = hidden.iter().map(|&c| tree.nodes[c].total).sum();
    let entry = |node: Option<usize>, total: i64| Entry {
        node,
        total,
        prefix: prefix.to_string(),
        is_last: false,
        depth,
    };
    let mut entries: Vec<Entry> = visible
        .into_iter()
        .map(|c| entry(Some(c), tree.nodes[c].total))
        .collect();
    if hidden_total != 0 {
        entries.push(entry(None, hidden_total));
    }
    if let Some(last) = entries.last_mut() {
        last.is_last = true;
    }
    pending.extend(entries.into_iter().rev());
}

/// A bar of `share` percent in `width` characters, with eighth-blocks for the remainder.
fn bar(share: f64, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = ((share.clamp(0.0, 100.0) / 100.0) * (width * 8) as f64).round() as usize;
    let mut out: String = std::iter::repeat_n('█', eighths / 8).collect();
    if !eighths.is_multiple_of(8) {
        out.push(EIGHTHS[eighths % 8]);
    }
    let len = out.chars().count();
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(len)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_in_their_unit() {
        assert_eq!(human(1_500_000_000, "nanoseconds"), "1.50 s");
        assert_eq!(human(2_500_000, "nanoseconds"), "2.50 ms");
        assert_eq!(human(999, "nanoseconds"), "999 ns");
        assert_eq!(human(90 * 60 * 1_000_000_000, "nanoseconds"), "1.50 h");
        assert_eq!(human(3 << 20, "bytes"), "3.00 MiB");
        assert_eq!(human(-2048, "bytes"), "-2.00 KiB");
        assert_eq!(human(12345, "count"), "12345");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["a".to_string(), "1".to_string()],
            vec!["bbb".to_string(), "22".to_string()],
        ];
        assert_eq!(
            table(&["name", "n"], &rows, &[1]),
            "name   n\na      1\nbbb   22\n"
        );
    }
}
