// What each view fetches and how the answers become what the page shows: a tree, its
// function table and the chart's series. No DOM; the state is passed in.

import * as api from './api.js';
import { SERIES_COLORS } from './colors.js';
import { unitOf } from './format.js';
import { formatQuery, formatSelector, isSpanId, parseQuery, resolveRange, spanIds } from './state.js';
import { buildTree, flamebearerFromConnect, functionTable } from './tree.js';

// Nodes asked of the server when the URL names no maxNodes: enough for exact figures on most
// profiles while keeping the answer to a few MB (maxNodes=0 asks for the server's maximum).
export const DEFAULT_MAX_NODES = 65536;
const PREFERRED_TYPE = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds';

function maxNodes(s) {
  return s.maxNodes || String(DEFAULT_MAX_NODES);
}

export function typeFromId(id) {
  const [name, sampleType, sampleUnit, periodType, periodUnit] = id.split(':');
  return { ID: id, name, sampleType, sampleUnit, periodType, periodUnit };
}

// A query for a URL without one: the first service and its CPU profile (or its first type);
// '' when there is no data in the range.
export async function defaultQuery(s, signal) {
  const range = { from: s.from, until: s.until };
  const services = await api.labelValues({ label: 'service_name', ...range }, signal);
  const service = services[0] || '';
  const query = service ? formatSelector([{ name: 'service_name', op: '=', value: service }]) : '';
  const ids = await api.labelValues({ label: '__name__', query, ...range }, signal);
  if (!ids.length) return '';
  const type = ids.includes(PREFERRED_TYPE) ? PREFERRED_TYPE : ids.find((t) => t.includes(':cpu:')) || ids[0];
  return formatQuery(type, service ? [{ name: 'service_name', op: '=', value: service }] : []);
}

// The flame graph view: /pyroscope/render gives the graph and the timeline in one answer.
export async function loadSingle(s, signal) {
  if (!s.query) return { tree: null, message: 'No profiles in this time range.' };
  const parsed = parseQuery(s.query);
  if (parsed.error) throw new Error(`Invalid query: ${parsed.error}`);
  const answer = await api.render(
    {
      query: s.query,
      from: s.from,
      until: s.until,
      groupBy: s.groupBy,
      aggregation: s.aggregation,
      maxNodes: maxNodes(s),
    },
    signal,
  );
  const tree = buildTree(answer.flamebearer || {}, 'single');
  return {
    tree,
    unit: unitOf(parsed.profileType),
    rows: functionTable(tree),
    series: seriesOf(answer, s.groupBy),
    range: resolveRange(s.from, s.until, Date.now()),
  };
}

// The diff view: /pyroscope/render-diff, and a timeline of the main query for context.
export async function loadDiff(s, signal) {
  if (!s.leftQuery || !s.rightQuery) return { tree: null, message: 'Choose the two sides of the diff.' };
  const now = Date.now();
  const [lf, lu] = resolveRange(s.leftFrom, s.leftUntil, now);
  const [rf, ru] = resolveRange(s.rightFrom, s.rightUntil, now);
  const [mf, mu] = resolveRange(s.from, s.until, now);
  // The chart spans the main range and both sides, so both bands are visible.
  const from = Math.floor(Math.min(...[mf, lf, rf].filter(Number.isFinite)));
  const until = Math.ceil(Math.max(...[mu, lu, ru].filter(Number.isFinite)));
  const [diff, timeline] = await Promise.all([
    api.renderDiff({ ...s, maxNodes: maxNodes(s) }, signal),
    // The chart is context only: a failure here does not fail the diff.
    api.render({ query: s.query || s.leftQuery, from: String(from), until: String(until), maxNodes: 1 }, signal).catch((e) => {
      if (e.name === 'AbortError') throw e;
      return null;
    }),
  ]);
  const tree = buildTree(diff.flamebearer || {}, 'double');
  return {
    tree,
    unit: unitOf(parseQuery(s.leftQuery).profileType),
    rows: functionTable(tree),
    leftTicks: Number(diff.leftTicks || 0),
    rightTicks: Number(diff.rightTicks || 0),
    series: timeline ? seriesOf(timeline, '') : [],
    range: [from, until],
    bands: [
      { from: lf, until: lu, color: '--left', label: 'left' },
      { from: rf, until: ru, color: '--right', label: 'right' },
    ],
  };
}

// The span view: SelectMergeSpanProfile with the query's type and selector over the range.
export async function loadSpan(s, signal) {
  const ids = spanIds(s.spanSelector);
  if (!ids.length) return { tree: null, message: 'Enter a span id (16 hex digits) to see the samples taken in that span.' };
  const bad = ids.find((id) => !isSpanId(id));
  if (bad) throw new Error(`Invalid span id "${bad}": expected 16 hex digits`);
  const parsed = parseQuery(s.query);
  if (parsed.error) throw new Error(`Invalid query: ${parsed.error}`);
  if (!parsed.profileType) throw new Error('The query needs a profile type');
  const brace = s.query.indexOf('{');
  const [from, until] = resolveRange(s.from, s.until, Date.now());
  const fg = await api.spanProfile(
    {
      profileTypeID: parsed.profileType,
      labelSelector: brace >= 0 ? s.query.slice(brace) : '{}',
      spanSelector: ids,
      startMs: Math.floor(from * 1000),
      endMs: Math.ceil(until * 1000),
      maxNodes: maxNodes(s),
    },
    signal,
  );
  const tree = buildTree(flamebearerFromConnect(fg), 'single');
  return { tree, unit: unitOf(parsed.profileType), rows: functionTable(tree) };
}

// Whether a profile type holds memory in use (what the leak report reads).
export function isInUseType(profileType) {
  return (profileType || '').split(':')[1]?.startsWith('inuse') || false;
}

// The leak view's query for a query of another type: the same selector with the service's
// in-use space type (or its first in-use type); '' when the service has none in the range.
export async function inUseQuery(s, signal) {
  const { matchers } = parseQuery(s.query);
  const service = matchers.find((m) => m.name === 'service_name' && m.op === '=');
  const ids = await api.labelValues(
    { label: '__name__', query: service ? formatSelector([service]) : '', from: s.from, until: s.until },
    signal,
  );
  const inUse = ids.filter(isInUseType);
  const type = inUse.find((t) => t.startsWith('memory:inuse_space:')) || inUse[0];
  return type ? formatQuery(type, matchers) : '';
}

// The leak view: /api/v1/leaks, and the timeline of the query's total for context.
export async function loadLeaks(s, signal) {
  const parsed = parseQuery(s.query);
  if (parsed.error) throw new Error(`Invalid query: ${parsed.error}`);
  if (!isInUseType(parsed.profileType)) {
    return { tree: null, message: 'The leak report reads in-use memory: choose an in-use profile type (inuse_space).' };
  }
  const [report, timeline] = await Promise.all([
    api.leaks({ query: s.query, from: s.from, until: s.until }, signal),
    api.render({ query: s.query, from: s.from, until: s.until, maxNodes: 1 }, signal).catch((e) => {
      if (e.name === 'AbortError') throw e;
      return null;
    }),
  ]);
  return {
    tree: null,
    leaks: report,
    unit: unitOf(parsed.profileType),
    series: timeline ? seriesOf(timeline, '') : [],
    range: resolveRange(s.from, s.until, Date.now()),
  };
}

// The chart's series from a render answer: one per group (largest first) when grouped, else
// the total.
export function seriesOf(answer, groupBy) {
  const make = (name, tl, color) => ({
    name,
    color,
    start: tl.startTime,
    step: tl.durationDelta || 10,
    samples: tl.samples || [],
  });
  if (groupBy && answer.groups) {
    const sum = (tl) => (tl.samples || []).reduce((a, b) => a + b, 0);
    return Object.entries(answer.groups)
      .sort((a, b) => sum(b[1]) - sum(a[1]) || (a[0] < b[0] ? -1 : 1))
      .map(([name, tl], i) => make(name, tl, SERIES_COLORS[i % SERIES_COLORS.length]));
  }
  return answer.timeline ? [make('total', answer.timeline, SERIES_COLORS[0])] : [];
}
