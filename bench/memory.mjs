#!/usr/bin/env node
// Peak memory of `mailagent run --print --config config.example.json` on a large request mail.
// A report, not a test: exits 0 whatever the numbers (1 only if there is no binary).
//
//   node bench/memory.mjs [--keep-env] [--bin PATH]
//
// The config is config.example.json as shipped (copied byte for byte into a temp dir, with the
// demo database at its var/demo.db), so the default limits apply: limits.maxMessageBytes is 10 MiB
// and a larger message is answered "message too large" from its header alone: the memory is then
// mostly the message as read from stdin (an MTA hands over whatever arrives).
//
// Every input is one run under GNU `/usr/bin/time -f '%U %S %M'` (Debian package `time`; see
// bench/measure.mjs): peak RSS = %M, the maximum resident size of the child. Each row runs RUNS
// (3) times: peak RSS = the maximum, CPU = the median.
//
// (1) the goal: a 25 MiB request mail from ops@example.com, multipart/mixed: a text/plain part
//     `db tables` and a base64 attachment (76-char lines) filling the rest, about 18.3 MiB of
//     deterministic bytes. Goal: peak RSS < 150 MiB.
// (2) for comparison: a 25 MiB file as the attachment (the mail is then ~34 MiB); no goal.
// (3) baselines in the same run: `node -e 0` and the binary answering examples/01-help.eml.
// "− help" is the peak RSS above the help mail's, "÷ message" that difference per byte of input.

import { copyFileSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  binaryPath, checkTools, childEnv, CRLF, fmtBytes, fmtCpu, fmtRss, footer, HELP_MAIL, KiB, lcgBytes, mailHead, median,
  MiB, openTempDir, restamp, ROOT, show, table,
} from './measure.mjs';

const MESSAGE_BYTES = 25 * MiB;
const FILE_BYTES = 25 * MiB;
const RUNS = 3;
const GOAL = { rssKiB: 150 * KiB };
const CONFIG_NAME = 'config.example.json';

const BIN = binaryPath();
checkTools(BIN);
const { env, removed } = childEnv();

// ---------------------------------------------------------------- the temp dir: the example config as shipped

const { dir, writeInput, timed } = openTempDir('memory', env);
copyFileSync(join(ROOT, CONFIG_NAME), join(dir, CONFIG_NAME));
const { createDemoDatabase } = await import('../examples/demo-db.mjs');
createDemoDatabase(join(dir, 'var', 'demo.db')); // services.db.databases.inventory.sqlite.path

// ---------------------------------------------------------------- the mails

const BOUNDARY = '----=_bench_memory_boundary';

/** A request mail `db tables` with `data` attached in base64: the bytes of the whole message. */
function requestWith(data, tag) {
  const head = mailHead({ tag, subject: 'db tables, with an attachment', type: `multipart/mixed; boundary="${BOUNDARY}"` });
  const parts = [
    `--${BOUNDARY}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    'db tables',
    `--${BOUNDARY}`,
    'Content-Type: application/octet-stream; name="data.bin"',
    'Content-Disposition: attachment; filename="data.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    '',
  ].join(CRLF);
  const b64 = data.toString('base64');
  const lines = [];
  for (let at = 0; at < b64.length; at += 76) lines.push(b64.slice(at, at + 76));
  return Buffer.from(head + parts + lines.join(CRLF) + CRLF + `--${BOUNDARY}--${CRLF}`, 'latin1');
}

/**
 * The attachment whose mail is just under `bytes`: every 57 bytes of file are one 76-char base64
 * line + CRLF (78 bytes of mail); the rest is the head and the text part (what an empty file needs,
 * less its CRLF), with a margin for Message-IDs of more digits.
 */
function fileFor(bytes) {
  const rest = requestWith(Buffer.alloc(0), 'size').length - 2 + 100;
  return lcgBytes(Math.floor((bytes - rest) / 78) * 57);
}

const goalFile = fileFor(MESSAGE_BYTES);
const bigFile = lcgBytes(FILE_BYTES);
const goalInput = () => writeInput('goal.eml', requestWith(goalFile, 'memory-goal'));
const bigInput = () => writeInput('big.eml', requestWith(bigFile, 'memory-big'));
const helpInput = () => writeInput('help.eml', restamp(readFileSync(HELP_MAIL), 'help'));

// ---------------------------------------------------------------- running

/** The status in the reply's Subject ("processed (1 ok, 0 failed)", "not processed (message too large)"): what the run did. */
function replySubject(r) {
  if (!r.replied) return undefined;
  const head = readFileSync(r.outFile, 'latin1').split(/\r?\n\r?\n/, 1)[0].replace(/\r?\n[ \t]+/g, ' ');
  const m = /^Subject: (.*)$/im.exec(head);
  if (!m) return '';
  // =?UTF-8?Q?…?= words, decoded enough to read: "Re: <subject> — <status>".
  const subject = m[1].replace(/=\?UTF-8\?Q\?(.*?)\?=\s*/gi, (_, q) => Buffer.from(q.replace(/_/g, ' ').replace(/=([0-9A-F]{2})/gi, (__, h) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8'));
  return subject.split(' — ').at(-1);
}

/** n runs, each with a fresh input; CPU = median, peak RSS = max; the first failure, if any. */
async function repeated(n, cmd, args, input) {
  const all = [];
  for (let i = 0; i < n; i++) {
    const file = input?.();
    const r = await timed(cmd, args, file);
    r.messageBytes = file ? statSync(file).size : undefined;
    r.subject = replySubject(r);
    if (file) rmSync(file, { force: true });
    all.push(r);
  }
  const ok = all.filter((r) => r.cpu !== undefined);
  return {
    ...all.at(-1),
    failed: all.find((r) => r.failed)?.failed,
    cpu: ok.length ? median(ok.map((r) => r.cpu)) : undefined,
    rssKiB: ok.length ? Math.max(...ok.map((r) => r.rssKiB)) : undefined,
    runs: all,
  };
}

const mailagent = (input) => repeated(RUNS, BIN, ['run', '--print', '--config', CONFIG_NAME], input);

const nodeBase = await repeated(RUNS, process.execPath, ['-e', '0']);
const help = await mailagent(helpInput);
if (help.failed || !help.replied) {
  console.log(`bench: ${show(BIN)} does not answer the help mail (${help.failed ?? 'no reply on stdout'}): ${help.stderr.trim().split('\n')[0] ?? ''}`);
  console.log('nothing measured');
  process.exit(0);
}
const goal = await mailagent(goalInput);
const big = await mailagent(bigInput);

// ---------------------------------------------------------------- report

const verdict = (r) => (r.failed ? `FAIL (${r.failed})` : !r.replied ? 'FAIL (no reply)' : r.rssKiB < GOAL.rssKiB ? 'ok' : 'OVER');
const aboveHelp = (r) => (r.rssKiB === undefined ? '-' : ((r.rssKiB - help.rssKiB) / KiB).toFixed(1));
const perByte = (r) => (r.rssKiB === undefined || !r.messageBytes ? '-' : `${(((r.rssKiB - help.rssKiB) * KiB) / r.messageBytes).toFixed(2)}×`);

console.log(`peak RSS: ${show(BIN)} run --print --config ${CONFIG_NAME} (as shipped), GNU time %M, node ${process.version}`);
console.log(`each row: ${RUNS} runs, peak RSS = max, CPU = median; − help = peak RSS above the help mail's, ÷ message = that per byte of mail`);
console.log();
table(
  [
    ['input', 'message', 'attached', 'CPU s', 'peak RSS MiB', '− help MiB', '÷ message', 'reply status', 'goal', 'result'],
    ['node -e 0', '-', '-', fmtCpu(nodeBase), fmtRss(nodeBase), '-', '-', '-', '', nodeBase.failed ? `FAIL (${nodeBase.failed})` : ''],
    [`help (${show(HELP_MAIL)})`, fmtBytes(help.messageBytes), '-', fmtCpu(help), fmtRss(help), '-', '-', help.subject, '', verdict(help) === 'ok' ? '' : verdict(help)],
    ['db tables + attachment', fmtBytes(goal.messageBytes), fmtBytes(goalFile.length), fmtCpu(goal), fmtRss(goal), aboveHelp(goal), perByte(goal), goal.subject ?? '-', `< ${GOAL.rssKiB / KiB} MiB`, verdict(goal)],
    ['db tables + 25 MiB file', fmtBytes(big.messageBytes), fmtBytes(bigFile.length), fmtCpu(big), fmtRss(big), aboveHelp(big), perByte(big), big.subject ?? '-', '(none)', big.failed ? `FAIL (${big.failed})` : ''],
  ],
  [3, 4, 5, 6],
);
console.log();
console.log(`peak RSS of run --print, ${fmtBytes(goal.messageBytes)} message: ${fmtRss(goal)} MiB (goal < ${GOAL.rssKiB / KiB} MiB): ${verdict(goal)}`);
console.log('every run (peak RSS MiB): ' + [['help', help], ['25 MiB message', goal], ['25 MiB file', big]].map(([l, r]) => `${l} ${r.runs.map((x) => fmtRss(x)).join(' / ')}`).join(', '));
footer(verdict(goal) === 'ok' ? 0 : 1, removed);
