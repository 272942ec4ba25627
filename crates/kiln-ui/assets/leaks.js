// The leak report view's table: functions whose in-use memory grows steadily over the range
// (GET /api/v1/leaks), fastest growth first. Each row carries the exact figures in data
// attributes (data-slope, data-fit, data-first, data-last) for tests and for copying; a click
// on a row opens the flame graph of the range with that function highlighted.

import { formatDateTime, formatPercent, formatValue } from './format.js';

const COLUMNS = [
  ['function', 'Function', ''],
  ['slope', 'Growth per hour', 'Slope of the least-squares line through the in-use value per profile'],
  ['fit', 'Fit (R²)', '1 for perfectly steady growth'],
  ['first', 'First', 'In use per profile at the start of the range'],
  ['last', 'Last', 'In use per profile at the end of the range'],
  ['growth', 'Growth', 'Last against first'],
];

export class LeakTable {
  constructor(root, { onSelect }) {
    this.table = root.querySelector('table');
    this.note = root.querySelector('.leak-note');
    this.table.querySelector('tbody').addEventListener('click', (e) => {
      const tr = e.target.closest('tr[data-name]');
      if (tr) onSelect(tr.dataset.name);
    });
  }

  // report: the answer of /api/v1/leaks; unit: the profile type's unit.
  render(report, unit) {
    const head = document.createElement('tr');
    for (const [, label, title] of COLUMNS) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = label;
      if (title) th.title = title;
      if (label !== 'Function') th.className = 'num';
      head.append(th);
    }
    this.table.querySelector('thead').replaceChildren(head);
    const fmt = (v) => formatValue(v, unit);
    const rows = (report?.leaks || []).map((leak) => {
      const tr = document.createElement('tr');
      tr.dataset.testid = 'leak-row';
      tr.dataset.name = leak.function;
      tr.dataset.slope = String(leak.slope_per_hour);
      tr.dataset.fit = String(leak.fit);
      tr.dataset.first = String(leak.first);
      tr.dataset.last = String(leak.last);
      tr.title = 'Show this function in the flame graph';
      const name = document.createElement('td');
      name.className = 'fn';
      name.textContent = leak.function;
      const td = (text, cls = 'num') => {
        const cell = document.createElement('td');
        cell.className = cls;
        cell.textContent = text;
        return cell;
      };
      const growth = leak.first > 0 ? (leak.last - leak.first) / leak.first : Infinity;
      tr.append(
        name,
        td(`+${fmt(leak.slope_per_hour)}/h`, 'num grew'),
        td(leak.fit.toFixed(3)),
        td(fmt(leak.first)),
        td(fmt(leak.last)),
        td(Number.isFinite(growth) ? `+${formatPercent(growth)}` : 'new', 'num grew'),
      );
      return tr;
    });
    this.table.querySelector('tbody').replaceChildren(...rows);
    this.table.dataset.rows = String(rows.length);
    if (!report) {
      this.note.textContent = '';
    } else if (rows.length) {
      this.note.textContent = `${rows.length} function${rows.length === 1 ? '' : 's'} whose in-use ${
        unit === 'bytes' ? 'memory' : 'value'
      } grows steadily from ${formatDateTime(report.from / 1e9)} to ${formatDateTime(report.until / 1e9)} (points every ${
        report.step_seconds
      } s).`;
    } else {
      this.note.textContent = 'No function’s in-use memory grows steadily in this range.';
    }
  }
}
