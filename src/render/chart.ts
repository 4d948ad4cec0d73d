import { readFileSync } from 'node:fs';

/**
 * Small PNG line charts of time series, for statistics mails (traffic in bit/s, response times,
 * availability). The chart is drawn as SVG here and rasterized by resvg (Rust, compiled to
 * WebAssembly): no native addon to unpack, the same bytes on every platform. Text uses DejaVu
 * Sans, shipped with the program, never the system's fonts (servers often have none).
 *
 * Nothing heavy loads with this module: the WebAssembly renderer and the font are read on the
 * first renderChartPng() call. In the single executable they are SEA assets (build.mjs adds them
 * when the bundle contains @resvg/resvg-wasm); elsewhere they come from node_modules.
 */

export interface ChartSeries {
  name: string;
  /** [epoch ms, value]; null (or a non-finite number) is a gap: the line is broken there. */
  points: Array<[number, number | null]>;
}

export interface ChartSpec {
  title: string;
  /** Unit of the values, shown above the y axis, e.g. "bit/s", "ms", "%". */
  unit: string;
  series: ChartSeries[];
  /** Pixels; default 640. */
  width?: number;
  /** Pixels; default 320. */
  height?: number;
  /**
   * Values the y axis must include, e.g. 0 and 100 for a percentage, or 99 to look closely at an
   * availability. Without yMin the axis starts at 0 for data that is never negative, and fits the
   * data otherwise (dBm).
   */
  yMin?: number;
  yMax?: number;
}

/** Series colours, in order (Tableau 10: distinct, also for most colour-blind readers). */
export const CHART_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

/** SEA asset keys; build.mjs uses the same names. */
export const CHART_WASM_ASSET = 'chart/resvg.wasm';
export const CHART_FONT_ASSET = 'chart/dejavu-sans.woff';
const WASM_FILE = '@resvg/resvg-wasm/index_bg.wasm';
const FONT_FILE = '@fontsource/dejavu-sans/files/dejavu-sans-latin-400-normal.woff';
const FONT_FAMILY = 'DejaVu Sans';

const MIN_SIDE = 160;
const MAX_SIDE = 4096;

type ResvgModule = typeof import('@resvg/resvg-wasm');

let renderer: Promise<{ Resvg: ResvgModule['Resvg']; font: Uint8Array }> | undefined;

/**
 * The chart as a PNG of exactly width × height pixels. Asynchronous because the WebAssembly
 * renderer is instantiated on the first call (~30 ms); later calls wait for nothing.
 */
export async function renderChartPng(spec: ChartSpec): Promise<Buffer> {
  const svg = renderChartSvg(spec);
  const { Resvg, font } = await loadRenderer();
  const resvg = new Resvg(svg, {
    font: { fontBuffers: [font], defaultFontFamily: FONT_FAMILY, sansSerifFamily: FONT_FAMILY },
    fitTo: { mode: 'original' },
    shapeRendering: 2,
    textRendering: 1,
  });
  try {
    const image = resvg.render();
    try {
      const png = image.asPng(); // already a copy out of wasm memory
      return Buffer.from(png.buffer, png.byteOffset, png.byteLength);
    } finally {
      image.free(); // wasm memory: not garbage-collected
    }
  } finally {
    resvg.free();
  }
}

function loadRenderer(): Promise<{ Resvg: ResvgModule['Resvg']; font: Uint8Array }> {
  renderer ??= (async () => {
    const mod = require('@resvg/resvg-wasm') as ResvgModule;
    await mod.initWasm(resource(CHART_WASM_ASSET, WASM_FILE));
    // resvg reads TrueType/OpenType only; the package ships WOFF.
    return { Resvg: mod.Resvg, font: woffToSfnt(resource(CHART_FONT_ASSET, FONT_FILE)) };
  })();
  // A failed start is not kept: the next call tries again and reports its own error.
  renderer.catch(() => (renderer = undefined));
  return renderer;
}

function resource(asset: string, file: string): Uint8Array {
  if (isSea()) {
    const sea = require('node:sea') as typeof import('node:sea');
    try {
      return new Uint8Array(sea.getAsset(asset)); // a copy: the raw asset is read-only memory
    } catch (err) {
      throw new Error(`chart: this executable lacks its ${asset}: ${(err as Error).message}`);
    }
  }
  return readFileSync(require.resolve(file));
}

function isSea(): boolean {
  try {
    return (require('node:sea') as typeof import('node:sea')).isSea();
  } catch {
    return false; // node:sea appeared in Node 20.12
  }
}

/** WOFF 1.0 → the TrueType/OpenType file it wraps: each table is zlib-compressed or stored. */
export function woffToSfnt(woff: Uint8Array): Buffer {
  const { inflateSync } = require('node:zlib') as typeof import('node:zlib');
  const b = Buffer.from(woff.buffer, woff.byteOffset, woff.byteLength);
  if (b.length < 44 || b.readUInt32BE(0) !== 0x774f4646) throw new Error('chart: the font is not WOFF');
  const numTables = b.readUInt16BE(12);
  const tables: { tag: Buffer; checksum: number; data: Buffer }[] = [];
  for (let i = 0; i < numTables; i++) {
    const at = 44 + 20 * i;
    const [offset, compLength, origLength, checksum] = [4, 8, 12, 16].map((o) => b.readUInt32BE(at + o));
    const stored = b.subarray(offset, offset + compLength);
    const data = compLength < origLength ? inflateSync(stored) : stored;
    if (data.length !== origLength) throw new Error('chart: damaged WOFF table');
    tables.push({ tag: b.subarray(at, at + 4), checksum, data });
  }
  const pad4 = (n: number) => (n + 3) & ~3;
  const out = Buffer.alloc(12 + 16 * numTables + tables.reduce((s, t) => s + pad4(t.data.length), 0));
  const log2 = Math.floor(Math.log2(numTables));
  out.writeUInt32BE(b.readUInt32BE(4), 0); // flavor: sfnt version
  out.writeUInt16BE(numTables, 4);
  out.writeUInt16BE(16 << log2, 6);
  out.writeUInt16BE(log2, 8);
  out.writeUInt16BE(16 * numTables - (16 << log2), 10);
  let offset = 12 + 16 * numTables;
  tables.forEach((t, i) => {
    const at = 12 + 16 * i;
    t.tag.copy(out, at);
    out.writeUInt32BE(t.checksum, at + 4);
    out.writeUInt32BE(offset, at + 8);
    out.writeUInt32BE(t.data.length, at + 12);
    t.data.copy(out, offset);
    offset += pad4(t.data.length);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// SVG

const FONT = { title: 14, label: 11, note: 13 };
const INK = { text: '#222', axis: '#555', grid: '#e3e3e3', frame: '#bbb', faint: '#777' };

/** The chart as SVG (what renderChartPng rasterizes). */
export function renderChartSvg(spec: ChartSpec): string {
  const width = side(spec.width ?? 640, 'width');
  const height = side(spec.height ?? 320, 'height');
  const series = spec.series.map((s, i) => ({
    name: s.name,
    color: CHART_COLORS[i % CHART_COLORS.length],
    // After all colours are used, the next round is dashed.
    dash: i >= CHART_COLORS.length ? '6 3' : undefined,
    points: clean(s.points),
  }));
  const samples = series.flatMap((s) => s.points.filter((p): p is [number, number] => p[1] !== null));

  const out: string[] = [];
  const pad = 10;
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);

  // Header: title on the left, the UTC date range on the right.
  const titleY = pad + FONT.title;
  // Loops, not Math.min(...list): a long list would overflow the call stack.
  let t0 = Infinity;
  let t1 = -Infinity;
  let lo = spec.yMin ?? Infinity;
  let hi = spec.yMax ?? -Infinity;
  for (const [t, v] of samples) {
    t0 = Math.min(t0, t);
    t1 = Math.max(t1, t);
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const range = samples.length ? dateRange(t0, t1) : '';
  const rangeWidth = range ? textWidth(range, FONT.label) + 12 : 0;
  out.push(text(pad, titleY, fit(spec.title, width - 2 * pad - rangeWidth, FONT.title), FONT.title, INK.text, 'start'));
  if (range) out.push(text(width - pad, titleY, range, FONT.label, INK.faint, 'end'));

  // Legend (several series): rows of colour swatch + name under the plot, as many as fit.
  const legend = series.length > 1 ? legendRows(series, width - 2 * pad) : [];
  const unitY = titleY + 8 + FONT.label;
  const top = unitY + 12; // the top y label rises ~8 px above the plot
  const plotBottom = () => height - pad - legend.length * (FONT.label + 6) - (FONT.label + 6); // room for the x tick labels
  while (plotBottom() - top < 60 && legend.length) legend.pop(); // a small image keeps its plot, not its legend
  const legendHeight = legend.length * (FONT.label + 6);
  const bottom = plotBottom();

  if (samples.length === 0) {
    const left = pad;
    const right = width - pad;
    out.push(`<rect x="${left + 0.5}" y="${top + 0.5}" width="${right - left - 1}" height="${bottom - top - 1}" fill="none" stroke="${INK.frame}"/>`);
    out.push(text((left + right) / 2, (top + bottom) / 2 + FONT.note / 3, 'no samples', FONT.note, INK.faint, 'middle'));
  } else {
    // y axis
    if (lo > 0 && spec.yMin === undefined) lo = 0;
    if (lo === hi) hi = lo === 0 ? 1 : lo + Math.abs(lo); // flat line: give it room
    const yTicks = niceTicks(lo, hi, Math.max(2, Math.floor((bottom - top) / 45)));
    const yLabels = siLabels(yTicks);
    const yLo = yTicks[0];
    const yHi = yTicks[yTicks.length - 1];
    const left = pad + Math.max(...yLabels.map((l) => textWidth(l, FONT.label))) + 8;
    const right = width - pad - 4;
    const yOf = (v: number) => bottom - ((v - yLo) / (yHi - yLo)) * (bottom - top);

    // x axis: the samples' time span; one instant gets an hour around it.
    if (t0 === t1) [t0, t1] = [t0 - 30 * 60_000, t1 + 30 * 60_000];
    const xOf = (t: number) => left + ((t - t0) / (t1 - t0)) * (right - left);
    const xTicks = timeTicks(t0, t1, right - left);

    out.push(text(pad, unitY, fit(spec.unit, width / 2, FONT.label), FONT.label, INK.axis, 'start'));
    for (const [i, v] of yTicks.entries()) {
      const y = crisp(yOf(v));
      out.push(`<line x1="${left}" y1="${y}" x2="${right}" y2="${y}" stroke="${INK.grid}"/>`);
      out.push(text(left - 6, yOf(v) + FONT.label / 3, yLabels[i], FONT.label, INK.axis, 'end'));
    }
    for (const tick of xTicks.ticks) {
      const x = crisp(xOf(tick.t));
      out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${bottom}" stroke="${INK.grid}"/>`);
      // Centred under its tick, but pushed inside the image at the edges.
      const half = textWidth(tick.label, FONT.label) / 2;
      const at = Math.min(Math.max(xOf(tick.t), half + 4), width - half - 4);
      out.push(text(at, bottom + FONT.label + 4, tick.label, FONT.label, INK.axis, 'middle'));
    }
    out.push(`<rect x="${left + 0.5}" y="${top + 0.5}" width="${right - left - 1}" height="${bottom - top - 1}" fill="none" stroke="${INK.frame}"/>`);

    // Lines, clipped to the plot; a sample alone between gaps is a dot, since a line needs two.
    out.push(`<clipPath id="plot"><rect x="${left}" y="${top - 2}" width="${right - left}" height="${bottom - top + 4}"/></clipPath>`);
    out.push('<g clip-path="url(#plot)" fill="none" stroke-width="1.75" stroke-linejoin="round" stroke-linecap="round">');
    for (const s of series) {
      const runs = splitRuns(s.points).map((run) => thin(run, xOf));
      const d = runs.filter((r) => r.length > 1).map((r) => 'M' + r.map(([t, v]) => `${num(xOf(t))},${num(yOf(v))}`).join('L')).join('');
      if (d) out.push(`<path d="${d}" stroke="${s.color}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
      for (const r of runs.filter((r) => r.length === 1)) {
        out.push(`<circle cx="${num(xOf(r[0][0]))}" cy="${num(yOf(r[0][1]))}" r="2.5" fill="${s.color}" stroke="none"/>`);
      }
    }
    out.push('</g>');
    if (samples.length === 1) {
      // A lone dot on an axis is hard to read off: say its value beside it.
      const [t, v] = samples[0];
      const label = `${siFormat(v)} ${spec.unit}`.trim();
      const x = xOf(t);
      const y = Math.max(yOf(v), top + FONT.label * 2);
      const roomRight = x + 6 + textWidth(label, FONT.label) <= right;
      out.push(text(roomRight ? x + 6 : x - 6, y - 6, label, FONT.label, INK.text, roomRight ? 'start' : 'end'));
    }
  }

  // Legend rows, left-aligned under the x tick labels.
  legend.forEach((row, i) => {
    const y = height - pad - legendHeight + i * (FONT.label + 6) + FONT.label;
    for (const item of row) {
      const dash = item.dash ? ` stroke-dasharray="4 2"` : '';
      out.push(`<line x1="${pad + item.x}" y1="${y - 4}" x2="${pad + item.x + 14}" y2="${y - 4}" stroke="${item.color}" stroke-width="3"${dash}/>`);
      out.push(text(pad + item.x + 19, y, item.label, FONT.label, INK.text, 'start'));
    }
  });

  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="${FONT_FAMILY}">${out.join('')}</svg>`
  );
}

function side(n: number, what: string): number {
  if (!Number.isInteger(n) || n < MIN_SIDE || n > MAX_SIDE) {
    throw new RangeError(`chart: ${what} must be a whole number of pixels from ${MIN_SIDE} to ${MAX_SIDE}, not ${n}`);
  }
  return n;
}

/** Sorted by time; non-finite values become gaps; points without a usable time are dropped. */
function clean(points: Array<[number, number | null]>): Array<[number, number | null]> {
  return points
    .filter(([t]) => Number.isFinite(t))
    .map(([t, v]): [number, number | null] => [t, typeof v === 'number' && Number.isFinite(v) ? v : null])
    .sort((a, b) => a[0] - b[0]);
}

/** The stretches of a series between its gaps. */
function splitRuns(points: Array<[number, number | null]>): Array<Array<[number, number]>> {
  const runs: Array<Array<[number, number]>> = [];
  let run: Array<[number, number]> = [];
  for (const [t, v] of points) {
    if (v === null) {
      if (run.length) runs.push(run);
      run = [];
    } else {
      run.push([t, v]);
    }
  }
  if (run.length) runs.push(run);
  return runs;
}

/**
 * More samples than pixels (a month of minutes): per pixel column keep the first, lowest, highest
 * and last sample, in time order, so that the drawing is the same and spikes survive.
 */
function thin(run: Array<[number, number]>, xOf: (t: number) => number): Array<[number, number]> {
  if (run.length < 2000) return run;
  const out: Array<[number, number]> = [];
  let column: Array<[number, number]> = [];
  const flush = () => {
    if (!column.length) return;
    const lo = column.reduce((a, b) => (b[1] < a[1] ? b : a));
    const hi = column.reduce((a, b) => (b[1] > a[1] ? b : a));
    const keep = new Set([column[0], lo, hi, column[column.length - 1]]);
    out.push(...column.filter((p) => keep.has(p)));
    column = [];
  };
  let x = NaN;
  for (const p of run) {
    const px = Math.floor(xOf(p[0]));
    if (px !== x) flush();
    x = px;
    column.push(p);
  }
  flush();
  return out;
}

/** Tick values: multiples of 1, 2, 2.5 or 5 × 10^n covering [lo, hi], at most `max` + 1 of them. */
export function niceTicks(lo: number, hi: number, max: number): number[] {
  const raw = (hi - lo) / max;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw * (1 - 1e-9)) ?? 10 * mag;
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const ticks: number[] = [];
  // Rounded to the step's precision, so that 0.1 + 0.2 prints as 0.3.
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 2);
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toFixed(digits)));
  return ticks;
}

const PREFIXES: Array<[number, string]> = [
  [1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k'], [1, ''], [1e-3, 'm'], [1e-6, 'µ'], [1e-9, 'n'],
];

/**
 * Axis labels with one SI prefix for all (the largest tick's) and as many decimals as the step
 * needs: 0, 0.5M, 1.0M, 1.5M; 0, 250, 500; 0, 2m, 4m.
 */
export function siLabels(ticks: number[]): string[] {
  const biggest = Math.max(...ticks.map(Math.abs));
  const [scale, prefix] = biggest === 0 ? [1, ''] : (PREFIXES.find(([s]) => biggest >= s) ?? PREFIXES[PREFIXES.length - 1]);
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) / scale : 1;
  let decimals = 0;
  while (decimals < 6 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) decimals++;
  return ticks.map((v) => (v === 0 ? '0' : `${(v / scale).toFixed(decimals)}${prefix}`));
}

/** One value with an SI prefix and three significant digits: 1.23k, 45.6M, 0.5. */
export function siFormat(value: number): string {
  if (value === 0 || !Number.isFinite(value)) return String(value);
  const [scale, prefix] = PREFIXES.find(([s]) => Math.abs(value) >= s) ?? PREFIXES[PREFIXES.length - 1];
  return `${Number((value / scale).toPrecision(3))}${prefix}`;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const FIXED_STEPS = [
  1, 2, 5, 10, 15, 30].map((n) => n * SECOND).concat(
  [1, 2, 5, 10, 15, 30].map((n) => n * MINUTE),
  [1, 2, 3, 6, 12].map((n) => n * HOUR),
  [1, 2, 7].map((n) => n * DAY),
);
const MONTH_STEPS = [1, 2, 3, 6, 12, 24, 60, 120, 240];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * Time ticks in UTC at round instants (whole minutes, hours, midnights, months) between t0 and t1,
 * spaced so that their labels do not collide: HH:MM (with :SS for second steps), the date where a
 * tick falls on midnight, dates for day steps, month and year for longer spans.
 */
export function timeTicks(t0: number, t1: number, pixels: number): { step: string; ticks: Array<{ t: number; label: string }> } {
  const span = t1 - t0;
  const fits = (step: number, labelWidth: number) => (span / step) * (labelWidth + 14) <= pixels;
  const fixed = FIXED_STEPS.find((s) => fits(s, s < MINUTE ? 50 : 36));
  const ticks: Array<{ t: number; label: string }> = [];
  if (fixed !== undefined) {
    // Weeks start on Monday: 1970-01-01 was a Thursday, 4 days before the Monday after it.
    const origin = fixed === 7 * DAY ? 4 * DAY : 0;
    for (let t = Math.ceil((t0 - origin) / fixed) * fixed + origin; t <= t1; t += fixed) {
      const d = new Date(t);
      const hm = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}`;
      const dayLabel = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
      let label: string;
      if (fixed >= DAY || (t % DAY === 0 && span > HOUR)) label = dayLabel;
      else if (fixed < MINUTE) label = `${hm}:${two(d.getUTCSeconds())}`;
      else label = hm;
      ticks.push({ t, label });
    }
    return { step: `${fixed / SECOND}s`, ticks };
  }
  const start = new Date(t0);
  const months = MONTH_STEPS.find((m) => fits(m * 30 * DAY, m >= 12 ? 30 : 52)) ?? MONTH_STEPS[MONTH_STEPS.length - 1];
  let index = start.getUTCFullYear() * 12 + start.getUTCMonth();
  index = Math.ceil(index / months) * months;
  for (;; index += months) {
    const t = Date.UTC(Math.floor(index / 12), index % 12, 1);
    if (t < t0) continue;
    if (t > t1) break;
    const year = Math.floor(index / 12);
    ticks.push({ t, label: months >= 12 ? String(year) : `${MONTHS[index % 12]} ${year}` });
  }
  return { step: `${months}mo`, ticks };
}

/** "2025-03-04 UTC" or "2025-03-04 – 2025-03-06 UTC": the date the HH:MM ticks belong to. */
function dateRange(t0: number, t1: number): string {
  const day = (t: number) => new Date(t).toISOString().slice(0, 10);
  return day(t0) === day(t1) ? `${day(t0)} UTC` : `${day(t0)} – ${day(t1)} UTC`;
}

function legendRows(series: Array<{ name: string; color: string; dash?: string }>, room: number) {
  const rows: Array<Array<{ x: number; label: string; color: string; dash?: string }>> = [];
  let row: Array<{ x: number; label: string; color: string; dash?: string }> = [];
  let x = 0;
  for (const s of series) {
    const label = fit(s.name, room / 2 - 19, FONT.label);
    const w = 19 + textWidth(label, FONT.label) + 16;
    if (row.length && x + w > room) {
      rows.push(row);
      row = [];
      x = 0;
    }
    row.push({ x, label, color: s.color, dash: s.dash });
    x += w;
  }
  if (row.length) rows.push(row);
  return rows.slice(0, 3); // more rows would crush the plot; colours repeat anyway
}

// ---------------------------------------------------------------------------------------------
// Text

/** Advance widths of DejaVu Sans in em (close enough to lay out; the renderer sets the text). */
function textWidth(s: string, size: number): number {
  let em = 0;
  for (const ch of s) {
    if (/[ilj.,:;'|!]/.test(ch)) em += 0.3;
    else if (/[ ()\[\]{}\/\\ft-]/.test(ch)) em += 0.4;
    else if (/[mwMW%@]/.test(ch)) em += 0.95;
    else if (/[A-Z]/.test(ch)) em += 0.72;
    else em += 0.64;
  }
  return em * size;
}

/** `s`, cut with an ellipsis to fit `room` pixels. */
function fit(s: string, room: number, size: number): string {
  const chars = [...clean1(s)];
  if (textWidth(chars.join(''), size) <= room) return chars.join('');
  while (chars.length && textWidth(chars.join('') + '…', size) > room) chars.pop();
  return chars.join('').trimEnd() + '…';
}

/** One line of text that XML accepts: controls and lone surrogates become spaces. */
function clean1(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, ' ');
}

function text(x: number, y: number, s: string, size: number, fill: string, anchor: 'start' | 'middle' | 'end'): string {
  const escaped = clean1(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return (
    `<text x="${num(x)}" y="${num(y)}" font-size="${size}" fill="${fill}" text-anchor="${anchor}" xml:space="preserve">${escaped}</text>`
  );
}

const two = (n: number) => String(n).padStart(2, '0');
const num = (n: number) => String(Math.round(n * 100) / 100);
/** 1-pixel lines on pixel centres stay sharp. */
const crisp = (n: number) => Math.round(n) + 0.5;
