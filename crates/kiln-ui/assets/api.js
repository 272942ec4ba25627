// The query API: fetch with credentials, error text, and the calls the UI makes.
//
// Credentials (a bearer token and a tenant) live in sessionStorage: they last as long as the
// tab and are not shared with other tabs or kept after the browser closes. When the server
// answers 401 or 403, the call asks the registered prompt (auth.js) for credentials and is
// retried with them; concurrent calls share one prompt.

const STORAGE_KEY = 'kiln.credentials';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

let creds = loadCredentials();
let prompt = null; // async (status, message) => credentials or null
let pendingPrompt = null;

function loadCredentials() {
  try {
    const c = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || '{}');
    return { token: c.token || '', tenant: c.tenant || '' };
  } catch {
    return { token: '', tenant: '' };
  }
}

export function credentials() {
  return { ...creds };
}

export function setCredentials(c) {
  creds = { token: (c.token || '').trim(), tenant: (c.tenant || '').trim() };
  try {
    if (creds.token || creds.tenant) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(creds));
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage may be disabled; the credentials still hold for this page.
  }
}

export function setAuthPrompt(fn) {
  prompt = fn;
}

function authHeaders(extra) {
  const h = { ...extra };
  if (creds.token) h.Authorization = `Bearer ${creds.token}`;
  if (creds.tenant) h['X-Scope-OrgID'] = creds.tenant;
  return h;
}

// The error text of a failed response: Connect's `{"code", "message"}`, else the body.
async function errorText(res) {
  let text = '';
  try {
    text = (await res.text()).trim();
  } catch {
    // The body is gone; the status line says enough.
  }
  if (text.startsWith('{')) {
    try {
      const j = JSON.parse(text);
      text = j.message || j.error || text;
    } catch {
      // Not JSON after all.
    }
  }
  return `${res.status} ${res.statusText || ''}`.trim() + (text ? `: ${text}` : '');
}

async function askForCredentials(status, message) {
  if (!prompt) return null;
  if (!pendingPrompt) {
    pendingPrompt = Promise.resolve(prompt(status, message)).finally(() => {
      pendingPrompt = null;
    });
  }
  return pendingPrompt;
}

async function request(path, init = {}) {
  for (;;) {
    const res = await fetch(path, { ...init, headers: authHeaders(init.headers) });
    if (res.status === 401 || res.status === 403) {
      const message = await errorText(res);
      const next = await askForCredentials(res.status, message);
      if (!next) throw new ApiError(res.status, message);
      setCredentials(next);
      if (init.signal?.aborted) throw new DOMException('aborted', 'AbortError');
      continue;
    }
    if (!res.ok) throw new ApiError(res.status, await errorText(res));
    return res;
  }
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  return p.toString();
}

async function getJSON(path, params, signal) {
  const res = await request(`${path}?${qs(params)}`, { signal });
  return res.json();
}

// A Connect unary call with a protobuf-JSON body.
async function connect(method, body, signal) {
  const res = await request(`/querier.v1.QuerierService/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
  return res.json();
}

// /pyroscope/render: flamebearer, timeline and groups.
export function render({ query, from, until, groupBy, maxNodes, aggregation }, signal) {
  return getJSON('/pyroscope/render', { query, from, until, groupBy, maxNodes, aggregation }, signal);
}

export function renderDiff(p, signal) {
  return getJSON(
    '/pyroscope/render-diff',
    {
      leftQuery: p.leftQuery,
      leftFrom: p.leftFrom,
      leftUntil: p.leftUntil,
      rightQuery: p.rightQuery,
      rightFrom: p.rightFrom,
      rightUntil: p.rightUntil,
      maxNodes: p.maxNodes,
    },
    signal,
  );
}

export function labelNames({ query, from, until }, signal) {
  return getJSON('/pyroscope/labels', { query, from, until }, signal);
}

export function labelValues({ label, query, from, until }, signal) {
  return getJSON('/pyroscope/label-values', { label, query, from, until }, signal);
}

export async function profileTypes({ startMs, endMs }, signal) {
  const answer = await connect('ProfileTypes', { start: String(startMs), end: String(endMs) }, signal);
  return answer.profileTypes || [];
}

export async function spanProfile({ profileTypeID, labelSelector, spanSelector, startMs, endMs, maxNodes }, signal) {
  const body = { profileTypeID, labelSelector, spanSelector, start: String(startMs), end: String(endMs) };
  if (maxNodes !== undefined && maxNodes !== '') body.maxNodes = String(maxNodes);
  const answer = await connect('SelectMergeSpanProfile', body, signal);
  return answer.flamegraph || {};
}

// The merged profile as gzipped pprof, as a Blob. Fetched rather than linked to: a plain
// link would not carry the Authorization header.
export async function pprof({ query, from, until }) {
  const res = await request(`/api/v1/pprof?${qs({ query, from, until })}`);
  return res.blob();
}

// /api/v1/leaks: functions whose in-use memory grows steadily over the range.
export function leaks({ query, from, until }, signal) {
  return getJSON('/api/v1/leaks', { query, from, until }, signal);
}
