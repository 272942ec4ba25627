// Unit tests of the UI's pure modules (no DOM): node --test tests/ui/unit_test.mjs
// (Node 18+, no dependencies). The flame graphs are those of the server's own tests
// (crates/kiln-querier/src/flamegraph/mod.rs and diff.rs), so both sides read the same data.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as format from '../../crates/kiln-ui/assets/format.js';
import * as state from '../../crates/kiln-ui/assets/state.js';
import * as tree from '../../crates/kiln-ui/assets/tree.js';
import { diffColor, packageOf } from '../../crates/kiln-ui/assets/colors.js';

// Stacks a;b = 3, a;c = 5, a;b;b = 2, d = 1 (root first).
const SINGLE = {
  names: ['total', 'a', 'b', 'c', 'd'],
  levels: [
    [0, 11, 0, 0],
    [0, 10, 0, 1, 0, 1, 1, 4],
    [0, 5, 3, 2, 0, 5, 5, 3],
    [0, 2, 2, 2],
  ],
  numTicks: 11,
  maxSelf: 5,
};

// Left: the stacks above; right: a;b = 4, e = 6.
const DOUBLE = {
  names: ['total', 'a', 'b', 'c', 'd', 'e'],
  levels: [
    [0, 11, 0, 0, 10, 0, 0],
    [0, 10, 0, 0, 4, 0, 1, 0, 1, 1, 0, 0, 0, 4, 0, 0, 0, 0, 6, 6, 5],
    [0, 5, 3, 0, 4, 4, 2, 0, 5, 5, 0, 0, 0, 3],
    [0, 2, 2, 0, 0, 0, 2],
  ],
  numTicks: 21,
};

test('values are formatted in the profile unit', () => {
  assert.equal(format.unitOf('process_cpu:cpu:nanoseconds:cpu:nanoseconds'), 'nanoseconds');
  assert.equal(format.unitOf('memory:alloc_space:bytes:space:bytes'), 'bytes');
  assert.equal(format.unitOf('memory:alloc_objects:count:space:bytes'), 'count');
  assert.equal(format.formatValue(1_234_567_890, 'nanoseconds'), '1.23 s');
  assert.equal(format.formatValue(45_600_000, 'nanoseconds'), '45.6 ms');
  assert.equal(format.formatValue(125e9, 'nanoseconds'), '2.08 min');
  assert.equal(format.formatValue(12.3 * 1024 * 1024, 'bytes'), '12.3 MiB');
  assert.equal(format.formatValue(512, 'bytes'), '512 B');
  assert.equal(format.formatValue(1234567, 'count'), '1,234,567');
  assert.equal(format.formatPercent(0.1234), '12.3%');
  assert.equal(format.formatPercent(0.01234), '1.23%');
  assert.equal(format.formatChange(0.5), '+50.0%');
  assert.equal(format.formatChange(Infinity), 'new');
  assert.deepEqual(format.niceTicks(9, 3), [0, 5, 10]);
  assert.deepEqual(format.niceTicksFor(5.5 * 3600e9, 'nanoseconds', 3).map((v) => format.formatAxisValue(v, 'nanoseconds')), [
    '0', '2 h', '4 h', '6 h',
  ]);
});

test('the URL state round-trips and leaves defaults out', () => {
  const s = {
    ...state.defaultState(),
    query: 'process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="checkout"}',
    from: '1700000000',
    until: '1700003600',
    search: 'a b&c',
    zoom: '12',
    sort: 'total',
  };
  const search = state.stateToSearch(s);
  assert.ok(!search.includes('view='), search);
  assert.ok(search.includes('query=process_cpu:cpu:nanoseconds:cpu:nanoseconds%7Bservice_name%3D%22checkout%22%7D'), search);
  assert.deepEqual(state.parseState(search), s);
  assert.equal(state.parseState('?view=bogus&sort=nope').view, 'flamegraph');
  assert.equal(state.parseState('').from, 'now-1h');
  assert.notEqual(state.dataKey(s), state.dataKey({ ...s, from: 'now-5m' }));
  assert.equal(state.dataKey(s), state.dataKey({ ...s, search: 'x', zoom: '1' }));
});

test('queries parse as the server parses them', () => {
  const q = state.parseQuery('memory:alloc_space:bytes:space:bytes{service_name="a\\"b", env!~\'dev.*\', x=`c\\d`,}');
  assert.equal(q.error, null);
  assert.equal(q.profileType, 'memory:alloc_space:bytes:space:bytes');
  assert.deepEqual(q.matchers, [
    { name: 'service_name', op: '=', value: 'a"b' },
    { name: 'env', op: '!~', value: 'dev.*' },
    { name: 'x', op: '=', value: 'c\\d' },
  ]);
  const text = state.formatQuery(q.profileType, q.matchers);
  assert.deepEqual(state.parseQuery(text).matchers, q.matchers);
  assert.ok(state.parseQuery('t{a="b"').error);
  assert.deepEqual(state.withService([{ name: 'env', op: '=', value: 'p' }], 'svc'), [
    { name: 'service_name', op: '=', value: 'svc' },
    { name: 'env', op: '=', value: 'p' },
  ]);
  assert.equal(state.serviceOf(state.withService([], '')), '');
});

test('times are read by magnitude and relative to now', () => {
  const now = 1_700_000_000_000;
  assert.equal(state.parseTimeMs('1700000000', now), now);
  assert.equal(state.parseTimeMs('1700000000000', now), now);
  assert.equal(state.parseTimeMs('now-1h', now), now - 3_600_000);
  assert.equal(state.parseTimeMs('now', now), now);
  assert.ok(Number.isNaN(state.parseTimeMs('yesterday', now)));
  assert.ok(state.isSpanId('00000000000000aA'));
  assert.ok(!state.isSpanId('0000'));
});

test('flamebearer becomes a tree with parents', () => {
  const t = tree.buildTree(SINGLE);
  assert.equal(t.n, 6); // total; a, d; b, c; b
  assert.equal(t.total, 11);
  const names = (i) => t.names[t.name[i]];
  assert.deepEqual(tree.stackOf(t, 5).map(names), ['a', 'b', 'b']);
  assert.deepEqual(Array.from(t.parent), [-1, 0, 0, 1, 1, 3]);
  assert.equal(tree.firstFrame(t, 'b'), 3);
  assert.equal(tree.firstFrame(t, 'zzz'), -1);
  assert.equal(tree.nodeAt(t, 2, 7), 4);
  assert.equal(tree.nodeAt(t, 3, 6), -1);
});

test('function totals count recursion once', () => {
  const rows = Object.fromEntries(tree.functionTable(tree.buildTree(SINGLE)).map((r) => [r.name, [r.self, r.total]]));
  assert.deepEqual(rows, { a: [0, 10], b: [5, 5], c: [5, 5], d: [1, 1] });
  const sorted = tree.sortRows(tree.functionTable(tree.buildTree(SINGLE)), 'self', 'desc').map((r) => r.name);
  assert.deepEqual(sorted, ['b', 'c', 'd', 'a']);
});

test('search matches count nested frames once', () => {
  const t = tree.buildTree(SINGLE);
  const mask = tree.nameMask(t.names, tree.searchPredicate('B'));
  assert.equal(tree.matchedTotals(t, mask).total, 5);
  const all = tree.nameMask(t.names, (n) => n !== 'total');
  assert.equal(tree.matchedTotals(t, all).total, 11);
});

test('diff flamebearer keeps both sides', () => {
  const t = tree.buildTree(DOUBLE, 'double');
  assert.equal(t.leftTicks, 11);
  assert.equal(t.rightTicks, 10);
  const rows = Object.fromEntries(
    tree.functionTable(t).map((r) => [r.name, [r.leftSelf, r.leftTotal, r.rightSelf, r.rightTotal]]),
  );
  assert.deepEqual(rows, { a: [0, 10, 0, 4], b: [5, 5, 4, 4], c: [5, 5, 0, 0], d: [1, 1, 0, 0], e: [0, 0, 6, 6] });
  // Every node's parent holds it on both sides.
  for (let i = 1; i < t.n; i++) {
    const p = t.parent[i];
    assert.ok(t.x[p] <= t.x[i] && t.x[i] + t.w[i] <= t.x[p] + t.w[p], `node ${i}`);
  }
  assert.equal(tree.relativeChange(1, 10, 2, 10), 1);
  assert.equal(tree.relativeChange(0, 10, 2, 10), Infinity);
  assert.notEqual(diffColor(1, false), diffColor(-1, false));
});

test('connect flame graphs read like flamebearer', () => {
  const fb = tree.flamebearerFromConnect({
    names: ['total', 'main'],
    levels: [{ values: ['0', '5', '0', '0'] }, { values: ['0', '5', '5', '1'] }],
    total: '5',
  });
  assert.deepEqual(fb.levels, [[0, 5, 0, 0], [0, 5, 5, 1]]);
  assert.equal(tree.buildTree(fb).total, 5);
});

test('packages colour frames', () => {
  assert.equal(packageOf('regexp/syntax.(*parser).op'), 'regexp/syntax');
  assert.equal(packageOf('main.run'), 'main');
  assert.equal(packageOf('std::vector<int>::push_back'), 'std');
});

test('the leak view reads only in-use profile types', async () => {
  const { isInUseType } = await import('../../crates/kiln-ui/assets/loaders.js');
  assert.equal(isInUseType('memory:inuse_space:bytes:space:bytes'), true);
  assert.equal(isInUseType('memory:inuse_objects:count:space:bytes'), true);
  assert.equal(isInUseType('memory:alloc_space:bytes:space:bytes'), false);
  assert.equal(isInUseType('process_cpu:cpu:nanoseconds:cpu:nanoseconds'), false);
  assert.equal(isInUseType(''), false);
  assert.equal(state.parseState('?view=leaks').view, 'leaks');
});

test('time ticks stay about as many as asked over months and years', () => {
  const from = Date.UTC(2016, 11, 3) / 1000;
  for (const days of [1, 7, 30, 90, 365, 3650]) {
    const until = from + days * 86400;
    const ticks = format.timeTicks(from, until, 6);
    assert.ok(ticks.length >= 2 && ticks.length <= 7, `${days} d: ${ticks.length} ticks`);
    assert.ok(ticks.every((t) => t >= from && t <= until));
  }
  assert.match(format.formatTime(from, 3650 * 86400), /^\d{4}-\d{2}-\d{2}$/);
});
