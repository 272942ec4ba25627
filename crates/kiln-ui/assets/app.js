// Wiring: the URL state drives what is fetched and shown; the controls change the state.
//
// One rule keeps shared URLs exact: nothing on screen is decided outside `state` (parsed
// from and written to the URL). A change of a parameter that selects data (dataKey) fetches
// again; any other change (search, zoom, selection, sort, layout) only redraws.

import * as api from './api.js';
import { askCredentials, initAuth } from './auth.js';
import { FlameGraph } from './flamegraph.js';
import { formatDateTime, formatPercent, formatValue } from './format.js';
import { LeakTable } from './leaks.js';
import { defaultQuery, inUseQuery, isInUseType, loadDiff, loadLeaks, loadSingle, loadSpan, typeFromId } from './loaders.js';
import { QueryBar } from './querybar.js';
import {
  dataKey, defaultDiffSides, formatQuery, formatSelector, parseQuery, parseState, resolveRange, serviceOf, stateToSearch,
} from './state.js';
import { FunctionTable } from './table.js';
import { currentTheme, initTheme, onThemeChange } from './theme.js';
import { SeriesChart } from './timeseries.js';
import { firstFrame, matchedTotals, nameMask, searchPredicate, sortRows, stackOf } from './tree.js';

const $ = (id) => document.getElementById(id);

let state = parseState(location.search);
let current = null; // what was loaded: {view, tree, rows, unit, ...}
let controller = null;
let loadSeq = 0;
let dragTarget = 'left';
let optionsKey = '';

// `window.__kiln.ready`: a promise for the end of the current load; a load replaced by a
// newer one before it ends hands the promise on.
let ready = { done: false };
function pendingReady() {
  if (!ready.done && ready.promise) return;
  const r = { done: false };
  r.promise = new Promise((resolve) => {
    r.resolve = resolve;
  });
  ready = r;
}
function settleReady(result) {
  ready.done = true;
  ready.resolve?.(result);
}
pendingReady();

// ---------------------------------------------------------------------------------------
// Components

const tooltip = $('tooltip');
const flame = new FlameGraph($('flamegraph'), tooltip, { onClick: onFrameClick, note: $('flame-note') });
const table = new FunctionTable(document.querySelector('.table-pane'), {
  onSort(key) {
    const order = key === state.sort ? (state.order === 'desc' ? 'asc' : 'desc') : key === 'name' ? 'asc' : 'desc';
    navigate({ sort: key, order }, { push: false });
  },
  onSelect(name) {
    navigate({ fn: state.fn === name ? '' : name }, { push: false });
  },
});
const leakTable = new LeakTable($('leaks-pane'), {
  // A leaking function in the flame graph of the same range, highlighted.
  onSelect: (name) => navigate({ view: 'flamegraph', fn: name, search: '' }),
});
const chart = new SeriesChart($('series-chart'), $('series-legend'), tooltip, {
  onRange(from, until) {
    if (state.view === 'diff') {
      const side = dragTarget;
      setDragTarget(side === 'left' ? 'right' : 'left');
      navigate({ [`${side}From`]: String(from), [`${side}Until`]: String(until) });
    } else {
      navigate({ from: String(from), until: String(until) });
    }
  },
  onLegendClick(value) {
    if (!state.groupBy || value === '*') return;
    const { profileType, matchers } = parseQuery(state.query);
    const rest = matchers.filter((m) => !(m.name === state.groupBy && m.op === '='));
    navigate({ query: formatQuery(profileType, [...rest, { name: state.groupBy, op: '=', value }]) });
  },
});
const queryBar = new QueryBar({
  onChange: (patch) => navigate(patch),
  onRefresh: () => sync(state, true),
  loadValues: (label) => {
    const { profileType, matchers } = parseQuery(mainQuery(state));
    const service = serviceOf(matchers);
    return api.labelValues({
      label,
      query: formatQuery(profileType, service ? [{ name: 'service_name', op: '=', value: service }] : []),
      from: state.from,
      until: state.until,
    });
  },
});

// ---------------------------------------------------------------------------------------
// State and history

// The query the query bar edits: in the diff view without a query of its own, the left one.
function mainQuery(s) {
  return s.query || (s.view === 'diff' ? s.leftQuery : '');
}

function navigate(patch, { push = true } = {}) {
  const next = { ...state, ...patch };
  if (state.view === 'diff' && 'query' in patch) {
    // In the diff view the query bar edits the sides that follow it (those equal to its
    // query); a side given another label set keeps it.
    const old = mainQuery(state);
    for (const side of ['leftQuery', 'rightQuery']) {
      if (!(side in patch) && (!state[side] || state[side] === old)) next[side] = patch.query;
    }
  }
  // Frames are node indices of the data they were chosen in: new data starts unzoomed.
  if (dataKey(next) !== dataKey(state)) {
    if (!('zoom' in patch)) next.zoom = '';
    if (!('sel' in patch)) next.sel = '';
  }
  const prev = state;
  state = next;
  const url = location.pathname + stateToSearch(state);
  if (url !== location.pathname + location.search) {
    if (push) history.pushState(null, '', url);
    else history.replaceState(null, '', url);
  }
  sync(prev);
}

window.addEventListener('popstate', () => {
  const prev = state;
  state = parseState(location.search);
  sync(prev);
});

// Brings the page in line with the state: controls always, data when it is selected by
// different parameters (or `force`), the view state otherwise.
function sync(prev, force = false) {
  if (state.view === 'diff' && !state.leftQuery && !state.rightQuery && state.query) {
    // Entering the diff view: both sides the current query, the range split in two.
    Object.assign(state, defaultDiffSides(state, Date.now()));
    history.replaceState(null, '', location.pathname + stateToSearch(state));
  }
  renderControls();
  loadOptions();
  if (force || !current || dataKey(prev) !== dataKey(state) || current.key !== dataKey(state)) load();
  else applyViewState();
}

function renderControls() {
  document.body.dataset.view = state.view;
  for (const b of document.querySelectorAll('.tabs button')) {
    b.classList.toggle('active', b.dataset.view === state.view);
    b.setAttribute('aria-current', b.dataset.view === state.view ? 'page' : 'false');
  }
  queryBar.update({ ...state, query: mainQuery(state) });
  const search = $('search');
  if (document.activeElement !== search) search.value = state.search;
  $('panes').dataset.layout = state.layout;
  for (const b of document.querySelectorAll('[data-layout]')) {
    if (b.tagName === 'BUTTON') b.classList.toggle('active', b.dataset.layout === state.layout);
  }
  for (const k of ['leftQuery', 'leftFrom', 'leftUntil', 'rightQuery', 'rightFrom', 'rightUntil']) {
    $(k.replace(/[A-Z]/, (c) => `-${c.toLowerCase()}`)).value = state[k];
  }
  $('span-input').value = state.spanSelector;
  const [from, until] = resolveRange(state.from, state.until, Date.now());
  $('range-display').textContent =
    Number.isFinite(from) && Number.isFinite(until) ? `${formatDateTime(from)} → ${formatDateTime(until)}` : 'invalid range';
  $('export').title =
    state.view === 'diff'
      ? 'Download the right side of the diff as gzipped pprof'
      : 'Download the query over the range as gzipped pprof';
}

// The option lists (services, profile types, label names) for the current range and service.
async function loadOptions() {
  const { profileType, matchers } = parseQuery(mainQuery(state));
  const service = serviceOf(matchers);
  const key = [state.from, state.until, profileType, service].join('\u0000');
  if (key === optionsKey) return;
  optionsKey = key;
  const range = { from: state.from, until: state.until };
  const [startMs, endMs] = resolveRange(state.from, state.until, Date.now()).map((s) => Math.round(s * 1000));
  const serviceSelector = service ? formatSelector([{ name: 'service_name', op: '=', value: service }]) : '';
  const quiet = (p) => p.catch(() => null);
  const [services, types, labels] = await Promise.all([
    quiet(api.labelValues({ label: 'service_name', ...range })),
    service
      ? quiet(api.labelValues({ label: '__name__', query: serviceSelector, ...range })).then((ids) => ids && ids.map(typeFromId))
      : quiet(api.profileTypes({ startMs, endMs })),
    quiet(api.labelNames({ query: `${profileType}${serviceSelector || '{}'}`, ...range })),
  ]);
  if (key !== optionsKey) return;
  if (services) queryBar.setServices(services);
  if (types) queryBar.setProfileTypes(types);
  if (labels) queryBar.setLabelNames(labels);
}

// ---------------------------------------------------------------------------------------
// Loading

async function load() {
  const seq = ++loadSeq;
  controller?.abort();
  controller = new AbortController();
  const { signal } = controller;
  pendingReady();
  const s = { ...state };
  let key = dataKey(s);
  setStatus('Loading…');
  showError(null);
  try {
    // A query chosen here becomes part of the URL, so that the URL names what is shown.
    const adopt = (query) => {
      s.query = query;
      state.query = query;
      key = dataKey(s);
      history.replaceState(null, '', location.pathname + stateToSearch(state));
      renderControls();
      loadOptions();
    };
    if (s.view !== 'diff' && !s.query) {
      // A URL without a query shows a default one.
      const query = await defaultQuery(s, signal);
      if (seq !== loadSeq) return;
      if (query) adopt(query);
    }
    if (s.view === 'leaks' && s.query && !isInUseType(parseQuery(s.query).profileType)) {
      // The leak report reads in-use memory: the same selector with the service's in-use type.
      const query = await inUseQuery(s, signal);
      if (seq !== loadSeq) return;
      if (query) adopt(query);
    }
    let result;
    if (s.view === 'diff') result = await loadDiff(s, signal);
    else if (s.view === 'span') result = await loadSpan(s, signal);
    else if (s.view === 'leaks') result = await loadLeaks(s, signal);
    else result = await loadSingle(s, signal);
    if (seq !== loadSeq) return;
    current = { ...result, key, view: s.view };
    showData();
    setStatus('');
    settleReady({ ok: true, view: s.view });
  } catch (e) {
    if (seq !== loadSeq || e.name === 'AbortError') return;
    current = { key, view: s.view, tree: null, error: true };
    showError(e.message || String(e));
    showData();
    setStatus('');
    settleReady({ ok: false, view: s.view, error: e.message || String(e) });
  }
}

// ---------------------------------------------------------------------------------------
// Showing

function showData() {
  const c = current;
  const tree = c.tree;
  const hasData = Boolean(tree && tree.n && tree.total > 0);
  const leaks = c.view === 'leaks' && c.leaks;
  leakTable.render(leaks || null, c.unit);
  const empty = $('empty');
  empty.hidden = hasData || Boolean(leaks) || Boolean(c.error);
  if (!hasData) {
    empty.querySelector('strong').textContent = c.message || 'No profiling data for this selection.';
  }
  $('panes').hidden = !hasData;
  const total = $('total');
  const fmt = (v) => formatValue(v, c.unit);
  if (hasData && tree.format === 'double') {
    total.textContent = `${fmt(c.leftTicks)} → ${fmt(c.rightTicks)}`;
    total.dataset.total = String(tree.total);
  } else {
    total.textContent = hasData ? fmt(tree.total) : '–';
    total.dataset.total = String(hasData ? tree.total : 0);
  }
  total.title = hasData ? `${tree.total.toLocaleString('en-US')} (${c.unit})` : '';
  for (const side of ['left', 'right']) {
    const el = $(`${side}-ticks`);
    const v = c[`${side}Ticks`];
    el.textContent = v !== undefined ? fmt(v) : '';
    el.dataset.value = v !== undefined ? String(v) : '';
  }
  $('chart-section').hidden = !(c.series && c.range);
  if (c.series && c.range) {
    chart.setData({
      series: c.series,
      from: c.range[0],
      until: c.range[1],
      unit: c.unit,
      groupLabel: c.view === 'flamegraph' ? state.groupBy : '',
      bands: c.bands || [],
    });
  }
  flame.setData(hasData ? tree : null, { unit: c.unit });
  applyViewState();
}

// Search, highlight, zoom, selection, table sort and layout: from the state, no fetching.
function applyViewState() {
  const c = current;
  const tree = c && c.tree;
  if (!tree || !tree.n) {
    $('stack-panel').hidden = true;
    $('search-share').textContent = '';
    $('reset-zoom').disabled = true;
    return;
  }
  const predicate = searchPredicate(state.search);
  const searchMask = nameMask(tree.names, predicate);
  const fnMask = state.fn ? nameMask(tree.names, (n) => n === state.fn) : null;
  const zoom = toIndex(state.zoom, tree);
  const sel = toIndex(state.sel, tree);
  flame.setView({ zoom, selected: sel, mask: fnMask || searchMask });
  $('reset-zoom').disabled = zoom <= 0;

  const fmt = (v) => formatValue(v, c.unit);
  const rows = predicate ? c.rows.filter((r) => predicate(r.name)) : c.rows;
  const share = $('search-share');
  if (predicate) {
    const m = matchedTotals(tree, searchMask);
    share.dataset.matches = String(rows.length);
    share.dataset.total = String(m.total);
    share.textContent =
      tree.format === 'double'
        ? `${rows.length} functions match · left ${formatPercent(m.left / (tree.leftTicks || 1))}, right ${formatPercent(
            m.right / (tree.rightTicks || 1),
          )}`
        : `${rows.length} functions match · ${fmt(m.total)} (${formatPercent(m.total / tree.total)} of total)`;
  } else {
    share.textContent = '';
    share.dataset.matches = '';
  }
  const sortKey = sortKeyFor(
    tree.format === 'double' || ['name', 'self', 'total'].includes(state.sort) ? state.sort : 'self',
    tree.format,
  );
  const selectedName = state.fn || (sel > 0 ? tree.names[tree.name[sel]] : '');
  table.render({
    rows: sortRows(rows, sortKey, state.order),
    format: tree.format,
    unit: c.unit,
    sort: sortKey,
    order: state.order,
    selected: selectedName,
    total: tree.total,
    leftTicks: tree.leftTicks,
    rightTicks: tree.rightTicks,
  });
  renderStack(tree, sel, c.unit);
}

// In a diff, "self" and "total" sort by the right side.
function sortKeyFor(key, format) {
  if (format !== 'double') return key;
  return key === 'self' ? 'rightSelf' : key === 'total' ? 'rightTotal' : key;
}

function toIndex(value, tree) {
  if (value === '' || value === undefined) return -1;
  const i = Number(value);
  return Number.isInteger(i) && i >= 0 && i < tree.n ? i : -1;
}

function renderStack(tree, sel, unit) {
  const panel = $('stack-panel');
  if (sel <= 0) {
    panel.hidden = true;
    return;
  }
  const list = $('stack-list');
  const items = stackOf(tree, sel).map((i) => {
    const li = document.createElement('li');
    li.dataset.testid = 'stack-frame';
    li.dataset.name = tree.names[tree.name[i]];
    li.dataset.node = String(i);
    const name = document.createElement('span');
    name.className = 'fn';
    name.textContent = tree.names[tree.name[i]];
    const value = document.createElement('span');
    value.className = 'muted';
    value.textContent = `${formatValue(tree.w[i], unit)} (${formatPercent(tree.w[i] / tree.total)})`;
    li.append(name, value);
    li.title = 'Zoom to this frame';
    return li;
  });
  list.replaceChildren(...items);
  panel.hidden = false;
}

function onFrameClick(i) {
  // The root shows everything: clicking it is "reset zoom".
  if (i === 0) navigate({ zoom: '', sel: '' });
  else navigate({ zoom: String(i), sel: String(i) });
  const tree = current && current.tree;
  if (tree && i > 0) table.reveal(tree.names[tree.name[i]]);
}

function setStatus(text) {
  $('status').textContent = text;
}

function showError(message) {
  const el = $('error');
  el.textContent = message || '';
  el.hidden = !message;
}

// Hands a blob to the browser as a download: a[download] on a blob: URL of this origin (a
// download is not a fetch, so connect-src does not apply).
function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function setDragTarget(side) {
  dragTarget = side;
  $('drag-left').classList.toggle('active', side === 'left');
  $('drag-right').classList.toggle('active', side === 'right');
}

// ---------------------------------------------------------------------------------------
// Controls outside the components

function bind() {
  for (const b of document.querySelectorAll('.tabs button')) {
    b.addEventListener('click', () => navigate({ view: b.dataset.view }));
  }
  for (const b of document.querySelectorAll('button[data-layout]')) {
    b.addEventListener('click', () => navigate({ layout: b.dataset.layout }, { push: false }));
  }
  let searchTimer = 0;
  $('search').addEventListener('input', (e) => {
    clearTimeout(searchTimer);
    // Typing rewrites the URL in place (no history entry per key) after a short pause.
    searchTimer = setTimeout(() => navigate({ search: e.target.value }, { push: false }), 120);
  });
  $('reset-zoom').addEventListener('click', () => navigate({ zoom: '', sel: '' }));
  $('stack-close').addEventListener('click', () => navigate({ sel: '' }, { push: false }));
  $('stack-list').addEventListener('click', (e) => {
    const li = e.target.closest('li[data-node]');
    if (li) navigate({ zoom: li.dataset.node, sel: li.dataset.node });
  });
  const applyDiff = () =>
    navigate({
      leftQuery: $('left-query').value.trim(),
      leftFrom: $('left-from').value.trim(),
      leftUntil: $('left-until').value.trim(),
      rightQuery: $('right-query').value.trim(),
      rightFrom: $('right-from').value.trim(),
      rightUntil: $('right-until').value.trim(),
    });
  $('diff-apply').addEventListener('click', applyDiff);
  for (const id of ['left-query', 'left-from', 'left-until', 'right-query', 'right-from', 'right-until']) {
    $(id).addEventListener('keydown', (e) => {
      if (e.key === 'Enter') applyDiff();
    });
  }
  $('drag-left').addEventListener('click', () => setDragTarget('left'));
  $('drag-right').addEventListener('click', () => setDragTarget('right'));
  const applySpan = () => navigate({ spanSelector: $('span-input').value.replace(/\s+/g, '') });
  $('span-apply').addEventListener('click', applySpan);
  $('span-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') applySpan();
  });
  $('export').addEventListener('click', async () => {
    const side = state.view === 'diff';
    const params = side
      ? { query: state.rightQuery, from: state.rightFrom, until: state.rightUntil }
      : { query: state.query, from: state.from, until: state.until };
    setStatus('Exporting…');
    try {
      const blob = await api.pprof(params);
      download(blob, 'profile.pb.gz');
      setStatus(`Exported ${formatValue(blob.size, 'bytes')}`);
    } catch (e) {
      setStatus('');
      showError(`Export failed: ${e.message}`);
    }
  });
  $('auth-open').addEventListener('click', async () => {
    const c = await askCredentials('');
    if (c) {
      api.setCredentials(c);
      optionsKey = '';
      sync(state, true);
    }
  });
  document.addEventListener('keydown', (e) => {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement?.tagName || '');
    if (e.key === '/' && !typing) {
      e.preventDefault();
      $('search').focus();
    } else if (e.key === 'Escape' && !document.querySelector('dialog[open]')) {
      if (typing) document.activeElement.blur();
      else if (state.zoom || state.sel) navigate({ zoom: '', sel: '' });
      else if (state.fn) navigate({ fn: '' }, { push: false });
    } else if (e.key === 'r' && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
      sync(state, true);
    }
  });
}

// ---------------------------------------------------------------------------------------
// Start

initTheme();
flame.setTheme(currentTheme() === 'dark');
onThemeChange((theme) => {
  flame.setTheme(theme === 'dark');
  chart.schedule();
});
initAuth();
api.setAuthPrompt((status, message) =>
  askCredentials(status === 403 ? `Not allowed with these credentials (${message}).` : `The server asks for credentials (${message}).`),
);
bind();

// A read-only hook for browser tests: where a frame is drawn, and when a view is loaded.
window.__kiln = Object.freeze({
  get ready() {
    return ready.promise;
  },
  get loaded() {
    return ready.done;
  },
  // The first frame of a function (lowest depth, leftmost) as {x, y, w, h} in CSS pixels
  // relative to the flame graph canvas, or null when it is not drawn.
  frameAt(name) {
    const tree = current && current.tree;
    if (!tree) return null;
    flame.flush();
    const i = firstFrame(tree, name);
    return i < 0 ? null : flame.rect(i);
  },
  state() {
    return { ...state };
  },
});

sync(state, true);
