#!/usr/bin/env node
// Cost of a large file transfer through the `files` service for `mailagent run --print`: CPU time
// (user + system), peak RSS and reply size of dist/mailagent storing a 25 MiB attachment in a
// share (`files put`) and mailing it back (`files get`).
// A report, not a test: exits 0 whatever the numbers (1 only if there is no binary).
//
//   node bench/transfer.mjs [--keep-env] [--bin PATH]
//
// Every input is one `dist/mailagent run --print --config <cfg> < input` under GNU
// `/usr/bin/time -f '%U %S %M'` (Debian package `time`): CPU s = %U + %S, peak RSS = %M, reply
// size = the bytes written to stdout. The config lives in a temp dir: agent@example.com, the only
// user ops@example.com (role admin, baseline evidence `allowlist`: no security.dkim, and
// security.evidence `files:*` = `allowlist`, so that put runs without a one-time code), state and
// audit in the temp dir, rate limits high enough for every input to be answered,
// limits.maxMessageBytes = 48 MiB, limits.maxAttachmentBytes = 32 MiB and the files service with
// one local share `drop` (a folder in the temp dir) and maxFileBytes = 32 MiB. Each input gets a
// unique Message-ID and a Date of now; one unmeasured run of the help mail comes first.
//
// The file is FILE_BYTES (25 MiB) of deterministic bytes (a linear congruential generator, no
// randomness), the same in every run.
//
// (1) put: a multipart/mixed mail from ops@example.com, a text/plain part
//     `files put share=drop path=big.bin attach=big.bin` and the file as a base64 attachment
//     (76-char lines). Correct when the reply's subject says "processed (1 ok, 0 failed)" and
//     drop/big.bin is byte-identical to the file (sha256). drop/big.bin is removed before each
//     run (outside the measurement), since put does not overwrite.
// (2) get: a text/plain mail `files get share=drop path=big.bin`, with drop/big.bin written by
//     the bench beforehand. Correct when the reply's subject says "processed (1 ok, 0 failed)"
//     and the reply (read with mailparser's simpleParser) has one attachment big.bin whose bytes
//     are the file's (sha256).
// (3) baselines in the same run: `node -e 0` and the binary answering examples/01-help.eml
//     (Date = now).
//
// Everything runs RUNS (3) times: CPU is the median, peak RSS the maximum of the runs. Columns:
// file size, message size (the input on stdin), CPU s, peak RSS, reply size, RSS − help = peak
// RSS minus the help mail's, RSS / file = peak RSS as a multiple of the file size.
// Goal, per row: correct and a peak RSS under 150 MiB → ok, otherwise OVER (or FAIL when the
// transfer did not happen or its bytes differ). Sizes are binary: KiB, MiB.
//
// Each run is killed after 60 s (reported as "timeout >60 s"), so the bench always finishes.
//
// --bin PATH measures another executable (default dist/mailagent). The children run without
// NODE_EXTRA_CA_CERTS and NODE_OPTIONS unless --keep-env (see bench/startup.mjs for why).

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import {
  binaryPath, checkTools, childEnv, CRLF, fmtBytes, fmtCpu, fmtRss, footer, HELP_MAIL, KiB, lcgBytes, mailHead, median,
  MiB, openTempDir, restamp, ROOT, show, table, TIMEOUT_MS, writeConfig,
} from './measure.mjs';

const FILE_BYTES = 25 * MiB;
const MAX_MESSAGE_BYTES = 48 * MiB; // limits.maxMessageBytes
const MAX_ATTACHMENT_BYTES = 32 * MiB; // limits.maxAttachmentBytes
const MAX_FILE_BYTES = 32 * MiB; // services.files.maxFileBytes
const RUNS = 3;
const GOAL = { rssKiB: 150 * KiB };
const SHARE = 'drop';
const FILE_NAME = 'big.bin';
const OK_STATUS = 'processed (1 ok, 0 failed)';

const BIN = binaryPath();
checkTools(BIN);
const { env, removed } = childEnv();

// mailparser is a dependency of mailagent: the bench reads the replies with it.
const { simpleParser } = createRequire(join(ROOT, 'package.json'))('mailparser');

// ---------------------------------------------------------------- the temp dir and its config

const { dir, writeInput, timed } = openTempDir('transfer', env);
const share = join(dir, 'share');
mkdirSync(share);
const stored = join(share, FILE_NAME);
// No `dkim`: the baseline is `allowlist`; files changes need no more than that here.
const config = writeConfig(dir, {
  limits: { maxMessageBytes: MAX_MESSAGE_BYTES, maxAttachmentBytes: MAX_ATTACHMENT_BYTES },
  security: { evidence: { 'files:*': 'allowlist' } },
  services: { files: { maxFileBytes: MAX_FILE_BYTES, shares: { [SHARE]: { path: share } } } },
});

// ---------------------------------------------------------------- the file (deterministic)

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
const fileData = lcgBytes(FILE_BYTES);
const fileHash = sha256(fileData);

/** base64 in 76-char lines, each ending in CRLF. */
function base64Lines(bytes) {
  const b64 = bytes.toString('base64');
  const out = [];
  for (let at = 0; at < b64.length; at += 76) out.push(b64.slice(at, at + 76));
  return out.join(CRLF) + CRLF;
}

// ---------------------------------------------------------------- the mails

const header = (tag, subject, type, after = []) => mailHead({ tag, subject, type, after });

const BOUNDARY = '----=_bench_transfer_boundary';
const PUT_COMMAND = `files put share=${SHARE} path=${FILE_NAME} attach=${FILE_NAME}`;
const GET_COMMAND = `files get share=${SHARE} path=${FILE_NAME}`;
// The attachment part is the same in every put mail: encoded once.
const putBody = Buffer.concat([
  Buffer.from(
    [
      'This is a multi-part message in MIME format.',
      '',
      `--${BOUNDARY}`,
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 7bit',
      '',
      PUT_COMMAND,
      '',
      `--${BOUNDARY}`,
      `Content-Type: application/octet-stream; name="${FILE_NAME}"`,
      `Content-Disposition: attachment; filename="${FILE_NAME}"`,
      'Content-Transfer-Encoding: base64',
      '',
      '',
    ].join(CRLF),
    'latin1',
  ),
  Buffer.from(base64Lines(fileData), 'latin1'),
  Buffer.from(`--${BOUNDARY}--${CRLF}`, 'latin1'),
]);

const putInput = () =>
  writeInput('put.eml', Buffer.concat([Buffer.from(header('put', 'put big.bin', `multipart/mixed; boundary="${BOUNDARY}"`), 'latin1'), putBody]));
const getInput = () =>
  writeInput('get.eml', Buffer.from(header('get', 'get big.bin', 'text/plain; charset=utf-8', ['Content-Transfer-Encoding: 7bit']) + GET_COMMAND + CRLF, 'latin1'));
const helpInput = () => writeInput('help.eml', restamp(readFileSync(HELP_MAIL), 'help'));

// ---------------------------------------------------------------- running

/** One `run --print` of file; the reply read with simpleParser when there is one. */
async function runMailagent(file) {
  const r = await timed(BIN, ['run', '--print', '--config', config], file);
  if (!r.failed && r.replyBytes > 0) {
    try {
      r.reply = await simpleParser(readFileSync(r.outFile), { skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
    } catch (err) {
      r.failed = `reply not readable: ${err.message}`;
    }
  }
  return r;
}

/** The reply's status (after the dash in its subject) when it is not OK_STATUS, else undefined. */
function statusProblem(r) {
  if (r.failed) return r.failed;
  if (!r.reply) return 'no reply';
  const subject = r.reply.subject ?? '';
  if (subject.includes(OK_STATUS)) return undefined;
  const firstLine = (r.reply.text ?? '').split('\n').find((l) => l.trim() && !l.startsWith('>'))?.trim().slice(0, 100);
  return `reply "${subject}"${firstLine ? `: ${firstLine}` : ''}`;
}

function checkPut(r) {
  const problem = statusProblem(r);
  if (problem) return problem;
  if (!existsSync(stored)) return `${SHARE}/${FILE_NAME} not stored`;
  const size = statSync(stored).size;
  if (size !== FILE_BYTES) return `${SHARE}/${FILE_NAME} is ${size} bytes, not ${FILE_BYTES}`;
  if (sha256(readFileSync(stored)) !== fileHash) return `${SHARE}/${FILE_NAME} differs from the file (sha256)`;
  const left = readdirSync(share).filter((n) => n !== FILE_NAME);
  if (left.length) return `the share holds more than ${FILE_NAME}: ${left.join(', ')}`;
  return undefined;
}

function checkGet(r) {
  const problem = statusProblem(r);
  if (problem) return problem;
  const files = (r.reply.attachments ?? []).filter((a) => a.filename === FILE_NAME);
  if (files.length !== 1) return `the reply has ${files.length} attachments named ${FILE_NAME} (of ${r.reply.attachments?.length ?? 0})`;
  const { content } = files[0];
  if (content.length !== FILE_BYTES) return `the attachment is ${content.length} bytes, not ${FILE_BYTES}`;
  if (sha256(content) !== fileHash) return 'the attachment differs from the file (sha256)';
  return undefined;
}

/**
 * n runs (each with a fresh input, `before` first, unmeasured); median CPU, max RSS, the largest
 * reply; `problem` = the first run's problem (check) when one had any.
 */
async function repeated(n, { before, input, run = runMailagent, check = () => undefined }) {
  const all = [];
  for (let i = 0; i < n; i++) {
    before?.();
    const file = input?.();
    const r = await run(file);
    r.messageBytes = file ? statSync(file).size : undefined;
    r.problem = check(r);
    delete r.reply; // a get reply holds the whole file: not kept across runs
    all.push(r);
    if (file) rmSync(file, { force: true });
  }
  const measured = all.filter((r) => r.cpu !== undefined);
  return {
    runs: all,
    problem: all.find((r) => r.problem)?.problem,
    timedOut: all.some((r) => r.timedOut),
    messageBytes: all[0].messageBytes,
    cpu: measured.length ? median(measured.map((r) => r.cpu)) : undefined,
    rssKiB: measured.length ? Math.max(...measured.map((r) => r.rssKiB)) : undefined,
    replyBytes: Math.max(...all.map((r) => r.replyBytes)),
  };
}

// ---------------------------------------------------------------- formatting

/** ok / OVER against the goal; FAIL when the transfer did not happen or its bytes differ. */
function verdict(r) {
  if (r.timedOut) return `OVER (timeout >${TIMEOUT_MS / 1000} s)`;
  if (r.problem) return `FAIL (${r.problem})`;
  return r.rssKiB > GOAL.rssKiB ? 'OVER (rss)' : 'ok';
}

// ---------------------------------------------------------------- warm-up: creates the state store

const warm = await runMailagent(helpInput());
if (warm.failed || !warm.reply) {
  console.log(`bench: ${show(BIN)} does not answer the help mail (${warm.failed ?? 'no reply on stdout'}): ${warm.stderr.trim().split('\n')[0] ?? ''}`);
  console.log('nothing measured');
  process.exit(0);
}

// ---------------------------------------------------------------- (3) baselines

const answered = (r) => r.failed ?? (r.reply ? undefined : 'no reply');
const nodeBase = await repeated(RUNS, { run: () => timed(process.execPath, ['-e', '0']), check: (r) => r.failed });
const helpBase = await repeated(RUNS, { input: helpInput, check: answered });

// ---------------------------------------------------------------- (1) put, (2) get

const put = await repeated(RUNS, { before: () => rmSync(stored, { force: true }), input: putInput, check: checkPut });
const get = await repeated(RUNS, { before: () => writeFileSync(stored, fileData), input: getInput, check: checkGet });

// ---------------------------------------------------------------- report

console.log(`file transfer: ${show(BIN)} run --print, CPU = user + system (GNU time), node ${process.version}`);
console.log(
  `file: ${fmtBytes(FILE_BYTES)} (LCG bytes, sha256 ${fileHash.slice(0, 16)}…); limits.maxMessageBytes ${fmtBytes(MAX_MESSAGE_BYTES)}, ` +
    `limits.maxAttachmentBytes ${fmtBytes(MAX_ATTACHMENT_BYTES)}, files.maxFileBytes ${fmtBytes(MAX_FILE_BYTES)}`,
);
console.log(`goal: put and get of the file correct (sha256) with a peak RSS under ${GOAL.rssKiB / KiB} MiB`);
console.log(`each row: ${RUNS} runs, CPU = median, peak RSS = max; RSS − help = peak RSS minus the help mail's, RSS / file = peak RSS ÷ file size`);
console.log();
const helpRss = helpBase.rssKiB;
const rows = [['operation', 'file size', 'message size', 'CPU s', 'peak RSS MiB', 'reply size', 'RSS − help MiB', 'RSS / file', 'result']];
rows.push(['node -e 0', '-', '-', fmtCpu(nodeBase), fmtRss(nodeBase), '-', '-', '-', nodeBase.problem ? `FAIL (${nodeBase.problem})` : '']);
rows.push([`help (${show(HELP_MAIL)})`, '-', fmtBytes(helpBase.messageBytes), fmtCpu(helpBase), fmtRss(helpBase), fmtBytes(helpBase.replyBytes), '-', '-', verdict(helpBase)]);
for (const [label, r] of [
  [PUT_COMMAND, put],
  [GET_COMMAND, get],
]) {
  rows.push([
    label,
    fmtBytes(FILE_BYTES),
    fmtBytes(r.messageBytes),
    fmtCpu(r),
    fmtRss(r),
    fmtBytes(r.replyBytes),
    r.rssKiB === undefined || helpRss === undefined ? '-' : ((r.rssKiB - helpRss) / KiB).toFixed(1),
    r.rssKiB === undefined ? '-' : `${((r.rssKiB * KiB) / FILE_BYTES).toFixed(1)}×`,
    verdict(r),
  ]);
}
table(rows, [3, 4, 6, 7]);
console.log();
console.log('every run (CPU s / peak RSS MiB):');
for (const [label, r] of [
  ['node -e 0', nodeBase],
  ['help', helpBase],
  ['put', put],
  ['get', get],
]) {
  console.log(`  ${label.padEnd(9)} ${r.runs.map((x) => (x.cpu === undefined ? `- (${x.failed})` : `${x.cpu.toFixed(2)} / ${(x.rssKiB / KiB).toFixed(1)}`)).join(', ')}`);
}
const over = [put, get].filter((r) => verdict(r) !== 'ok').length;
footer(over, removed);
