#!/usr/bin/env node
// Throughput and latency of `mailagent watch` against a private Postfix + Dovecot (the test
// harness in test/support/mailstack.ts; needs root, installs the Debian packages when missing).
// A report, not a test: exits 0 whatever the numbers (1 when the binary is missing or a run fails).
//
//   node bench/watch.mjs [N]        N requests per run (default 300)
//
// (a) raw delivery: N mails through Postfix into a mailbox nobody reads, until all are in its Maildir.
// (b) the agent: N `db query` requests sent at once → N replies delivered to ops@example.com;
//     rate, and latency from each send to its reply's arrival (the reply file's mtime in Maildir/new).
// (c) latency with one request at a time (every 250 ms): what a person waiting for an answer sees.
// Prints the agent/raw ratio (goal ≥ 0.5) and the single-request p50/p95 (goal p50 ≤ 0.65 s).

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tsImport } from 'tsx/esm/api';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'dist', 'mailagent');
const N = Number(process.argv[2] ?? 300);
const PACED = 40;
const PACE_MS = 250;
const QUERY = 'db query name=tickets_by_priority priority=1';

if (!existsSync(BIN)) {
  console.error(`bench: ${relative(process.cwd(), BIN)} not found: run \`npm run build\` first`);
  process.exit(1);
}
if (!(N > 0)) {
  console.error('usage: node bench/watch.mjs [N]');
  process.exit(64);
}

const { startMailStack } = await tsImport('../test/support/mailstack.ts', import.meta.url);
const { smtpClient, uniqueMessageId } = await tsImport('../test/support/imap.ts', import.meta.url);
const { createDemoDatabase } = await import('../examples/demo-db.mjs');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const secs = (ms) => (ms / 1000).toFixed(3);

/** Files in a Maildir's new/ (Dovecot's LMTP delivers there); [] before the first delivery. */
function newMail(maildir) {
  try {
    return readdirSync(join(maildir, 'new'));
  } catch (e) {
    if (e.code === 'ENOENT') return [];
    throw e;
  }
}

async function waitForFiles(maildir, n, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const files = newMail(maildir);
    if (files.length >= n) return files;
    if (Date.now() > deadline) throw new Error(`${maildir}: ${files.length} of ${n} messages after ${timeoutMs} ms`);
    await sleep(5);
  }
}

/** In-Reply-To and delivery time (mtime, ms) of every reply in a Maildir/new. */
function replies(maildir) {
  const out = new Map();
  for (const f of newMail(maildir)) {
    const file = join(maildir, 'new', f);
    const head = readFileSync(file, 'latin1').split(/\r?\n\r?\n/, 1)[0].replace(/\r?\n[ \t]+/g, ' ');
    const m = /^in-reply-to:\s*(<[^>]+>)/im.exec(head);
    if (m) out.set(m[1], statSync(file).mtimeMs);
  }
  return out;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** Sends the mails over a pooled connection; returns Message-ID → time the send began. */
async function send(stack, to, count, subject) {
  const transport = smtpClient(stack, 4);
  const sentAt = new Map();
  try {
    await Promise.all(Array.from({ length: count }, async (_, i) => {
      const messageId = uniqueMessageId('bench');
      sentAt.set(messageId, Date.now());
      await transport.sendMail({ from: 'ops@example.com', to, subject: `${subject} ${i}`, text: `${QUERY}\n`, messageId });
    }));
  } finally {
    transport.close();
  }
  return sentAt;
}

function startAgent(stack, config, cwd) {
  const child = spawn(BIN, ['watch', '--config', config], {
    cwd,
    env: { PATH: process.env.PATH, HOME: cwd, MAILAGENT_IMAP_PASSWORD: stack.users.agent.password },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const ready = new Promise((resolveReady, reject) => {
    let buffered = '';
    child.stderr.on('data', (chunk) => {
      buffered += chunk;
      if (/"msg":"ready"/.test(buffered)) resolveReady();
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1);
    });
    child.once('exit', (code) => reject(new Error(`agent exited with ${code} before it was ready`)));
  });
  return { child, ready };
}

const work = mkdtempSync(join(tmpdir(), 'mailagent-bench-'));
let stack;
let agent;
try {
  stack = await startMailStack({ users: ['agent', 'ops', 'sink'] });

  // (a) raw delivery rate
  const sinkDir = stack.maildir('sink');
  let t0 = Date.now();
  await send(stack, 'sink@example.com', N, 'raw');
  await waitForFiles(sinkDir, N, 120_000);
  const rawMs = Math.max(...newMail(sinkDir).map((f) => statSync(join(sinkDir, 'new', f)).mtimeMs)) - t0;
  const rawRate = N / (rawMs / 1000);

  // (b) the agent, N requests at once
  createDemoDatabase(join(work, 'demo.db'));
  const raw = JSON.parse(readFileSync(join(ROOT, 'config.example.json'), 'utf8'));
  delete raw.$schema;
  delete raw.services.jobs;
  raw.services.db.databases.inventory.sqlite.path = join(work, 'demo.db');
  raw.state = { path: join(work, 'state.db') };
  raw.audit = { path: join(work, 'audit.jsonl') };
  raw.smtp = { host: '127.0.0.1', port: stack.smtpPort, secure: false };
  raw.imap = { host: '127.0.0.1', port: stack.imapPort, secure: false, user: 'agent', password: { env: 'MAILAGENT_IMAP_PASSWORD' } };
  raw.users = [{ address: 'ops@example.com', roles: ['admin'] }];
  raw.security = { messagesPerUserPerHour: 1_000_000, repliesPerHour: 1_000_000 };
  const config = join(work, 'config.json');
  writeFileSync(config, JSON.stringify(raw, null, 2));
  agent = startAgent(stack, config, work);
  await agent.ready;

  const opsDir = stack.maildir('ops');
  t0 = Date.now();
  const bulk = await send(stack, 'agent@example.com', N, 'bulk');
  await waitForFiles(opsDir, N, 300_000);
  const bulkReplies = replies(opsDir);
  const bulkLat = [...bulk].map(([id, at]) => bulkReplies.get(id) - at).filter((x) => x >= 0).sort((a, b) => a - b);
  if (bulkLat.length !== N) throw new Error(`only ${bulkLat.length} of ${N} replies matched their requests`);
  const agentMs = Math.max(...bulkReplies.values()) - t0;
  const agentRate = N / (agentMs / 1000);

  // (c) one request at a time
  const paced = new Map();
  for (let i = 0; i < PACED; i++) {
    for (const [id, at] of await send(stack, 'agent@example.com', 1, 'paced')) paced.set(id, at);
    await sleep(PACE_MS);
  }
  await waitForFiles(opsDir, N + PACED, 60_000);
  const allReplies = replies(opsDir);
  const pacedLat = [...paced].map(([id, at]) => allReplies.get(id) - at).filter((x) => x >= 0).sort((a, b) => a - b);

  const p50 = percentile(pacedLat, 50);
  console.log(`watch bench: ${N} mails per run, ${PACED} single requests every ${PACE_MS} ms`);
  console.log(`  raw delivery (Postfix → Dovecot):  ${rawRate.toFixed(0)} msg/s  (${N} in ${secs(rawMs)} s)`);
  console.log(`  agent end to end (request → reply): ${agentRate.toFixed(0)} msg/s  (${N} in ${secs(agentMs)} s)`);
  console.log(`  ratio agent / raw:                  ${(agentRate / rawRate).toFixed(2)}  (goal ≥ 0.5)`);
  console.log(`  latency, one at a time:             p50 ${secs(p50)} s, p95 ${secs(percentile(pacedLat, 95))} s  (goal p50 ≤ 0.65 s)`);
  console.log(`  latency, ${N} at once:               p50 ${secs(percentile(bulkLat, 50))} s, p95 ${secs(percentile(bulkLat, 95))} s (includes queueing)`);
} catch (err) {
  console.error(`bench: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  if (agent && agent.child.exitCode === null) {
    agent.child.kill('SIGTERM');
    await new Promise((r) => agent.child.once('exit', r));
  }
  await stack?.stop();
  rmSync(work, { recursive: true, force: true });
}
