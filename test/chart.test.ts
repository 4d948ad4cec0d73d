import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  CHART_COLORS,
  type ChartSpec,
  niceTicks,
  renderChartPng,
  renderChartSvg,
  siFormat,
  siLabels,
  timeTicks,
} from '../src/render/chart';

const ROOT = resolve(__dirname, '..');
const T0 = Date.UTC(2025, 2, 4, 9, 0); // 2025-03-04 09:00 UTC
const MIN = 60_000;

/** `n` samples every `step` ms from T0, valued by `f` (null: a gap). */
function samples(n: number, f: (i: number) => number | null, step = 5 * MIN): Array<[number, number | null]> {
  return Array.from({ length: n }, (_, i) => [T0 + i * step, f(i)]);
}

import { decodePng, type Image } from './support/png';

const hex = (color: string): [number, number, number] => [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16)) as [number, number, number];

/** Pixels within the box (default: all) whose colour is `color`, give or take anti-aliasing. */
function countColor(img: Image, color: string, box = { x0: 0, y0: 0, x1: img.width, y1: img.height }): number {
  const [r, g, b] = hex(color);
  let n = 0;
  for (let y = box.y0; y < box.y1; y++) {
    for (let x = box.x0; x < box.x1; x++) {
      const [pr, pg, pb] = img.rgb(x, y);
      if (Math.abs(pr - r) + Math.abs(pg - g) + Math.abs(pb - b) <= 36) n++;
    }
  }
  return n;
}

function distinctColors(img: Image): number {
  const seen = new Set<string>();
  for (let y = 0; y < img.height; y += 2) for (let x = 0; x < img.width; x += 2) seen.add(img.rgb(x, y).join());
  return seen.size;
}

/** Above the legend: where only the lines can have the series' colours. */
const plotBox = (img: Image) => ({ x0: 0, y0: 0, x1: img.width, y1: img.height - 45 });

const traffic: ChartSpec = {
  title: 'ge-0/0/1 traffic',
  unit: 'bit/s',
  series: [
    { name: 'in', points: samples(72, (i) => 4e8 + 3e8 * Math.sin(i / 8)) },
    { name: 'out', points: samples(72, (i) => 1.2e8 + 8e7 * Math.cos(i / 10)) },
  ],
};

// --- The PNG ---

test('a PNG of exactly the requested size (640×320 by default)', async () => {
  const img = decodePng(await renderChartPng(traffic));
  assert.is(img.width, 640);
  assert.is(img.height, 320);
  for (const [width, height] of [[800, 400], [333, 201], [160, 160]]) {
    const other = decodePng(await renderChartPng({ ...traffic, width, height }));
    assert.equal([other.width, other.height], [width, height]);
  }
  // Ten series in the smallest image: the plot keeps its room, the legend gives way.
  const ten = Array.from({ length: 10 }, (_, k) => ({ name: `Gi0/${k} uplink`, points: samples(20, (i) => k * i) }));
  const small = decodePng(await renderChartPng({ ...traffic, series: ten, width: 160, height: 160 }));
  assert.equal([small.width, small.height], [160, 160]);
  assert.match(renderChartSvg({ ...traffic, series: ten, width: 640, height: 320 }), />Gi0\/9 uplink</);
});

test('the chart is drawn: many colours, the series line, dark text on white', async () => {
  const img = decodePng(await renderChartPng({ ...traffic, series: [traffic.series[0]] }));
  assert.ok(distinctColors(img) > 20, `only ${distinctColors(img)} colours`);
  assert.equal(img.rgb(1, 1), [255, 255, 255], 'white background');
  assert.ok(countColor(img, CHART_COLORS[0], plotBox(img)) > 200, 'line pixels of the first series colour');
  assert.ok(countColor(img, '#222222', { x0: 0, y0: 0, x1: 320, y1: 30 }) > 20, 'title text');
});

test('two series: both colours in the plot; one series: only the first', async () => {
  const two = decodePng(await renderChartPng(traffic));
  assert.ok(countColor(two, CHART_COLORS[0], plotBox(two)) > 200, 'first series');
  assert.ok(countColor(two, CHART_COLORS[1], plotBox(two)) > 200, 'second series');
  const one = decodePng(await renderChartPng({ ...traffic, series: [traffic.series[0]] }));
  assert.is(countColor(one, CHART_COLORS[1]), 0, 'a colour nobody uses');
});

test('a legend names the series when there are several, not for one', async () => {
  const svg = renderChartSvg({ ...traffic, series: [{ name: 'uplink <a&b>', points: traffic.series[0].points }, traffic.series[1]] });
  assert.match(svg, />uplink &lt;a&amp;b&gt;</);
  assert.match(svg, />out</);
  const legend = (img: Image) => countColor(img, CHART_COLORS[1], { x0: 0, y0: img.height - 20, x1: 120, y1: img.height });
  assert.ok(legend(decodePng(await renderChartPng(traffic))) > 10, 'swatch of the second series in the legend');
  assert.not.match(renderChartSvg({ ...traffic, series: [traffic.series[0]] }), />in</);
});

test('a null breaks the line: no line pixels over the gap', async () => {
  // 100 samples, none from 40 to 60: the middle fifth of the plot stays empty.
  const gap = { ...traffic, series: [{ name: 'in', points: samples(100, (i) => (i >= 40 && i <= 60 ? null : 1e6 + 1e5 * (i % 5))) }] };
  const withGap = decodePng(await renderChartPng(gap));
  const middle = { x0: 300, y0: 40, x1: 370, y1: withGap.height - 45 };
  assert.is(countColor(withGap, CHART_COLORS[0], middle), 0, 'pixels in the gap');
  assert.ok(countColor(withGap, CHART_COLORS[0], plotBox(withGap)) > 100, 'the line on either side');
  const noGap = decodePng(await renderChartPng({ ...gap, series: [{ name: 'in', points: samples(100, (i) => 1e6 + 1e5 * (i % 5)) }] }));
  assert.ok(countColor(noGap, CHART_COLORS[0], middle) > 20, 'the same place without the gap has the line');
  const paths = renderChartSvg(gap).match(/<path d="[^"]*"/g) ?? [];
  assert.is(paths.length, 1);
  assert.is((paths[0] ?? '').split('M').length - 1, 2, 'two subpaths');
});

test('no samples: a framed empty chart that says so', async () => {
  for (const series of [[], [{ name: 'x', points: [] }], [{ name: 'x', points: samples(5, () => null) }]]) {
    const spec = { title: 'Empty', unit: 'ms', series };
    const img = decodePng(await renderChartPng(spec));
    assert.equal([img.width, img.height], [640, 320]);
    assert.match(renderChartSvg(spec), />no samples</);
    assert.ok(countColor(img, '#777777', { x0: 250, y0: 140, x1: 390, y1: 190 }) > 20, 'the text is drawn');
  }
  assert.not.match(renderChartSvg(traffic), /no samples/);
});

test('one sample: a dot with its value, on an hour around it', async () => {
  const spec = { title: 'One', unit: 'ms', series: [{ name: 'rtt', points: [[T0, 12.5]] as Array<[number, number]> }] };
  const img = decodePng(await renderChartPng(spec));
  assert.ok(countColor(img, CHART_COLORS[0], plotBox(img)) >= 9, 'the dot');
  const svg = renderChartSvg(spec);
  assert.match(svg, />12\.5 ms</);
  assert.match(svg, />08:30</);
  assert.match(svg, />09:30</);
});

test('values that are not numbers are gaps; unsorted samples are sorted; huge series render', async () => {
  const svg = renderChartSvg({ title: 't', unit: '', series: [{ name: 'a', points: [[T0 + 2 * MIN, 2], [T0, 1], [T0 + MIN, NaN], [T0 + 3 * MIN, 3]] }] });
  const line = (svg.match(/<path d="([^"]*)"/) ?? [])[1] ?? '';
  assert.is(line.split('M').length - 1, 1, 'one line: 2 to 3');
  assert.is(svg.match(/<circle /g)?.length, 1, 'one dot: the sample alone before the gap');
  // A month of minutes: no stack overflow, and thinned to about four points per pixel column.
  const big: ChartSpec = { title: 'Month', unit: 'bit/s', series: [{ name: 'in', points: samples(43_200, (i) => (i * 7919) % 1000, MIN) }] };
  const path = (renderChartSvg(big).match(/<path d="([^"]*)"/) ?? [])[1] ?? '';
  assert.ok(path.split('L').length < 4 * 640, `${path.split('L').length} points drawn`);
  const img = decodePng(await renderChartPng(big));
  assert.equal([img.width, img.height], [640, 320]);
});

test('sizes out of range are refused', async () => {
  for (const width of [0, 100, 640.5, 5000, NaN]) {
    await renderChartPng({ ...traffic, width }).then(
      () => assert.unreachable(`width ${width}`),
      (err: Error) => assert.instance(err, RangeError),
    );
  }
});

// --- Axes ---

test('y ticks are round numbers with one SI prefix', () => {
  assert.equal(niceTicks(0, 7.3e8, 5), [0, 2e8, 4e8, 6e8, 8e8]);
  assert.equal(niceTicks(0, 0.3, 6), [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]);
  assert.equal(niceTicks(99, 100, 5), [99, 99.2, 99.4, 99.6, 99.8, 100]);
  assert.equal(siLabels([0, 5e5, 1e6, 1.5e6]), ['0', '0.5M', '1.0M', '1.5M']);
  assert.equal(siLabels([0, 2e8, 4e8, 8e8]), ['0', '200M', '400M', '800M']);
  assert.equal(siLabels([0, 250, 500]), ['0', '250', '500']);
  assert.equal(siLabels([0, 1000, 2000]), ['0', '1k', '2k']);
  assert.equal(siLabels([0, 0.002, 0.004]), ['0', '2m', '4m']);
  assert.equal(siLabels([-70, -60, -50]), ['-70', '-60', '-50']);
  assert.is(siFormat(1234), '1.23k');
  assert.is(siFormat(3.4e6), '3.4M');
  assert.is(siFormat(0.5), '500m');
});

test('the y axis starts at 0 for non-negative data, fits negative data, and honours yMin/yMax', () => {
  const yLabels = (spec: ChartSpec) => [...renderChartSvg(spec).matchAll(/text-anchor="end"[^>]*>([^<]*)</g)].map((m) => m[1]).filter((l) => !/UTC/.test(l));
  assert.equal(yLabels(traffic), ['0', '200M', '400M', '600M', '800M']);
  const slow = { title: 'rtt', unit: 'ms', series: [{ name: 'a', points: samples(10, (i) => 500 + 10 * i) }] };
  assert.equal(yLabels(slow)[0], '0');
  const dbm = { title: 'rx', unit: 'dBm', series: [{ name: 'a', points: samples(10, (i) => -60 - i) }] };
  assert.equal(yLabels(dbm)[0], '-70');
  assert.equal(yLabels(dbm).at(-1), '-60');
  const avail = { title: 'a', unit: '%', yMin: 99, yMax: 100, series: [{ name: 'a', points: samples(10, (i) => 99.5 + i / 20) }] };
  assert.equal(yLabels(avail)[0], '99.0');
  assert.equal(yLabels(avail).at(-1), '100.0');
});

test('time ticks: HH:MM in UTC within a day, dates over days, months over months', () => {
  const hours = timeTicks(T0, T0 + 6 * 60 * MIN, 560);
  assert.equal(hours.ticks.map((t) => t.label), ['09:00', '10:00', '11:00', '12:00', '13:00', '14:00', '15:00']);
  const overMidnight = timeTicks(Date.UTC(2025, 2, 4, 20), Date.UTC(2025, 2, 5, 4), 560);
  assert.ok(overMidnight.ticks.some((t) => t.label === 'Mar 5'), 'midnight is labelled with its date');
  assert.ok(overMidnight.ticks.some((t) => t.label === '02:00'));
  const week = timeTicks(Date.UTC(2025, 2, 4), Date.UTC(2025, 2, 11), 560);
  assert.equal(week.ticks.map((t) => t.label), ['Mar 4', 'Mar 5', 'Mar 6', 'Mar 7', 'Mar 8', 'Mar 9', 'Mar 10', 'Mar 11']);
  const quarter = timeTicks(Date.UTC(2025, 0, 15), Date.UTC(2025, 4, 15), 560);
  assert.ok(quarter.ticks.length >= 4, JSON.stringify(quarter.ticks));
  assert.ok(quarter.ticks.every((t) => new Date(t.t).getUTCHours() === 0), 'ticks at UTC midnights');
  const minutes = timeTicks(T0, T0 + 3 * MIN, 560);
  assert.ok(minutes.ticks.length >= 4 && minutes.ticks.every((t) => /^\d\d:\d\d(:\d\d)?$/.test(t.label)), JSON.stringify(minutes.ticks));
  // Labels must not collide: at most one per ~50 pixels.
  for (const span of [MIN, 90 * MIN, 26 * 60 * MIN, 40 * 24 * 60 * MIN, 3 * 365 * 24 * 60 * MIN]) {
    const n = timeTicks(T0, T0 + span, 560).ticks.length;
    assert.ok(n >= 2 && n <= 12, `${n} ticks for a span of ${span / MIN} minutes`);
  }
});

test('the chart says its time zone and dates', () => {
  assert.match(renderChartSvg(traffic), />2025-03-04 UTC</);
  const twoDays = { ...traffic, series: [{ name: 'a', points: samples(30, () => 1, 60 * MIN) }] };
  assert.match(renderChartSvg(twoDays), />2025-03-04 – 2025-03-05 UTC</);
});

// --- Loading ---

test('importing the module loads neither the renderer nor its WebAssembly', () => {
  const script =
    "require('./src/render/chart');" +
    "const loaded = Object.keys(require.cache).filter((f) => /resvg/.test(f));" +
    'console.log(JSON.stringify(loaded));';
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  assert.is(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout.trim()), []);
});

test('the single executable renders charts with no node_modules and no system fonts around', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailagent-chart-'));
  try {
    const entry = join(dir, 'entry.ts');
    writeFileSync(
      entry,
      `import { writeFileSync } from 'node:fs';
      import { renderChartPng } from ${JSON.stringify(join(ROOT, 'src', 'render', 'chart'))};
      const spec = JSON.parse(process.argv[2]);
      renderChartPng(spec).then((png) => writeFileSync(process.argv[3], png), (err) => { console.error(err); process.exit(1); });`,
    );
    const out = join(dir, 'build', 'chart-smoke');
    const built = spawnSync(process.execPath, ['build.mjs', '--entry', entry, '--out', out], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    assert.is(built.status, 0, `${built.stdout}${built.stderr}`);
    // Run it elsewhere: an empty directory, a bare environment, fontconfig pointed at nothing.
    const run = join(dir, 'run');
    mkdirSync(run);
    const png = join(run, 'chart.png');
    const r = spawnSync(out, [JSON.stringify(traffic), png], {
      cwd: run,
      env: { PATH: '/usr/bin:/bin', HOME: run, FONTCONFIG_FILE: '/nonexistent' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.is(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.ok(existsSync(png), 'no PNG written');
    const img = decodePng(readFileSync(png));
    assert.equal([img.width, img.height], [640, 320]);
    assert.ok(countColor(img, CHART_COLORS[0], plotBox(img)) > 200, 'first series');
    assert.ok(countColor(img, CHART_COLORS[1], plotBox(img)) > 200, 'second series');
    assert.ok(countColor(img, '#222222', { x0: 0, y0: 0, x1: 320, y1: 30 }) > 20, 'title text, from the embedded font');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
