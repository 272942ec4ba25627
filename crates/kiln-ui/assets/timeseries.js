// The time series chart: the selection's total per step (one line per group with groupBy),
// a legend, a hover readout, and drag-to-select a range.

import { formatAxisValue, formatDateTime, formatTime, formatValue, niceTicksFor, timeTicks } from './format.js';
import { fillTooltip, placeTooltip } from './flamegraph.js';
import { cssVar } from './theme.js';

const HEIGHT = 150;
const PAD = { left: 64, right: 12, top: 10, bottom: 22 };
const FONT = '11px system-ui, sans-serif';

export class SeriesChart {
  constructor(canvas, legend, tooltip, { onRange, onLegendClick }) {
    this.canvas = canvas;
    this.legend = legend;
    this.tooltip = tooltip;
    this.onRange = onRange;
    this.onLegendClick = onLegendClick;
    this.ctx = canvas.getContext('2d');
    this.data = null;
    this.drag = null;
    this.frame = 0;
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    canvas.addEventListener('pointerup', (e) => this.up(e));
    canvas.addEventListener('pointercancel', () => {
      this.drag = null;
      this.schedule();
    });
    canvas.addEventListener('pointerleave', () => {
      this.tooltip.hidden = true;
    });
    new ResizeObserver(() => this.schedule()).observe(canvas.parentElement);
    legend.addEventListener('click', (e) => {
      const item = e.target.closest('[data-group]');
      if (item) this.onLegendClick(item.dataset.group);
    });
  }

  // series: [{name, color, start, step, samples}] (start and step in seconds); from, until:
  // the range shown (seconds); bands: [{from, until, className, label}] shaded ranges.
  setData(data) {
    this.data = data;
    this.renderLegend();
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  renderLegend() {
    const { series, unit, groupLabel } = this.data;
    const items = [];
    if (groupLabel) {
      for (const s of series) {
        const item = document.createElement('button');
        item.type = 'button';
        item.className = 'legend-item';
        item.dataset.group = s.name;
        item.title = s.name === '*' ? `Series without ${groupLabel}` : `Filter by ${groupLabel}="${s.name}"`;
        const swatch = document.createElement('span');
        swatch.className = 'swatch';
        swatch.style.background = s.color;
        const label = document.createElement('span');
        label.textContent = `${s.name} `;
        const value = document.createElement('span');
        value.className = 'muted';
        value.textContent = formatValue(s.samples.reduce((a, b) => a + b, 0), unit);
        item.append(swatch, label, value);
        items.push(item);
      }
    }
    this.legend.replaceChildren(...items);
    this.legend.hidden = items.length === 0;
  }

  geometry() {
    const width = Math.max(100, this.canvas.parentElement.clientWidth);
    const { from, until } = this.data;
    const plotW = width - PAD.left - PAD.right;
    const span = Math.max(1, until - from);
    return {
      width,
      plotW,
      plotH: HEIGHT - PAD.top - PAD.bottom,
      toX: (t) => PAD.left + ((t - from) / span) * plotW,
      toT: (x) => from + ((x - PAD.left) / plotW) * span,
    };
  }

  draw() {
    if (!this.data) return;
    const g = this.geometry();
    const dpr = window.devicePixelRatio || 1;
    const c = this.canvas;
    if (c.width !== Math.round(g.width * dpr) || c.height !== Math.round(HEIGHT * dpr)) {
      c.width = Math.round(g.width * dpr);
      c.height = Math.round(HEIGHT * dpr);
    }
    c.style.width = `${g.width}px`;
    c.style.height = `${HEIGHT}px`;
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, g.width, HEIGHT);
    const { series, from, until, unit, bands } = this.data;
    const muted = cssVar('--muted');
    const grid = cssVar('--grid');
    ctx.font = FONT;

    let max = 0;
    for (const s of series) for (const v of s.samples) if (v > max) max = v;
    const yTicks = max > 0 ? niceTicksFor(max, unit, 3) : [0];
    const yMax = yTicks[yTicks.length - 1] || 1;
    const toY = (v) => PAD.top + g.plotH - (v / yMax) * g.plotH;

    // Bands (diff sides) under everything else.
    for (const b of bands || []) {
      const x0 = Math.max(PAD.left, g.toX(b.from));
      const x1 = Math.min(PAD.left + g.plotW, g.toX(b.until));
      if (x1 <= x0) continue;
      ctx.fillStyle = cssVar(b.color);
      ctx.globalAlpha = 0.18;
      ctx.fillRect(x0, PAD.top, x1 - x0, g.plotH);
      ctx.globalAlpha = 1;
      ctx.fillStyle = cssVar(b.color);
      ctx.fillText(b.label, x0 + 4, PAD.top + 11);
    }

    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = muted;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const v of yTicks) {
      const y = Math.round(toY(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(PAD.left, y);
      ctx.lineTo(PAD.left + g.plotW, y);
      ctx.stroke();
      ctx.fillText(formatAxisValue(v, unit), PAD.left - 6, y);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const t of timeTicks(from, until, Math.max(2, Math.floor(g.plotW / 110)))) {
      ctx.fillText(formatTime(t, until - from), g.toX(t), PAD.top + g.plotH + 6);
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(PAD.left, PAD.top, g.plotW, g.plotH);
    ctx.clip();
    const single = series.length === 1;
    for (const s of series) {
      // Steps drawn as stairs: each sample covers [start + i*step, start + (i+1)*step).
      ctx.beginPath();
      let started = false;
      for (let i = 0; i < s.samples.length; i++) {
        const t0 = s.start + i * s.step;
        if (t0 + s.step < from || t0 > until) continue;
        const y = toY(s.samples[i]);
        const x0 = g.toX(t0);
        if (!started) {
          ctx.moveTo(x0, toY(0));
          started = true;
        }
        ctx.lineTo(x0, y);
        ctx.lineTo(g.toX(t0 + s.step), y);
      }
      if (!started) continue;
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.stroke();
      if (single) {
        const last = Math.min(s.start + s.samples.length * s.step, until + s.step);
        ctx.lineTo(g.toX(last), toY(0));
        ctx.closePath();
        ctx.globalAlpha = 0.25;
        ctx.fillStyle = s.color;
        ctx.fill();
        ctx.globalAlpha = 1;
      }
    }
    if (this.drag && Math.abs(this.drag.x1 - this.drag.x0) > 1) {
      const x0 = Math.min(this.drag.x0, this.drag.x1);
      const x1 = Math.max(this.drag.x0, this.drag.x1);
      ctx.fillStyle = cssVar('--accent');
      ctx.globalAlpha = 0.2;
      ctx.fillRect(x0, PAD.top, x1 - x0, g.plotH);
      ctx.globalAlpha = 1;
    }
    ctx.restore();
  }

  plotX(e) {
    const g = this.geometry();
    return Math.min(PAD.left + g.plotW, Math.max(PAD.left, e.offsetX));
  }

  down(e) {
    if (!this.data || e.button !== 0) return;
    this.canvas.setPointerCapture(e.pointerId);
    const x = this.plotX(e);
    this.drag = { x0: x, x1: x };
  }

  move(e) {
    if (!this.data) return;
    if (this.drag) {
      this.drag.x1 = this.plotX(e);
      this.tooltip.hidden = true;
      this.schedule();
      return;
    }
    this.hover(e);
  }

  up(e) {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    this.schedule();
    // A click without a drag is no selection.
    if (Math.abs(drag.x1 - drag.x0) < 4) return;
    const g = this.geometry();
    const a = g.toT(Math.min(drag.x0, drag.x1));
    const b = g.toT(Math.max(drag.x0, drag.x1));
    this.onRange(Math.floor(a), Math.ceil(b), e);
  }

  hover(e) {
    const g = this.geometry();
    if (e.offsetX < PAD.left || e.offsetX > PAD.left + g.plotW) {
      this.tooltip.hidden = true;
      return;
    }
    const t = g.toT(e.offsetX);
    const rows = [];
    let stepStart = null;
    for (const s of this.data.series.slice(0, 12)) {
      const i = Math.floor((t - s.start) / s.step);
      if (i < 0 || i >= s.samples.length) continue;
      stepStart = s.start + i * s.step;
      rows.push([this.data.groupLabel ? s.name : 'Total', formatValue(s.samples[i], this.data.unit)]);
    }
    if (stepStart === null) {
      this.tooltip.hidden = true;
      return;
    }
    fillTooltip(this.tooltip, formatDateTime(stepStart), rows);
    placeTooltip(this.tooltip, e.clientX, e.clientY);
  }
}
