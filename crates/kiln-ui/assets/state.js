// The view state and its URL form, queries and times. Pure: no DOM.
//
// Everything the page shows is a function of this state, and the state is exactly the URL's
// query string (Pyroscope's parameter names where Pyroscope has one), so a copied URL restores
// the same view.

export const VIEWS = ['flamegraph', 'diff', 'span', 'leaks'];
export const LAYOUTS = ['both', 'flamegraph', 'table'];
export const SORT_KEYS = ['name', 'self', 'total', 'leftSelf', 'rightSelf', 'leftTotal', 'rightTotal', 'change'];

// Parameter name → default. The order is the order in generated URLs.
export const DEFAULTS = Object.freeze({
  view: 'flamegraph',
  query: '',
  from: 'now-1h',
  until: 'now',
  groupBy: '',
  aggregation: '',
  maxNodes: '',
  leftQuery: '',
  leftFrom: '',
  leftUntil: '',
  rightQuery: '',
  rightFrom: '',
  rightUntil: '',
  spanSelector: '',
  search: '',
  // The focused (zoomed) frame and the selected frame: node indices in the flame graph as
  // the server laid it out (level by level, left to right), so they name the same frame for
  // the same data; a relative range (`now-1h`) may bring other data.
  zoom: '',
  sel: '',
  // The function highlighted from the table (exact name).
  fn: '',
  sort: 'self',
  order: 'desc',
  layout: 'both',
});

export function defaultState() {
  return { ...DEFAULTS };
}

// The state in a query string (`?a=b&...` or `a=b&...`); unknown parameters are ignored and
// invalid enumerations fall back to their defaults.
export function parseState(search) {
  const params = new URLSearchParams(search);
  const state = defaultState();
  for (const key of Object.keys(DEFAULTS)) {
    const v = params.get(key);
    if (v !== null) state[key] = v;
  }
  if (!VIEWS.includes(state.view)) state.view = DEFAULTS.view;
  if (!LAYOUTS.includes(state.layout)) state.layout = DEFAULTS.layout;
  if (!SORT_KEYS.includes(state.sort)) state.sort = DEFAULTS.sort;
  if (state.order !== 'asc' && state.order !== 'desc') state.order = DEFAULTS.order;
  if (!state.from) state.from = DEFAULTS.from;
  if (!state.until) state.until = DEFAULTS.until;
  return state;
}

// Percent-encoding that leaves the characters common in queries and times readable.
function encode(v) {
  return encodeURIComponent(v).replace(/%3A/g, ':').replace(/%2C/g, ',').replace(/%2F/g, '/');
}

// The query string of a state (leading `?`), defaults left out.
export function stateToSearch(state) {
  const parts = [];
  for (const [key, def] of Object.entries(DEFAULTS)) {
    const v = state[key];
    if (v === undefined || v === null || v === '' || v === def) continue;
    parts.push(`${key}=${encode(String(v))}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

// The parameters that decide what is fetched; a change of any other one only redraws.
const DATA_KEYS = [
  'view', 'query', 'from', 'until', 'groupBy', 'aggregation', 'maxNodes',
  'leftQuery', 'leftFrom', 'leftUntil', 'rightQuery', 'rightFrom', 'rightUntil', 'spanSelector',
];

export function dataKey(state) {
  return DATA_KEYS.map((k) => state[k] ?? '').join('\u0000');
}

// ---------------------------------------------------------------------------------------
// Queries: `<profile type id>{name="value", name=~"regex", ...}`, as the server parses them
// (crates/kiln-querier/src/selector.rs): values in "", '' or `` quotes, backslash escapes
// (\n, \t, any other character as itself) except in backquotes.

export const OPS = ['=', '!=', '=~', '!~'];

export function parseQuery(query) {
  const text = (query || '').trim();
  const brace = text.indexOf('{');
  const profileType = (brace < 0 ? text : text.slice(0, brace)).trim();
  const matchers = [];
  if (brace < 0) return { profileType, matchers, error: null };
  let i = brace + 1;
  const space = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const fail = (reason) => ({ profileType, matchers, error: `${reason} at offset ${i}` });
  space();
  if (text[i] === '}') return { profileType, matchers, error: null };
  for (;;) {
    space();
    const m = /^[A-Za-z0-9_.]+/.exec(text.slice(i));
    if (!m) return fail('expected a label name');
    const name = m[0];
    i += name.length;
    space();
    const op = ['=~', '!~', '!=', '='].find((o) => text.startsWith(o, i));
    if (!op) return fail('expected one of = != =~ !~');
    i += op.length;
    space();
    const quote = text[i];
    if (quote !== '"' && quote !== "'" && quote !== '`') return fail('expected a quoted value');
    i++;
    let value = '';
    let closed = false;
    while (i < text.length) {
      const c = text[i++];
      if (c === quote) {
        closed = true;
        break;
      }
      if (c === '\\' && quote !== '`' && i < text.length) {
        const e = text[i++];
        value += e === 'n' ? '\n' : e === 't' ? '\t' : e;
      } else {
        value += c;
      }
    }
    if (!closed) return fail('unterminated string');
    matchers.push({ name, op, value });
    space();
    if (text[i] === '}') return { profileType, matchers, error: null };
    if (text[i] !== ',') return fail("expected ',' or '}'");
    i++;
    space();
    if (text[i] === '}') return { profileType, matchers, error: null };
  }
}

export function quoteValue(value) {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\t/g, '\\t')}"`;
}

export function formatSelector(matchers) {
  return `{${matchers.map((m) => `${m.name}${m.op}${quoteValue(m.value)}`).join(',')}}`;
}

export function formatQuery(profileType, matchers) {
  return `${profileType || ''}${formatSelector(matchers || [])}`;
}

// The service of a query: the value of its first `service_name="..."` matcher.
export function serviceIndex(matchers) {
  return matchers.findIndex((x) => x.name === 'service_name' && x.op === '=');
}

export function serviceOf(matchers) {
  const i = serviceIndex(matchers);
  return i >= 0 ? matchers[i].value : '';
}

// The matchers with the service matcher replaced (or removed when `service` is empty); a new
// one goes first.
export function withService(matchers, service) {
  const i = serviceIndex(matchers);
  const rest = matchers.filter((_, k) => k !== i);
  if (!service) return rest;
  const m = { name: 'service_name', op: '=', value: service };
  if (i < 0) return [m, ...rest];
  const out = matchers.slice();
  out[i] = m;
  return out;
}

// ---------------------------------------------------------------------------------------
// Times, as the server reads `from` and `until` (crates/kiln-model/src/time.rs): a unix
// timestamp in s, ms, µs or ns told apart by magnitude, `now`, or `now-<n><unit>` /
// `now+<n><unit>` with units ms, s, m, h, d, w.

const UNIT_MS = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 };

// Unix milliseconds, or NaN when `text` is not a time.
export function parseTimeMs(text, nowMs) {
  const t = String(text ?? '').trim();
  if (/^-?\d+$/.test(t)) {
    const n = Number(t);
    const a = Math.abs(n);
    if (a < 1e10) return n * 1e3;
    if (a < 1e13) return n;
    if (a < 1e16) return n / 1e3;
    return n / 1e6;
  }
  if (t === 'now') return nowMs;
  const m = /^now([+-])(\d+)(ms|s|m|h|d|w)$/.exec(t);
  if (!m) return NaN;
  const offset = Number(m[2]) * UNIT_MS[m[3]];
  return m[1] === '-' ? nowMs - offset : nowMs + offset;
}

// The [from, until] range of a state's `from`/`until` in unix seconds.
export function resolveRange(from, until, nowMs) {
  return [parseTimeMs(from, nowMs) / 1e3, parseTimeMs(until, nowMs) / 1e3];
}

export const PRESETS = [
  ['5m', 'now-5m'],
  ['15m', 'now-15m'],
  ['1h', 'now-1h'],
  ['6h', 'now-6h'],
  ['24h', 'now-24h'],
  ['7d', 'now-7d'],
];

export function isSpanId(text) {
  return /^[0-9a-fA-F]{16}$/.test(text);
}

// The span ids of a `spanSelector` parameter (comma-separated).
export function spanIds(text) {
  return (text || '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

// Default sides for a diff: both the current query, the range split in two halves.
export function defaultDiffSides(state, nowMs) {
  const [from, until] = resolveRange(state.from, state.until, nowMs);
  const mid = Math.round((from + until) / 2);
  return {
    leftQuery: state.query,
    leftFrom: String(Math.floor(from)),
    leftUntil: String(mid),
    rightQuery: state.query,
    rightFrom: String(mid),
    rightUntil: String(Math.ceil(until)),
  };
}
