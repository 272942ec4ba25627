// The flame graph on a <canvas>: drawing, hit testing and the hover tooltip.
//
// Drawing cost is kept independent of the number of nodes where possible:
// - horizontally, each level is searched (binary search, levels are sorted by x) for the
//   first node inside the zoomed range and drawing stops at the range's end;
// - nodes narrower than half a CSS pixel are skipped (they would not be visible);
// - vertically, only the levels inside the window's viewport (with a margin) are drawn, and
//   scrolling redraws;
// - labels are cut by a character count from one measured monospace width, not measured
//   one by one.
// The canvas backing store is scaled by devicePixelRatio for sharp text, within the browser's
// size limits for very deep graphs.

import { diffColor, frameColor } from './colors.js';
import { formatChange, formatPercent, formatValue } from './format.js';
import { firstEndingAfter, nodeAt, relativeChange } from './tree.js';
import { cssVar } from './theme.js';

export const ROW_HEIGHT = 18;
const MIN_WIDTH = 0.5;
const LABEL_MIN_WIDTH = 24;
const FONT = '12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace';
// Chromium refuses canvases over 32767 px on a side or about 268M px in all.
const MAX_SIDE = 32000;
const MAX_AREA = 2.5e8;
// Levels beyond this are not drawn (a note says so); zooming in shows them.
const MAX_LEVELS = Math.floor(MAX_SIDE / ROW_HEIGHT);

export class FlameGraph {
  constructor(canvas, tooltip, { onClick, note } = {}) {
    this.canvas = canvas;
    this.note = note;
    this.tooltip = tooltip;
    this.onClick = onClick || (() => {});
    this.ctx = canvas.getContext('2d');
    this.tree = null;
    this.unit = 'count';
    this.zoom = 0;
    this.selected = -1;
    this.mask = null;
    this.dark = false;
    this.cssWidth = 0;
    this.cssHeight = 0;
    this.hover = -1;
    this.colors = null;
    this.frame = 0;
    this.shown = 0;

    canvas.addEventListener('mousemove', (e) => this.onMove(e));
    canvas.addEventListener('mouseleave', () => this.hideTooltip());
    canvas.addEventListener('click', (e) => {
      const i = this.hitTest(e.offsetX, e.offsetY);
      if (i >= 0) this.onClick(i);
    });
    // Only graphs taller than the window are drawn in part (rowsToDraw), so only they need
    // drawing again on scroll.
    window.addEventListener(
      'scroll',
      () => {
        if (this.cssHeight > 2 * window.innerHeight) this.schedule();
      },
      { passive: true },
    );
    new ResizeObserver(() => this.schedule(true)).observe(canvas.parentElement);
  }

  setData(tree, { unit }) {
    this.tree = tree;
    this.unit = unit;
    this.zoom = 0;
    this.selected = -1;
    this.mask = null;
    this.colors = null;
    this.hideTooltip();
    this.schedule(true);
  }

  // zoom: the node filling the width; selected: the node outlined; mask: per name index,
  // 1 for highlighted functions (the others are dimmed), or null.
  setView({ zoom, selected, mask }) {
    const n = this.tree ? this.tree.n : 0;
    this.zoom = zoom >= 0 && zoom < n && this.tree.w[zoom] > 0 ? zoom : 0;
    this.selected = selected >= 0 && selected < n ? selected : -1;
    this.mask = mask;
    this.schedule(true);
  }

  setTheme(dark) {
    this.dark = dark;
    this.colors = null;
    this.schedule();
  }

  // Redraws on the next animation frame (several changes in one frame draw once).
  schedule(resize = false) {
    this.needsResize ||= resize;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (this.needsResize) this.resize();
      this.needsResize = false;
      this.draw();
    });
  }

  // Draws now (tests and the app call this after a load so the frames are in place).
  flush() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.resize();
    this.needsResize = false;
    this.draw();
  }

  // The depth below which the zoomed node has no descendants: no empty rows are drawn.
  levelsShown() {
    const t = this.tree;
    if (!t || !t.n) return 0;
    const z = this.zoom;
    const zx = t.x[z];
    const end = zx + t.w[z];
    let d = t.depth[z] + 1;
    for (; d < t.levels; d++) {
      const i = firstEndingAfter(t, d, zx);
      if (i >= t.levelStart[d + 1] || t.x[i] >= end) break;
    }
    return Math.min(d, MAX_LEVELS);
  }

  resize() {
    const width = Math.max(1, this.canvas.parentElement.clientWidth);
    this.shown = this.levelsShown();
    const height = Math.max(ROW_HEIGHT, this.shown * ROW_HEIGHT);
    const dpr = window.devicePixelRatio || 1;
    const scale = Math.min(dpr, MAX_SIDE / width, MAX_SIDE / height, Math.sqrt(MAX_AREA / (width * height)));
    this.cssWidth = width;
    this.cssHeight = height;
    this.scale = scale;
    const bw = Math.round(width * scale);
    const bh = Math.round(height * scale);
    if (this.canvas.width !== bw || this.canvas.height !== bh) {
      this.canvas.width = bw;
      this.canvas.height = bh;
    }
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    this.canvas.dataset.levels = String(this.tree ? this.tree.levels : 0);
    const truncated = Boolean(this.tree && this.tree.levels > MAX_LEVELS && this.shown >= MAX_LEVELS);
    if (this.note) {
      this.note.hidden = !truncated;
      this.note.textContent = truncated
        ? `Only the first ${MAX_LEVELS} of ${this.tree.levels} levels are drawn: click a frame to see deeper.`
        : '';
    }
  }

  // Per node or per name colours, computed once per data and theme.
  palette() {
    if (this.colors) return this.colors;
    const t = this.tree;
    if (t.format === 'double') {
      const byNode = new Array(t.n);
      for (let i = 0; i < t.n; i++) {
        byNode[i] = diffColor(relativeChange(t.lt[i], t.leftTicks, t.rt[i], t.rightTicks), this.dark);
      }
      this.colors = { byNode };
    } else {
      const byName = t.names.map((name) => (name === 'other' ? null : frameColor(name, this.dark)));
      this.colors = { byName, other: cssVar('--frame-other') };
    }
    return this.colors;
  }

  // The levels to draw: all of them for a graph about the window's height, else those in the
  // viewport with one window height of margin above and below.
  rowsToDraw() {
    const levels = Math.ceil(this.cssHeight / ROW_HEIGHT);
    const vh = window.innerHeight || 800;
    if (this.cssHeight <= 2 * vh) return [0, levels - 1];
    const top = this.canvas.getBoundingClientRect().top;
    const from = Math.max(0, Math.floor((-top - vh) / ROW_HEIGHT));
    const to = Math.min(levels - 1, Math.ceil((-top + 2 * vh) / ROW_HEIGHT));
    return [from, to];
  }

  draw() {
    const { ctx } = this;
    ctx.setTransform(this.scale, 0, 0, this.scale, 0, 0);
    ctx.clearRect(0, 0, this.cssWidth, this.cssHeight);
    const t = this.tree;
    if (!t || !t.n || !(t.w[0] > 0)) return;
    const colors = this.palette();
    const dim = cssVar('--frame-dim');
    const text = cssVar('--frame-text');
    const dimText = cssVar('--frame-dim-text');
    const outline = cssVar('--accent');
    const { x, w, name, names, levelStart, depth } = t;
    const z = this.zoom;
    const zx = x[z];
    const zw = w[z];
    const k = this.cssWidth / zw;
    const zDepth = depth[z];
    const mask = this.mask;
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    if (!this.charWidth) this.charWidth = ctx.measureText('M').width || 7.2;
    const charWidth = this.charWidth;
    const [d0, d1] = this.rowsToDraw();
    for (let d = d0; d <= d1 && d < t.levels; d++) {
      const y = d * ROW_HEIGHT;
      const end = levelStart[d + 1];
      // Levels above the zoomed frame show its ancestors, faded.
      ctx.globalAlpha = d < zDepth ? 0.6 : 1;
      for (let i = firstEndingAfter(t, d, zx); i < end; i++) {
        const left = (x[i] - zx) * k;
        if (left >= this.cssWidth) break;
        const width = w[i] * k;
        if (width < MIN_WIDTH) continue;
        const x0 = Math.max(0, left);
        const x1 = Math.min(this.cssWidth, left + width);
        const highlighted = !mask || mask[name[i]] === 1;
        let fill;
        if (!highlighted) fill = dim;
        else if (colors.byNode) fill = colors.byNode[i];
        else fill = colors.byName[name[i]] || colors.other;
        ctx.fillStyle = fill;
        // A one pixel gap between frames once they are wide enough to afford it.
        ctx.fillRect(x0, y, x1 - x0 > 2 ? x1 - x0 - 1 : x1 - x0, ROW_HEIGHT - 1);
        if (x1 - x0 >= LABEL_MIN_WIDTH) {
          const label = fit(names[name[i]], Math.floor((x1 - x0 - 8) / charWidth));
          if (label) {
            ctx.fillStyle = highlighted ? text : dimText;
            ctx.fillText(label, x0 + 4, y + ROW_HEIGHT / 2);
          }
        }
      }
    }
    ctx.globalAlpha = 1;
    const sel = this.selectedRect();
    if (sel) {
      ctx.strokeStyle = outline;
      ctx.lineWidth = 2;
      ctx.strokeRect(sel.x + 1, sel.y + 1, Math.max(1, sel.w - 2), sel.h - 2);
    }
    this.canvas.dataset.zoom = String(z);
  }

  selectedRect() {
    return this.selected >= 0 ? this.rect(this.selected) : null;
  }

  // Where node i is drawn, in CSS pixels relative to the canvas, or null when it is not drawn
  // (outside the zoomed range, too narrow, or too deep).
  rect(i) {
    const t = this.tree;
    if (!t || i < 0 || i >= t.n) return null;
    const z = this.zoom;
    const k = this.cssWidth / t.w[z];
    const left = (t.x[i] - t.x[z]) * k;
    const width = t.w[i] * k;
    if (width < MIN_WIDTH || left >= this.cssWidth || left + width <= 0) return null;
    if (t.depth[i] >= this.shown) return null;
    const x0 = Math.max(0, left);
    const x1 = Math.min(this.cssWidth, left + width);
    return { x: x0, y: t.depth[i] * ROW_HEIGHT, w: x1 - x0, h: ROW_HEIGHT - 1 };
  }

  // The node drawn at (px, py) in CSS pixels of the canvas, or -1.
  hitTest(px, py) {
    const t = this.tree;
    if (!t || !t.n) return -1;
    const d = Math.floor(py / ROW_HEIGHT);
    const z = this.zoom;
    const pos = t.x[z] + (px / this.cssWidth) * t.w[z];
    const i = nodeAt(t, d, pos);
    if (i < 0 || !this.rect(i)) return -1;
    return i;
  }

  onMove(e) {
    const i = this.hitTest(e.offsetX, e.offsetY);
    this.canvas.classList.toggle('pointer', i >= 0);
    if (i < 0) {
      this.hideTooltip();
      return;
    }
    if (i !== this.hover) {
      this.hover = i;
      this.fillTooltip(i);
    }
    placeTooltip(this.tooltip, e.clientX, e.clientY);
  }

  hideTooltip() {
    this.hover = -1;
    this.tooltip.hidden = true;
  }

  fillTooltip(i) {
    const t = this.tree;
    const rows = [];
    const fmt = (v) => formatValue(v, this.unit);
    if (t.format === 'double') {
      const ls = t.leftTicks || 1;
      const rs = t.rightTicks || 1;
      rows.push(['Left', `${fmt(t.lt[i])} (${formatPercent(t.lt[i] / ls)}), self ${fmt(t.ls[i])}`]);
      rows.push(['Right', `${fmt(t.rt[i])} (${formatPercent(t.rt[i] / rs)}), self ${fmt(t.rs[i])}`]);
      const change = relativeChange(t.lt[i], t.leftTicks, t.rt[i], t.rightTicks);
      rows.push(['Change', t.rt[i] === 0 && t.lt[i] > 0 ? 'removed' : formatChange(change)]);
    } else {
      const total = t.w[0] || 1;
      rows.push(['Total', `${fmt(t.w[i])} (${formatPercent(t.w[i] / total)})`]);
      rows.push(['Self', `${fmt(t.self[i])} (${formatPercent(t.self[i] / total)})`]);
    }
    fillTooltip(this.tooltip, t.names[t.name[i]], rows);
  }
}

// The longest prefix of `text` in `chars` characters, with an ellipsis when cut.
export function fit(text, chars) {
  if (chars <= 0) return '';
  if (text.length <= chars) return text;
  if (chars < 3) return '';
  return `${text.slice(0, chars - 1)}…`;
}

// The shared tooltip: a title and label/value rows, built with textContent (names are data).
export function fillTooltip(el, title, rows) {
  const head = document.createElement('div');
  head.className = 'tt-title';
  head.textContent = title;
  const table = document.createElement('dl');
  for (const [label, value] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = label;
    const dd = document.createElement('dd');
    dd.textContent = value;
    table.append(dt, dd);
  }
  el.replaceChildren(head, table);
  el.hidden = false;
}

export function placeTooltip(el, clientX, clientY) {
  const pad = 14;
  const { innerWidth, innerHeight } = window;
  const r = el.getBoundingClientRect();
  let left = clientX + pad;
  let top = clientY + pad;
  if (left + r.width > innerWidth - 4) left = Math.max(4, clientX - pad - r.width);
  if (top + r.height > innerHeight - 4) top = Math.max(4, clientY - pad - r.height);
  el.style.left = `${left}px`;
  el.style.top = `${top}px`;
}
