// Formatting of values, percentages and times. Pure: no DOM, so tests run it under Node.

// The unit of a profile type's values, from its id `name:sample_type:sample_unit:period_type:period_unit`.
// The flamebearer `metadata.units` is Pyroscope's legacy naming ("samples" for CPU nanoseconds),
// so the sample unit of the type id is the reliable source.
export function unitOf(profileTypeId) {
  const unit = (profileTypeId || '').split(':')[2] || '';
  switch (unit) {
    case 'nanoseconds':
    case 'microseconds':
    case 'milliseconds':
    case 'seconds':
    case 'bytes':
      return unit;
    default:
      return 'count';
  }
}

const NANOS = { nanoseconds: 1, microseconds: 1e3, milliseconds: 1e6, seconds: 1e9 };

// Three significant digits: 1.23, 12.3, 123 (and 1234 stays whole).
export function sig3(v) {
  const a = Math.abs(v);
  if (a >= 100 || a === 0) return Math.round(v).toString();
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function formatDuration(nanos) {
  const a = Math.abs(nanos);
  if (a < 1e3) return `${sig3(nanos)} ns`;
  if (a < 1e6) return `${sig3(nanos / 1e3)} µs`;
  if (a < 1e9) return `${sig3(nanos / 1e6)} ms`;
  if (a < 60e9) return `${sig3(nanos / 1e9)} s`;
  if (a < 3600e9) return `${sig3(nanos / 60e9)} min`;
  if (a < 86400e9) return `${sig3(nanos / 3600e9)} h`;
  return `${sig3(nanos / 86400e9)} d`;
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

export function formatBytes(bytes) {
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${sig3(v)} ${BYTE_UNITS[i]}`;
}

// Counts are shown whole with thousands separators (fixed locale, so tests and screenshots
// do not depend on the browser's).
export function formatCount(n) {
  return Math.round(n).toLocaleString('en-US');
}

export function formatValue(v, unit) {
  if (unit in NANOS) return formatDuration(v * NANOS[unit]);
  if (unit === 'bytes') return formatBytes(v);
  return formatCount(v);
}

// A short form for axis labels: same as formatValue except counts, which are abbreviated.
export function formatAxisValue(v, unit) {
  if (v === 0) return '0';
  // Round ticks read better without trailing zeros: "2 h", "2.5 s".
  if (unit !== 'count') return formatValue(v, unit).replace(/(\.\d*?)0+(?= )/, '$1').replace(/\.(?= )/, '');
  const a = Math.abs(v);
  if (a >= 1e9) return `${sig3(v / 1e9)}G`;
  if (a >= 1e6) return `${sig3(v / 1e6)}M`;
  if (a >= 1e3) return `${sig3(v / 1e3)}k`;
  return sig3(v);
}

// A ratio (0.1234) as a percentage ("12.3%"); small shares keep two decimals.
export function formatPercent(ratio) {
  if (!Number.isFinite(ratio)) return '–';
  const p = ratio * 100;
  const a = Math.abs(p);
  if (a === 0) return '0%';
  if (a >= 10) return `${p.toFixed(1)}%`;
  if (a >= 0.01) return `${p.toFixed(2)}%`;
  return '<0.01%';
}

// A relative change (0.5 → "+50.0%").
export function formatChange(ratio) {
  if (!Number.isFinite(ratio)) return ratio > 0 ? 'new' : '–';
  const s = formatPercent(ratio);
  return ratio > 0 ? `+${s}` : s;
}

const pad = (n) => String(n).padStart(2, '0');

// Local time of a unix time in seconds, shortened according to the span shown.
export function formatTime(seconds, spanSeconds = 3600) {
  const d = new Date(seconds * 1000);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (spanSeconds <= 600) return `${hm}:${pad(d.getSeconds())}`;
  if (spanSeconds <= 86400) return hm;
  if (spanSeconds <= 60 * 86400) return `${d.getMonth() + 1}/${pad(d.getDate())} ${hm}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// Full local date and time, for titles and the range display.
export function formatDateTime(seconds) {
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(
    d.getMinutes(),
  )}:${pad(d.getSeconds())}`;
}

// About `count` round tick values from 0 to at least max.
export function niceTicks(max, count = 4) {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  // Up to the first tick at or above max, so the axis covers every value.
  const ticks = [0];
  while (ticks[ticks.length - 1] < max - step * 1e-9) ticks.push(ticks.length * step);
  return ticks;
}

// Tick values for an axis of `unit` values: round in the unit they are shown in (minutes,
// MiB, ...), not in nanoseconds or bytes.
export function niceTicksFor(max, unit, count = 4) {
  let scale = 1;
  if (unit in NANOS) {
    const ns = max * NANOS[unit];
    const s = [1, 1e3, 1e6, 1e9, 60e9, 3600e9, 86400e9].filter((x) => x <= ns).pop() || 1;
    scale = s / NANOS[unit];
  } else if (unit === 'bytes') {
    while (max / scale >= 1024) scale *= 1024;
  }
  return niceTicks(max / scale, count).map((t) => t * scale);
}

// A step of whole weeks of at least `seconds`: 2, 4, 13 or 26 weeks, or a multiple of 52
// (ranges of months and years).
function longStep(seconds) {
  const weeks = seconds / WEEK;
  return ([2, 4, 13, 26].find((w) => w >= weeks) ?? 52 * Math.ceil(weeks / 52)) * WEEK;
}

// Time ticks (seconds) for a range: a round step giving about `count` labels.
const TIME_STEPS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

const WEEK = 604800;

export function timeTicks(from, until, count = 6) {
  const span = Math.max(1, until - from);
  const step = TIME_STEPS.find((s) => span / s <= count) || longStep(span / count);
  // Align to the local day's round boundaries for steps of a day or less.
  const offset = new Date(from * 1000).getTimezoneOffset() * 60;
  const ticks = [];
  let t = Math.ceil((from - offset) / step) * step + offset;
  for (; t <= until; t += step) ticks.push(t);
  return ticks;
}
