#!/usr/bin/env node
// Cost of hostile mail for `mailagent run --print`: CPU time (user + system), peak RSS and reply
// size of dist/mailagent on the hostile and reader fixture corpora and on generated mail bombs.
// A report, not a test: exits 0 whatever the numbers (1 only if there is no binary).
//
//   node bench/hostile.mjs [--keep-env] [--bin PATH] [--callgrind NAME]
//
// Every input is one `dist/mailagent run --print --config <cfg> < input` under GNU
// `/usr/bin/time -f '%U %S %M'` (Debian package `time`): CPU s = %U + %S, peak RSS = %M, reply
// size = the bytes written to stdout. The config lives in a temp dir: agent@example.com, the only
// user ops@example.com (role admin, baseline evidence `allowlist`: no security.dkim), the demo
// SQLite database (examples/demo-db.mjs), state and audit in the temp dir, and rate limits high
// enough for every input to be answered. All runs share that state store (as a real host does),
// so each input gets a unique Message-ID and a Date of now; one unmeasured run first creates the
// store and unpacks the native addon.
//
// (1) corpus: every .eml in test/fixtures/hostile/ and test/fixtures/mail/, as is except Date
//     (now) and Message-ID (unique); {{OTP}}/{{TOKEN}} placeholders stay. Many of them are meant
//     to get no reply. Prints the count, and the worst CPU, worst peak RSS and largest reply with
//     the file that gave each.
// (2) bombs from ops@example.com, generated deterministically, at 1×, 4× and 16× of a base size
//     (BASE bytes of whole message, so that 16× stays under limits.maxMessageBytes = 10 MiB):
//       continuation        plain body of `db tables \` lines (every line continues)
//       invalid-lines       plain body of distinct invalid lines `frobnicate N`
//       nested-html         text/html only: nested <div>s, `db tables` at the innermost level
//       long-subject        a folded Subject header of that size, body `db tables`
//       long-references     a folded References header of <N@example.com> ids, body `db tables`
//       many-problems-html  text/html only: many <p>frobnicate N</p> paragraphs
//       base64-plain        base64 text/plain body of `db tables` lines (far over 50 commands)
//     Columns: message size, CPU s, peak RSS, reply size, growth = CPU(k×) / CPU(1×) (linear work
//     shows 4 and 16; start-up damps it), net = the same after subtracting the help mail's CPU
//     (shown when the 1× run is ≥ 0.05 s above it), and CPU as a multiple of the help mail's.
// (3) baselines in the same run: `node -e 0` and the binary answering examples/01-help.eml
//     (median of 5 runs each; everything else runs once).
// (4) goal, per row: answered (a reply on stdout, exit 0) within 2 s CPU, 200 MiB peak RSS and a
//     reply ≤ 1 MiB → ok, otherwise OVER. Sizes are binary: KiB, MiB. For the corpus, silence is
//     expected of many fixtures, so only the CPU / RSS / reply-size limits apply there.
//
// Each run is killed after 60 s (reported as "timeout >60 s"), so the bench always finishes.
//
// --callgrind NAME runs bomb NAME (e.g. nested-html) at 1× and the help mail under
//   `valgrind --tool=callgrind --callgrind-out-file=/dev/null` and prints the instructions
//   executed (Ir, from valgrind's "Collected : N"), a count that does not depend on machine load,
//   to compare CPU work between builds. Slow (the help mail alone takes ~15 s; up to 15 min per
//   run before it is killed); nothing else is measured in that mode.
//
// --bin PATH measures another executable (default dist/mailagent). The children run without
// NODE_EXTRA_CA_CERTS and NODE_OPTIONS unless --keep-env (see bench/startup.mjs for why).

import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  binaryPath, checkTools, childEnv, CRLF, fmtBytes, fmtCpu, fmtRss, footer, HELP_MAIL, KiB, mailHead, median,
  messageIds, MiB, openTempDir, restamp, ROOT, show, table, TIMEOUT_MS, valueOf, writeConfig,
} from './measure.mjs';

const MAX_MESSAGE_BYTES = 10 * MiB; // limits.maxMessageBytes default
const BASE = 640_000; // 16 × BASE = 10 240 000 bytes < 10 MiB
const SCALES = [1, 4, 16];
const CALLGRIND_TIMEOUT_MS = 15 * 60_000;
const BASELINE_RUNS = 5;
const GOAL = { cpu: 2, rssKiB: 200 * KiB, replyBytes: 1 * MiB };

const BIN = binaryPath();
const callgrindBomb = valueOf('--callgrind');
checkTools(BIN);
const { env, removed } = childEnv();

// ---------------------------------------------------------------- the temp dir and its config

const { dir, writeInput, runOnce, timed } = openTempDir('hostile', env);
const { createDemoDatabase } = await import('../examples/demo-db.mjs');
createDemoDatabase(join(dir, 'demo.db'));
// No `dkim`: the baseline is `allowlist`.
const config = writeConfig(dir, {
  services: { db: { default: 'inventory', databases: { inventory: { sqlite: { path: 'demo.db' } } } } },
});

// ---------------------------------------------------------------- the bombs (deterministic)

function message(name, scale, { headers = [], type = 'text/plain; charset=utf-8', encoding = '7bit', subject } = {}) {
  return mailHead({ tag: `${name}-${scale}x`, subject: subject ?? `bomb ${name} ${scale}x`, type, headers, after: [`Content-Transfer-Encoding: ${encoding}`] });
}

/** Lines line(0), line(1), … each + CRLF, as many as fit in budget bytes. */
function lines(budget, line) {
  const out = [];
  let used = 0;
  for (let i = 0; ; i++) {
    const l = line(i) + CRLF;
    if (used + l.length > budget) break;
    out.push(l);
    used += l.length;
  }
  return out.join('');
}

/** Words joined by spaces and folded (CRLF + space) so that no line passes 76 chars. */
function folded(budget, firstLineUsed, word) {
  const out = [];
  let used = 0;
  let col = firstLineUsed;
  for (let i = 0; ; i++) {
    const w = word(i);
    const sep = i === 0 ? '' : col + 1 + w.length > 76 ? CRLF + ' ' : ' ';
    if (used + sep.length + w.length > budget) break;
    out.push(sep, w);
    used += sep.length + w.length;
    col = sep === ' ' ? col + 1 + w.length : sep === '' ? col + w.length : 1 + w.length;
  }
  return out.join('');
}

/** Tags grouped per line, so the HTML source has lines of ≤ 76 chars. */
const tagLines = (tag, n) => {
  const per = Math.floor(76 / tag.length);
  const full = (tag.repeat(per) + CRLF).repeat(Math.floor(n / per));
  const rest = n % per ? tag.repeat(n % per) + CRLF : '';
  return full + rest;
};

const HTML = 'text/html; charset=utf-8';
const BOMBS = {
  continuation: (size, scale) => {
    const head = message('continuation', scale);
    return head + lines(size - head.length, () => 'db tables \\');
  },
  'invalid-lines': (size, scale) => {
    const head = message('invalid-lines', scale);
    return head + lines(size - head.length, (i) => `frobnicate ${i + 1}`);
  },
  'nested-html': (size, scale) => {
    const head = message('nested-html', scale, { type: HTML });
    const open = '<html><body>' + CRLF;
    const inner = 'db tables' + CRLF;
    const close = '</body></html>' + CRLF;
    let n = Math.floor((size - head.length - open.length - inner.length - close.length) / 11.3);
    for (;;) {
      const body = open + tagLines('<div>', n) + inner + tagLines('</div>', n) + close;
      if (head.length + body.length <= size) return head + body;
      n -= Math.ceil((head.length + body.length - size) / 11) + 1;
    }
  },
  'long-subject': (size, scale) => {
    const body = 'db tables' + CRLF;
    const rest = message('long-subject', scale, { subject: '' }) + body;
    const text = folded(size - rest.length, 'Subject: '.length, (i) => `word${i + 1}`);
    return message('long-subject', scale, { subject: text }) + body;
  },
  'long-references': (size, scale) => {
    const body = 'db tables' + CRLF;
    const rest = message('long-references', scale, { headers: ['References: '] }) + body;
    const ids = folded(size - rest.length, 'References: '.length, (i) => `<${i + 1}@example.com>`);
    return message('long-references', scale, { headers: [`References: ${ids}`] }) + body;
  },
  'many-problems-html': (size, scale) => {
    const head = message('many-problems-html', scale, { type: HTML });
    const open = '<html><body>' + CRLF;
    const close = '</body></html>' + CRLF;
    return head + open + lines(size - head.length - open.length - close.length, (i) => `<p>frobnicate ${i + 1}</p>`) + close;
  },
  'base64-plain': (size, scale) => {
    const head = message('base64-plain', scale, { encoding: 'base64' });
    // 57 bytes of text → one 76-char base64 line + CRLF (78 bytes).
    const text = Buffer.from(lines(Math.floor(((size - head.length) / 78) * 57), () => 'db tables'));
    const b64 = (text.toString('base64').match(/.{1,76}/g) ?? []).join(CRLF) + CRLF;
    return head + b64;
  },
};

if (callgrindBomb !== undefined && !BOMBS[callgrindBomb]) {
  console.error(`bench: --callgrind: no bomb "${callgrindBomb}"; one of ${Object.keys(BOMBS).join(', ')}`);
  process.exit(1);
}

// ---------------------------------------------------------------- running

const auditFile = join(dir, 'state', 'audit.jsonl');

const auditSize = () => (existsSync(auditFile) ? statSync(auditFile).size : 0);

/** decision and reason of the newest audit record (read from the tail: the file can be large). */
function lastAudit() {
  const size = auditSize();
  if (!size) return undefined;
  const buf = Buffer.alloc(Math.min(size, 64 * KiB));
  const fd = openSync(auditFile, 'r');
  readSync(fd, buf, 0, buf.length, size - buf.length);
  closeSync(fd);
  try {
    const rec = JSON.parse(buf.toString('utf8').trimEnd().split('\n').at(-1));
    return [rec.decision, rec.reason].filter(Boolean).join(': ').slice(0, 100);
  } catch {
    return undefined;
  }
}

/** One `run --print` of file; `audit` is the record it wrote (the log grew or was rotated). */
async function runMailagent(file) {
  const before = auditSize();
  const r = await timed(BIN, ['run', '--print', '--config', config], file);
  return { ...r, audit: auditSize() !== before ? lastAudit() : undefined };
}

/** n runs (each with a fresh input); median CPU and RSS, the last run's other fields. */
async function baseline(n, run) {
  const all = [];
  for (let i = 0; i < n; i++) all.push(await run());
  const bad = all.find((r) => r.failed);
  if (bad) return bad;
  return { ...all.at(-1), cpu: median(all.map((r) => r.cpu)), rssKiB: median(all.map((r) => r.rssKiB)) };
}

const helpInput = () => writeInput(`help-${messageIds() + 1}.eml`, restamp(readFileSync(HELP_MAIL), 'help'));
const bombInput = (name, scale) => writeInput(`${name}-${scale}x.eml`, Buffer.from(BOMBS[name](BASE * scale, scale), 'latin1'));

// ---------------------------------------------------------------- formatting

const fmtReply = (r) => (r.replyBytes === undefined ? '-' : (r.replyBytes / KiB).toFixed(1));
const ratio = (a, b) => (a !== undefined && b ? `${(a / b).toFixed(1)}×` : '-');

/** ok / OVER against the goal; needReply: silence counts as OVER. */
function verdict(r, needReply = true) {
  if (r.timedOut) return `OVER (${r.failed})`;
  if (r.failed) return `FAIL (${r.failed})`;
  const over = [];
  if (r.cpu > GOAL.cpu) over.push('cpu');
  if (r.rssKiB > GOAL.rssKiB) over.push('rss');
  if (r.replyBytes > GOAL.replyBytes) over.push('reply');
  if (needReply && !r.replied) over.push(r.audit ? `no reply, audit: ${r.audit}` : 'no reply');
  return over.length ? `OVER (${over.join(', ')})` : 'ok';
}

// ---------------------------------------------------------------- warm-up: creates the state store

const warm = await runMailagent(helpInput());
if (warm.failed || !warm.replied) {
  console.log(`bench: ${show(BIN)} does not answer the help mail (${warm.failed ?? 'no reply on stdout'}): ${warm.stderr.trim().split('\n')[0] ?? ''}`);
  console.log('nothing measured');
  process.exit(0);
}

// ---------------------------------------------------------------- --callgrind NAME

if (callgrindBomb !== undefined) {
  if (spawnSync('valgrind', ['--version']).status !== 0) {
    console.log('bench: valgrind not found: install the Debian package `valgrind`; nothing measured');
    process.exit(0);
  }
  const grind = async (label, file) => {
    const r = await runOnce(['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null'], BIN, ['run', '--print', '--config', config], file, CALLGRIND_TIMEOUT_MS);
    const m = /Collected\s*:\s*(\d+)/.exec(r.stderr);
    const why = r.timedOut ? `timeout >${CALLGRIND_TIMEOUT_MS / 1000} s` : r.error ? r.error.message : r.status !== 0 ? `exit ${r.status}` : !m ? 'no "Collected" line' : undefined;
    return { label, ir: m ? Number(m[1]) : undefined, why, replied: r.replied, replyBytes: r.replyBytes };
  };
  const rows = [await grind('help mail (examples/01-help.eml)', helpInput()), await grind(`${callgrindBomb} 1× (${fmtBytes(BASE)})`, bombInput(callgrindBomb, 1))];
  console.log(`callgrind, instructions executed (Ir) by ${show(BIN)} run --print (node ${process.version})`);
  table(
    [
      ['input', 'Ir', 'vs help', 'reply KiB', 'note'],
      ...rows.map((r) => [r.label, r.ir?.toLocaleString('en-US') ?? '-', ratio(r.ir, rows[0].ir), (r.replyBytes / KiB).toFixed(1), r.why ?? (r.replied ? '' : 'no reply')]),
    ],
    [1, 2, 3],
  );
  process.exit(0);
}

// ---------------------------------------------------------------- (3) baselines

const nodeBase = await baseline(BASELINE_RUNS, () => timed(process.execPath, ['-e', '0']));
const helpBase = await baseline(BASELINE_RUNS, () => runMailagent(helpInput()));

// ---------------------------------------------------------------- (1) corpus

const corpusDirs = ['test/fixtures/hostile', 'test/fixtures/mail'];
const corpus = [];
for (const d of corpusDirs) {
  for (const f of readdirSync(join(ROOT, d)).filter((f) => f.endsWith('.eml')).sort()) {
    const file = join(ROOT, d, f);
    const r = await runMailagent(writeInput(`corpus-${basename(d)}-${f}`, restamp(readFileSync(file), f)));
    corpus.push({ ...r, file: `${d}/${f}` });
  }
}

// ---------------------------------------------------------------- (2) bombs

const bombs = [];
for (const name of Object.keys(BOMBS)) {
  for (const scale of SCALES) {
    const file = bombInput(name, scale);
    const size = statSync(file).size;
    if (size > MAX_MESSAGE_BYTES) throw new Error(`${name} ${scale}×: ${size} bytes, over limits.maxMessageBytes`);
    bombs.push({ name, scale, size, ...(await runMailagent(file)) });
    rmSync(file);
  }
}

// ---------------------------------------------------------------- report

console.log(`hostile mail: ${show(BIN)} run --print, CPU = user + system (GNU time), node ${process.version}`);
console.log(
  `goal: every input up to limits.maxMessageBytes (${fmtBytes(MAX_MESSAGE_BYTES)}) answered within ${GOAL.cpu} s CPU, ` +
    `${GOAL.rssKiB / KiB} MiB peak RSS, reply ≤ ${fmtBytes(GOAL.replyBytes)}`,
);
console.log();
console.log(`baselines (median of ${BASELINE_RUNS} runs)`);
table(
  [
    ['command', 'CPU s', 'peak RSS MiB', 'reply KiB', 'result'],
    ['node -e 0', fmtCpu(nodeBase), fmtRss(nodeBase), '-', nodeBase.failed ? `FAIL (${nodeBase.failed})` : ''],
    [`mailagent < ${show(HELP_MAIL)}`, fmtCpu(helpBase), fmtRss(helpBase), fmtReply(helpBase), verdict(helpBase)],
  ],
  [1, 2, 3],
);

console.log();
const replied = corpus.filter((r) => r.replied).length;
const failed = corpus.filter((r) => r.failed);
console.log(
  `corpus: ${corpus.length} files in ${corpusDirs.join(', ')} (Date = now, unique Message-ID): ` +
    `${replied} answered, ${corpus.length - replied - failed.length} silent${failed.length ? `, ${failed.length} failed` : ''}`,
);
const worst = (key) => corpus.filter((r) => r[key] !== undefined).reduce((a, b) => (b[key] > a[key] ? b : a), { [key]: -1 });
const corpusRows = [['worst', 'CPU s', 'peak RSS MiB', 'reply KiB', 'file', 'result']];
for (const [label, key] of [
  ['CPU', 'cpu'],
  ['peak RSS', 'rssKiB'],
  ['reply', 'replyBytes'],
]) {
  const r = worst(key);
  if (r.file) corpusRows.push([label, fmtCpu(r), fmtRss(r), fmtReply(r), r.file, verdict(r, false)]);
}
table(corpusRows, [1, 2, 3]);
for (const r of failed) console.log(`  ${r.file}: ${r.failed}`);

console.log();
console.log(`bombs from ops@example.com, 1× = ${fmtBytes(BASE)} (${BASE} bytes of message); growth = CPU / CPU(1×), net = the same minus the help mail's CPU`);
const bombRows = [['bomb', 'size', 'CPU s', 'peak RSS MiB', 'reply KiB', 'growth', 'net', 'vs help', 'result']];
for (const b of bombs) {
  const one = bombs.find((x) => x.name === b.name && x.scale === 1);
  const growth = b.scale === 1 || b.cpu === undefined ? '' : ratio(b.cpu, one.cpu);
  const netBase = one.cpu !== undefined ? one.cpu - helpBase.cpu : undefined;
  const net = b.scale === 1 || b.cpu === undefined || !(netBase >= 0.05) ? '' : `${((b.cpu - helpBase.cpu) / netBase).toFixed(1)}×`;
  bombRows.push([
    b.scale === 1 ? b.name : '',
    `${b.scale}× ${fmtBytes(b.size)}`,
    b.timedOut ? `>${TIMEOUT_MS / 1000}` : fmtCpu(b),
    fmtRss(b),
    fmtReply(b),
    growth,
    net,
    ratio(b.cpu, helpBase.cpu),
    verdict(b),
  ]);
}
table(bombRows, [2, 3, 4, 5, 6, 7]);
const over = bombs.filter((b) => verdict(b) !== 'ok').length + corpusRows.slice(1).filter((r) => r.at(-1) !== 'ok').length;
footer(over, removed);
