// The query controls: service, profile type, label filters, group by, time range and the
// raw query. They reflect the state (update) and report changes as state patches (onChange);
// they never fetch themselves: option lists come from the app.

import { OPS, PRESETS, formatQuery, parseQuery, serviceIndex, serviceOf, withService } from './state.js';

const $ = (id) => document.getElementById(id);

function option(value, label, title) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = label;
  if (title) o.title = title;
  return o;
}

export class QueryBar {
  constructor({ onChange, loadValues, onRefresh }) {
    this.onChange = onChange;
    this.loadValues = loadValues;
    this.services = [];
    this.types = [];
    this.labels = [];
    this.state = null;
    this.parsed = { profileType: '', matchers: [] };
    this.filterSeq = 0;

    $('service').addEventListener('change', (e) => this.setMatchers(withService(this.parsed.matchers, e.target.value)));
    $('profile-type').addEventListener('change', (e) =>
      this.onChange({ query: formatQuery(e.target.value, this.parsed.matchers) }),
    );
    $('group-by').addEventListener('change', (e) => this.onChange({ groupBy: e.target.value }));
    $('add-filter').addEventListener('click', () => this.addFilterRow({ name: '', op: '=', value: '' }, true));
    $('query').addEventListener('change', (e) => this.onChange({ query: e.target.value.trim() }));
    const range = () => this.onChange({ from: $('from').value.trim() || 'now-1h', until: $('until').value.trim() || 'now' });
    $('from').addEventListener('change', range);
    $('until').addEventListener('change', range);
    $('refresh').addEventListener('click', () => onRefresh());
    const presets = $('presets');
    for (const [label, from] of PRESETS) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = label;
      b.dataset.from = from;
      b.dataset.testid = `preset-${label}`;
      b.title = `The last ${label}`;
      presets.append(b);
    }
    presets.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-from]');
      if (b) this.onChange({ from: b.dataset.from, until: 'now' });
    });
  }

  setMatchers(matchers) {
    this.onChange({ query: formatQuery(this.parsed.profileType, matchers) });
  }

  setServices(list) {
    this.services = list;
    this.renderSelects();
  }

  setProfileTypes(types) {
    this.types = types;
    this.renderSelects();
  }

  setLabelNames(names) {
    this.labels = names.filter((n) => !n.startsWith('__'));
    this.renderSelects();
    this.renderFilters();
  }

  update(state) {
    this.state = state;
    this.parsed = parseQuery(state.query);
    $('query').value = state.query;
    $('query').classList.toggle('invalid', Boolean(this.parsed.error));
    $('query').title = this.parsed.error ? `Invalid query: ${this.parsed.error}` : '';
    $('from').value = state.from;
    $('until').value = state.until;
    for (const b of $('presets').children) {
      b.classList.toggle('active', b.dataset.from === state.from && state.until === 'now');
    }
    this.renderSelects();
    this.renderFilters();
  }

  renderSelects() {
    if (!this.state) return;
    const service = serviceOf(this.parsed.matchers);
    const sel = $('service');
    const services = this.services.includes(service) || !service ? this.services : [service, ...this.services];
    sel.replaceChildren(option('', 'All services'), ...services.map((s) => option(s, s)));
    sel.value = service;

    const type = this.parsed.profileType;
    const types = this.types.slice();
    if (type && !types.some((t) => t.ID === type)) {
      const [name, sampleType, sampleUnit] = type.split(':');
      types.unshift({ ID: type, name, sampleType, sampleUnit });
    }
    const ts = $('profile-type');
    ts.replaceChildren(
      ...types.map((t) => option(t.ID, `${t.name} · ${t.sampleType} (${t.sampleUnit})`, t.ID)),
    );
    if (!types.length) ts.append(option('', 'No profile types'));
    ts.value = type;

    const gb = $('group-by');
    const group = this.state.groupBy;
    const names = this.labels.includes(group) || !group ? this.labels : [group, ...this.labels];
    gb.replaceChildren(option('', 'No grouping'), ...names.map((n) => option(n, `by ${n}`)));
    gb.value = group;
  }

  // One row per matcher except the service's (that one is the service select).
  renderFilters() {
    if (!this.state) return;
    const box = $('filters');
    box.replaceChildren();
    const skip = serviceIndex(this.parsed.matchers);
    this.parsed.matchers.forEach((m, i) => {
      if (i !== skip) this.addFilterRow(m, false);
    });
  }

  addFilterRow(m, focus) {
    const row = document.createElement('span');
    row.className = 'filter';
    row.dataset.testid = 'filter';
    const name = document.createElement('select');
    name.className = 'filter-name';
    name.setAttribute('aria-label', 'Label');
    const names = this.labels.includes(m.name) || !m.name ? this.labels : [m.name, ...this.labels];
    name.append(option('', 'label…'), ...names.map((n) => option(n, n)));
    name.value = m.name;
    const op = document.createElement('select');
    op.className = 'filter-op';
    op.setAttribute('aria-label', 'Operator');
    op.append(...OPS.map((o) => option(o, o)));
    op.value = m.op;
    const value = document.createElement('input');
    value.className = 'filter-value';
    value.setAttribute('aria-label', 'Value');
    value.placeholder = 'value';
    value.value = m.value;
    value.spellcheck = false;
    const list = document.createElement('datalist');
    list.id = `filter-values-${++this.filterSeq}`;
    value.setAttribute('list', list.id);
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'icon';
    remove.textContent = '×';
    remove.title = 'Remove this filter';
    remove.setAttribute('aria-label', 'Remove this filter');
    row.append(name, op, value, list, remove);
    $('filters').append(row);

    const fill = async () => {
      if (!name.value) return;
      try {
        const values = await this.loadValues(name.value);
        list.replaceChildren(...values.map((v) => option(v, v)));
      } catch {
        // Suggestions only; typing still works.
      }
    };
    value.addEventListener('focus', fill);
    name.addEventListener('change', () => {
      list.replaceChildren();
      value.focus();
    });
    op.addEventListener('change', () => this.applyFilters());
    value.addEventListener('change', () => this.applyFilters());
    remove.addEventListener('click', () => {
      row.remove();
      this.applyFilters();
    });
    if (focus) name.focus();
  }

  applyFilters() {
    const skip = serviceIndex(this.parsed.matchers);
    const matchers = skip >= 0 ? [this.parsed.matchers[skip]] : [];
    for (const row of $('filters').children) {
      const name = row.querySelector('.filter-name').value;
      if (!name) continue;
      matchers.push({ name, op: row.querySelector('.filter-op').value, value: row.querySelector('.filter-value').value });
    }
    this.setMatchers(matchers);
  }
}
