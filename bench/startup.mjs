#!/usr/bin/env node
// Start-up report for the single executable: median wall time of dist/mailagent against a bare
// `node -e 0`. A report, not a test: exits 0 whatever the numbers (1 only if there is no binary).
//
//   node bench/startup.mjs [--keep-env] [--rounds N] [--bin PATH]... [MAIL]
//
// MAIL defaults to examples/01-help.eml, PATH to dist/mailagent. Several --bin compare builds
// (e.g. a copy of the previous one) in the same interleaved runs, which a noisy machine needs.
//
// --rounds N repeats the whole measurement N times (the machine may be shared and noisy): the
// ratio is then the median of the rounds' ratios, and the range column shows their spread.
//
// The children run without NODE_EXTRA_CA_CERTS and NODE_OPTIONS unless --keep-env: a CA bundle in
// NODE_EXTRA_CA_CERTS is parsed at every node start (~40 ms for a distribution bundle), which
// inflates both sides of the ratio and hides the cost of the program itself.

import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = 20;
const WARMUPS = 2;

const argv = process.argv.slice(2);
const follows = (flag) => (_arg, i) => argv[i - 1] === flag;
if (argv.at(-1) === '--bin') {
  console.error('bench: --bin needs the path of an executable');
  process.exit(1);
}
const BINS = argv.filter(follows('--bin')).map((p) => resolve(p));
if (!BINS.length) BINS.push(join(ROOT, 'dist', 'mailagent'));
for (const bin of BINS) {
  if (!existsSync(bin)) {
    console.error(`bench: ${relative(process.cwd(), bin)} not found: run \`npm run build\` first`);
    process.exit(1);
  }
}

const keepEnv = argv.includes('--keep-env');
const roundsAt = argv.indexOf('--rounds');
const ROUNDS = roundsAt >= 0 ? Number(argv[roundsAt + 1]) : 1;
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) {
  console.error('bench: --rounds needs a whole number ≥ 1');
  process.exit(1);
}
const mailArg = argv.find((a, i) => !a.startsWith('--') && argv[i - 1] !== '--rounds' && argv[i - 1] !== '--bin');
const mail = resolve(mailArg ?? join(ROOT, 'examples', '01-help.eml'));
const DISTORTING = ['NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS'];
const removed = keepEnv ? [] : DISTORTING.filter((k) => process.env[k] !== undefined);
const env = { ...process.env };
for (const k of removed) delete env[k];
const config = join(ROOT, 'config.example.json');
const show = (p) => {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
};

/** One timed run; throws with the reason if the command did not succeed. */
function once({ cmd, args, stdinFile, needOutput }) {
  const stdin = stdinFile ? openSync(stdinFile, 'r') : 'ignore';
  try {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, args, { cwd: ROOT, env, stdio: [stdin, 'pipe', 'pipe'], maxBuffer: 64 << 20 });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.error) throw r.error;
    if (r.status !== 0) {
      const why = String(r.stderr).trim().split('\n')[0] || 'no message';
      throw new Error(`${r.signal ?? `exit ${r.status}`}: ${why}`);
    }
    // A stale Date or an unknown sender gives silence: only a real reply counts as a run.
    if (needOutput && !/^In-Reply-To: /m.test(String(r.stdout))) throw new Error('no reply on stdout');
    return ms;
  } finally {
    if (typeof stdin === 'number') closeSync(stdin);
  }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Round-robin over the cases, so that a change in machine load hits every row alike. */
function measureAll(cases) {
  const state = cases.map((c) => (c.skip ? { ...c, skipped: c.skip } : { ...c, times: [] }));
  for (let i = 0; i < WARMUPS + RUNS; i++) {
    for (const s of state) {
      if (!s.times) continue;
      try {
        const ms = once(s);
        if (i >= WARMUPS) s.times.push(ms);
      } catch (err) {
        s.failed = err.message;
        delete s.times;
      }
    }
  }
  return state.map((s) => (s.times ? { ...s, ms: median(s.times) } : s));
}

const missing = [!existsSync(mail) && `no ${show(mail)}`, !existsSync(config) && `no ${show(config)}`].filter(Boolean);
// The sample's Date must fall inside the replay window, or the agent stays silent.
const stampDir = mkdtempSync(join(tmpdir(), 'mailagent-bench-'));
const stamped = join(stampDir, 'mail.eml');
if (!missing.length) {
  writeFileSync(stamped, readFileSync(mail, 'latin1').replace(/^Date: .*$/m, `Date: ${new Date().toUTCString()}`), 'latin1');
}
process.on('exit', () => rmSync(stampDir, { recursive: true, force: true }));
const cases = [
  { label: 'node -e 0', cmd: process.execPath, args: ['-e', '0'] },
  ...BINS.flatMap((bin) => {
    const name = BINS.length > 1 ? show(bin) : 'mailagent';
    return [
      { label: `${name} --help`, cmd: bin, args: ['--help'], goal: 1.8 },
      {
        label: `${name} run --print < ${show(mail)}`,
        cmd: bin,
        args: ['run', '--print', '--config', config],
        stdinFile: stamped,
        needOutput: true,
        goal: 2.5,
        skip: missing.length ? `skipped: ${missing.join(', ')}` : undefined,
      },
    ];
  }),
];

/** Each round measures every case; a case that fails once counts as failed. */
const rounds = Array.from({ length: ROUNDS }, () => measureAll(cases));
const results = cases.map((c, i) => {
  const all = rounds.map((round) => round[i]);
  const bad = all.find((r) => r.ms === undefined);
  if (bad) return bad;
  const ratios = rounds.map((round) => (round[0].ms ? round[i].ms / round[0].ms : NaN));
  return { ...all[0], ms: median(all.map((r) => r.ms)), ratio: median(ratios), low: Math.min(...ratios), high: Math.max(...ratios) };
});
const rows = [['command', 'median ms', 'ratio', ...(ROUNDS > 1 ? ['range'] : []), 'goal', 'result']];
for (const r of results) {
  const range = (text) => (ROUNDS > 1 ? [text] : []);
  if (r.ms === undefined) {
    rows.push([r.label, '-', '-', ...range('-'), r.goal ? `≤ ${r.goal}×` : '', r.skipped ?? `FAIL (${r.failed})`]);
    continue;
  }
  rows.push([
    r.label,
    r.ms.toFixed(1),
    r === results[0] ? '1.00×' : `${r.ratio.toFixed(2)}×`,
    ...range(r === results[0] ? '' : `${r.low.toFixed(2)}–${r.high.toFixed(2)}×`),
    r.goal ? `≤ ${r.goal}×` : '',
    r.goal ? (r.ratio <= r.goal ? 'PASS' : 'MISS') : '',
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
const line = (row) =>
  row
    .map((cell, i) => (i === 1 || i === 2 ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
    .join('  ')
    .trimEnd();
console.log(
  `startup, median of ${RUNS} interleaved runs after ${WARMUPS} warm-ups${ROUNDS > 1 ? `, ${ROUNDS} rounds` : ''} (node ${process.version})`,
);
console.log(line(rows[0]));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const row of rows.slice(1)) console.log(line(row));
if (removed.length) console.log(`(ran without ${removed.join(', ')} from this environment; --keep-env to keep them)`);
