// The table of functions beside the flame graph: sortable by its headers, filtered by the
// search, a click on a row highlights the function in the flame graph. Each row carries the
// exact values in data attributes (data-self, data-total; data-left-* and data-right-* in a
// diff) for tests and for copying.

import { formatChange, formatPercent, formatValue } from './format.js';

// At first only this many rows are put in the page (a profile can have tens of thousands of
// functions); "Show all" lifts the limit.
const ROW_LIMIT = 500;

const SINGLE_COLUMNS = [
  ['name', 'Function'],
  ['self', 'Self'],
  ['total', 'Total'],
];
const DIFF_COLUMNS = [
  ['name', 'Function'],
  ['leftSelf', 'Self (left)'],
  ['rightSelf', 'Self (right)'],
  ['leftTotal', 'Total (left)'],
  ['rightTotal', 'Total (right)'],
  ['change', 'Δ total', "Change of the function's share of the total, right against left"],
];

export class FunctionTable {
  constructor(root, { onSort, onSelect }) {
    this.root = root;
    this.onSort = onSort;
    this.onSelect = onSelect;
    this.table = root.querySelector('table');
    this.thead = this.table.querySelector('thead');
    this.tbody = this.table.querySelector('tbody');
    this.more = root.querySelector('.table-more');
    this.limit = ROW_LIMIT;
    this.lastKey = '';
    this.thead.addEventListener('click', (e) => {
      const th = e.target.closest('th[data-key]');
      if (th) this.onSort(th.dataset.key);
    });
    this.tbody.addEventListener('click', (e) => {
      const tr = e.target.closest('tr[data-name]');
      if (tr) this.onSelect(tr.dataset.name);
    });
    this.more.addEventListener('click', () => {
      this.limit = Infinity;
      this.render(this.last);
    });
  }

  // rows: already filtered and sorted.
  render(opts) {
    this.last = opts;
    const { rows, format, unit, sort, order, selected, leftTicks, rightTicks, total } = opts;
    const columns = format === 'double' ? DIFF_COLUMNS : SINGLE_COLUMNS;
    // A new data set starts again with the row limit.
    const key = `${format}:${total}:${rows.length}`;
    if (key !== this.lastKey && this.limit !== Infinity) this.limit = ROW_LIMIT;
    this.lastKey = key;

    const head = document.createElement('tr');
    for (const [k, label, title] of columns) {
      const th = document.createElement('th');
      if (title) th.title = title;
      th.dataset.key = k;
      th.textContent = label;
      th.scope = 'col';
      if (k !== 'name') th.className = 'num';
      if (k === sort) th.setAttribute('aria-sort', order === 'asc' ? 'ascending' : 'descending');
      head.append(th);
    }
    this.thead.replaceChildren(head);

    const fmt = (v) => formatValue(v, unit);
    const cell = (value, share, cls = 'num') => {
      const td = document.createElement('td');
      td.className = cls;
      td.textContent = fmt(value);
      if (share !== undefined) {
        const pct = document.createElement('span');
        pct.className = 'pct';
        pct.textContent = formatPercent(share);
        td.append(pct);
      }
      return td;
    };
    const shown = rows.length > this.limit ? rows.slice(0, this.limit) : rows;
    const frag = document.createDocumentFragment();
    for (const r of shown) {
      const tr = document.createElement('tr');
      tr.dataset.testid = 'top-table-row';
      tr.dataset.name = r.name;
      tr.dataset.self = String(r.self);
      tr.dataset.total = String(r.total);
      if (r.name === selected) tr.className = 'selected';
      const name = document.createElement('td');
      name.className = 'fn';
      name.textContent = r.name;
      name.title = r.name;
      tr.append(name);
      if (format === 'double') {
        tr.dataset.leftSelf = String(r.leftSelf);
        tr.dataset.rightSelf = String(r.rightSelf);
        tr.dataset.leftTotal = String(r.leftTotal);
        tr.dataset.rightTotal = String(r.rightTotal);
        tr.append(
          cell(r.leftSelf, r.leftSelf / (leftTicks || 1)),
          cell(r.rightSelf, r.rightSelf / (rightTicks || 1)),
          cell(r.leftTotal, r.leftTotal / (leftTicks || 1)),
          cell(r.rightTotal, r.rightTotal / (rightTicks || 1)),
        );
        const td = document.createElement('td');
        td.className = `num ${r.change > 0.01 ? 'grew' : r.change < -0.01 ? 'shrank' : ''}`;
        td.textContent = r.rightTotal === 0 && r.leftTotal > 0 ? 'removed' : formatChange(r.change);
        tr.append(td);
      } else {
        tr.append(cell(r.self, r.self / (total || 1)), cell(r.total, r.total / (total || 1)));
      }
      frag.append(tr);
    }
    this.tbody.replaceChildren(frag);
    this.table.dataset.rows = String(rows.length);
    this.more.hidden = shown.length === rows.length;
    this.more.textContent = `Show all ${rows.length.toLocaleString('en-US')} functions`;
  }

  // Scrolls the table (not the page) to the row of a function (after a click on the flame
  // graph); rows under the header are scrolled to just below it.
  reveal(name) {
    const box = this.table.parentElement;
    for (const tr of this.tbody.children) {
      if (tr.dataset.name !== name) continue;
      const head = this.thead.offsetHeight;
      const top = tr.offsetTop;
      if (top - head < box.scrollTop || top + tr.offsetHeight > box.scrollTop + box.clientHeight) {
        box.scrollTop = Math.max(0, top - head - box.clientHeight / 3);
      }
      return;
    }
  }
}
