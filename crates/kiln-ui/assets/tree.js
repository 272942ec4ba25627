// Flamebearer → a flat tree in typed arrays, and what is derived from it (function table,
// stacks, search matches). Pure: no DOM.
//
// Flamebearer levels hold, per node, `[x offset, total, self, name index]` (format "single")
// or `[left x offset, left total, left self, right x offset, right total, right self, name
// index]` (format "double"), each offset counted from the end of the previous node of the
// same level and side. Nodes are stored here level by level, left to right, so a node's index
// is its position in the server's layout, and each level is sorted by x (binary search).

export function buildTree(flamebearer, format = 'single') {
  const double = format === 'double';
  const stride = double ? 7 : 4;
  const levels = flamebearer.levels || [];
  const names = flamebearer.names || [];
  let n = 0;
  for (const level of levels) n += Math.floor(level.length / stride);
  const x = new Float64Array(n);
  const w = new Float64Array(n);
  const self = new Float64Array(n);
  const name = new Int32Array(n);
  const depth = new Int32Array(n);
  const parent = new Int32Array(n).fill(-1);
  const levelStart = new Int32Array(levels.length + 1);
  // Per side values of a diff; the combined width is left + right, as Pyroscope draws it.
  const lt = double ? new Float64Array(n) : null;
  const ls = double ? new Float64Array(n) : null;
  const rt = double ? new Float64Array(n) : null;
  const rs = double ? new Float64Array(n) : null;

  let i = 0;
  for (let d = 0; d < levels.length; d++) {
    const v = levels[d];
    levelStart[d] = i;
    let end = 0;
    let lEnd = 0;
    let rEnd = 0;
    for (let k = 0; k + stride <= v.length; k += stride, i++) {
      depth[i] = d;
      if (double) {
        const lx = lEnd + v[k];
        const rx = rEnd + v[k + 3];
        lt[i] = v[k + 1];
        ls[i] = v[k + 2];
        rt[i] = v[k + 4];
        rs[i] = v[k + 5];
        lEnd = lx + lt[i];
        rEnd = rx + rt[i];
        x[i] = lx + rx;
        w[i] = lt[i] + rt[i];
        self[i] = ls[i] + rs[i];
        name[i] = v[k + 6];
      } else {
        x[i] = end + v[k];
        w[i] = v[k + 1];
        self[i] = v[k + 2];
        name[i] = v[k + 3];
        end = x[i] + w[i];
      }
    }
  }
  levelStart[levels.length] = i;

  // Parents: a node's parent is the node of the level above whose [x, x + w) holds its x.
  // Both levels are sorted by x, so one pass with two cursors finds them all. Children of a
  // node are then contiguous in their level: childStart..childEnd.
  const childStart = new Int32Array(n).fill(-1);
  const childEnd = new Int32Array(n).fill(-1);
  for (let d = 1; d < levels.length; d++) {
    let p = levelStart[d - 1];
    const pEnd = levelStart[d];
    for (let c = levelStart[d]; c < levelStart[d + 1]; c++) {
      while (p + 1 < pEnd && x[c] >= x[p] + w[p] && x[p + 1] <= x[c]) p++;
      if (p >= pEnd) break;
      parent[c] = p;
      if (childStart[p] < 0) childStart[p] = c;
      childEnd[p] = c + 1;
    }
  }

  const total = n ? w[0] : 0;
  return {
    format: double ? 'double' : 'single',
    names,
    n,
    levels: levels.length,
    x, w, self, name, depth, parent, levelStart, childStart, childEnd,
    lt, ls, rt, rs,
    total,
    leftTicks: double && n ? lt[0] : 0,
    rightTicks: double && n ? rt[0] : 0,
  };
}

// Connect JSON flame graphs (`{names, levels: [{values: ["0", "12", ...]}], total}`; 64-bit
// integers are strings in protobuf JSON, and empty fields are left out) as flamebearer.
export function flamebearerFromConnect(fg) {
  const g = fg || {};
  return {
    names: g.names || [],
    levels: (g.levels || []).map((l) => (l.values || []).map(Number)),
    numTicks: Number(g.total || 0),
    maxSelf: Number(g.maxSelf || 0),
  };
}

// Visits every node depth first, calling enter(i) before its children and leave(i) after.
function walk(tree, enter, leave) {
  if (!tree.n) return;
  const stack = [0];
  const { childStart, childEnd } = tree;
  while (stack.length) {
    const top = stack.pop();
    if (top < 0) {
      leave(~top);
      continue;
    }
    enter(top);
    stack.push(~top);
    const s = childStart[top];
    if (s >= 0) for (let c = childEnd[top] - 1; c >= s; c--) stack.push(c);
  }
}

// One row per function (distinct name) of the flame graph, the root left out: self is the sum
// of its frames' self values; total is the sum of the totals of its frames that have no
// ancestor of the same name, so a recursive function counts each stack once. For a diff,
// the same per side (leftSelf, leftTotal, rightSelf, rightTotal).
export function functionTable(tree) {
  const count = tree.names.length;
  const seen = new Uint8Array(count);
  const onPath = new Int32Array(count);
  const self = new Float64Array(count);
  const total = new Float64Array(count);
  const double = tree.format === 'double';
  const lS = double ? new Float64Array(count) : null;
  const lT = double ? new Float64Array(count) : null;
  const rS = double ? new Float64Array(count) : null;
  const rT = double ? new Float64Array(count) : null;
  const { name } = tree;
  walk(
    tree,
    (i) => {
      if (i === 0) return; // the root ("total") is not a function
      const f = name[i];
      seen[f] = 1;
      self[f] += tree.self[i];
      if (double) {
        lS[f] += tree.ls[i];
        rS[f] += tree.rs[i];
      }
      if (onPath[f] === 0) {
        total[f] += tree.w[i];
        if (double) {
          lT[f] += tree.lt[i];
          rT[f] += tree.rt[i];
        }
      }
      onPath[f]++;
    },
    (i) => {
      if (i !== 0) onPath[name[i]]--;
    },
  );
  const rows = [];
  for (let f = 0; f < count; f++) {
    if (!seen[f]) continue;
    const row = { index: f, name: tree.names[f], self: self[f], total: total[f] };
    if (double) {
      row.leftSelf = lS[f];
      row.leftTotal = lT[f];
      row.rightSelf = rS[f];
      row.rightTotal = rT[f];
      row.change = relativeChange(lT[f], tree.leftTicks, rT[f], tree.rightTicks);
    }
    rows.push(row);
  }
  return rows;
}

// The change of a share between the sides: (right share − left share) / left share;
// +Infinity for something new on the right, −1 for something gone.
export function relativeChange(left, leftTicks, right, rightTicks) {
  const l = leftTicks > 0 ? left / leftTicks : 0;
  const r = rightTicks > 0 ? right / rightTicks : 0;
  if (l === 0) return r === 0 ? 0 : Infinity;
  return (r - l) / l;
}

// Rows sorted by `key`, ties by name; `order` "asc" or "desc".
export function sortRows(rows, key, order) {
  const dir = order === 'asc' ? 1 : -1;
  const sorted = rows.slice();
  if (key === 'name') {
    sorted.sort((a, b) => dir * (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } else {
    sorted.sort((a, b) => {
      const av = a[key] ?? 0;
      const bv = b[key] ?? 0;
      if (av !== bv) return av < bv ? -dir : dir;
      return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    });
  }
  return sorted;
}

// Names of the frames from the root's child down to node i (root first; the synthetic root
// "total" left out).
export function stackOf(tree, i) {
  const out = [];
  for (let k = i; k > 0; k = tree.parent[k]) out.push(k);
  return out.reverse();
}

// The first frame of a function: the lowest depth, then the leftmost (nodes are stored in
// that order). -1 when absent.
export function firstFrame(tree, functionName) {
  for (let i = 1; i < tree.n; i++) if (tree.names[tree.name[i]] === functionName) return i;
  return -1;
}

// A search matcher: case-insensitive substring, as the UI documents it.
export function searchPredicate(search) {
  const needle = (search || '').toLowerCase();
  if (!needle) return null;
  return (name) => name.toLowerCase().includes(needle);
}

// Per name index, whether `predicate` holds (Uint8Array), or null without a predicate.
export function nameMask(names, predicate) {
  if (!predicate) return null;
  const mask = new Uint8Array(names.length);
  for (let f = 0; f < names.length; f++) if (predicate(names[f])) mask[f] = 1;
  return mask;
}

// What the matching frames cover: the sum of totals of matching frames without a matching
// ancestor (so nested matches are not counted twice); per side for a diff.
export function matchedTotals(tree, mask) {
  const out = { total: 0, left: 0, right: 0 };
  if (!mask || !tree.n) return out;
  // under[i]: an ancestor of i (below the root) matches. Parents come before children.
  const under = new Uint8Array(tree.n);
  for (let i = 1; i < tree.n; i++) {
    const p = tree.parent[i];
    if (p > 0) under[i] = under[p] | mask[tree.name[p]];
    if (mask[tree.name[i]] && !under[i]) {
      out.total += tree.w[i];
      if (tree.lt) {
        out.left += tree.lt[i];
        out.right += tree.rt[i];
      }
    }
  }
  return out;
}

// The index of the node of level d whose [x, x + w) holds position px, or -1.
export function nodeAt(tree, d, px) {
  if (d < 0 || d >= tree.levels) return -1;
  let lo = tree.levelStart[d];
  let hi = tree.levelStart[d + 1] - 1;
  const { x, w } = tree;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (x[mid] + w[mid] <= px) lo = mid + 1;
    else if (x[mid] > px) hi = mid - 1;
    else return mid;
  }
  return -1;
}

// The first node of level d ending after position px (where drawing of a range starts).
export function firstEndingAfter(tree, d, px) {
  let lo = tree.levelStart[d];
  let hi = tree.levelStart[d + 1];
  const { x, w } = tree;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x[mid] + w[mid] <= px) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
