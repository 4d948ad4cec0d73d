import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { dumpLogs, handledKey, killAgents, sleep, startAgentProcess, waitForAny, writeAgentConfig, type AgentProcess, type LogLine } from './support/agent-process';
import { tempDir } from './support/env';
import { fetchAll, sendMail, waitForCount, type FetchedMail } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';

// A schedule set by mail fires in `mailagent watch` (the built binary): two agents on one mailbox
// and one state store (the shared SQLite file of one host, or PostgreSQL), a cron firing every
// 2 seconds, and every firing runs the job exactly once — none twice, none after the clear.
const test = suite('watch-schedule');
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const JOB = 'tick';
const CRON = '*/2 * * * * *';
const FIRINGS_WANTED = 3;
/** After the clear is handled: a check that listed the schedule just before it may still start one run. */
const CLEAR_SLACK_MS = 1500;
/** How long the test watches for firings after the clear: two cron periods and more. */
const QUIET_AFTER_CLEAR_MS = 5000;

let stack: MailStack;
let work: { dir: string; cleanup: () => void };

test.before.each(async () => {
  work = tempDir('mailagent-wsched-');
  stack = await startMailStack();
});

test.after.each(async () => {
  await killAgents();
  await stack?.stop();
  work?.cleanup();
});

const startedBySchedule = (l: Record<string, any>) => l.msg === `job ${JOB} started by its schedule`;

/** The job: one line per run, its run id, appended to `out`. */
function writeJobScript(out: string): string {
  const script = join(work.dir, 'tick.sh');
  writeFileSync(script, `#!/bin/sh\necho "$MAILAGENT_RUN_ID" >> '${out}'\n`);
  chmodSync(script, 0o755);
  return script;
}

/** A watch config for one agent: its own home (audit), the shared state given by `state`. */
function writeConfig(name: string, script: string, state: (raw: Record<string, any>) => void): string {
  return writeAgentConfig(stack, work.dir, name, (raw) => {
    // Mail from ops over this private Postfix is trusted by address: no one-time code for schedules.
    raw.security = { evidence: { 'jobs:schedule': 'allowlist' } };
    delete raw.services.db;
    raw.services.jobs = { timezone: 'UTC', jobs: { [JOB]: { description: 'appends its run id to a file', command: [script], timeoutSeconds: 10 } } };
    state(raw);
  });
}

function startAgent(config: string): AgentProcess {
  return startAgentProcess({ config, cwd: work.dir, env: { HOME: work.dir, MAILAGENT_IMAP_PASSWORD: stack.users.agent.password } });
}

/** Sends one request, waits until an agent handled it and its reply is in ops' INBOX; returns that reply. */
async function ask(crew: AgentProcess[], text: string, repliesBefore: number): Promise<{ reply: FetchedMail; handled: LogLine }> {
  const id = await sendMail(stack, { subject: text, text: `${text}\n` });
  const { hit } = await waitForAny(crew, handledKey(id), 30_000);
  await waitForCount(stack, 'ops', repliesBefore + 1, { timeoutMs: 30_000, intervalMs: 100 });
  const reply = (await fetchAll(stack, 'ops')).find((r) => r.inReplyTo === id);
  assert.ok(reply, `a reply to "${text}"`);
  return { reply: reply!, handled: hit };
}

const linesOf = (file: string): string[] => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

/** "2026-11-29 14:51:02 UTC" (formatTime) → ms since epoch. */
const parseShownTime = (text: string): number => Date.parse(text.replace(' UTC', 'Z').replace(' ', 'T'));

async function firesOncePerFiring(state: (home: string) => (raw: Record<string, any>) => void): Promise<void> {
  const out = join(work.dir, 'tick.out');
  const script = writeJobScript(out);
  const crew = ['a', 'b'].map((name) => startAgent(writeConfig(name, script, state(join(work.dir, name)))));
  for (const a of crew) await a.waitFor((l) => l.msg === 'ready', { timeoutMs: 30_000 });

  // Set by mail: the reply names the next run, which is when the first firing must be.
  const set = await ask(crew, `jobs schedule set ${JOB} cron="${CRON}"`, 0);
  assert.match(set.reply.subject, '— processed (1 ok, 0 failed)');
  const announced = new RegExp(`job ${JOB} is scheduled "\\*/2 \\* \\* \\* \\* \\*"; next run (\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC)`).exec(set.reply.text);
  assert.ok(announced, `the reply says the job is scheduled, with its next run:\n${set.reply.text}`);
  const nextRun = parseShownTime(announced![1]);

  // Generous: the firings themselves take 2 s each.
  const deadline = Date.now() + 60_000;
  while (linesOf(out).length < FIRINGS_WANTED) {
    if (Date.now() > deadline) throw new Error(`${linesOf(out).length} firings in 60 s; logs:\n${crew.map((a) => dumpLogs(a.logs.slice(-20))).join('\n---\n')}`);
    await sleep(200);
  }

  const clear = await ask(crew, `jobs schedule clear ${JOB}`, 1);
  assert.match(clear.reply.text, `the schedule of job ${JOB} is cleared`);
  const clearedAt = clear.handled.at;
  await sleep(QUIET_AFTER_CLEAR_MS);

  // What each agent fired, from its log: run id and the firing time it claimed.
  const starts = crew.flatMap((a, i) => a.logs.filter((l) => startedBySchedule(l.line)).map((l) => ({
    agent: 'ab'[i], at: l.at, runId: Number(l.line.runId), scheduledAt: Date.parse(l.line.scheduledAt),
  })));
  const show = starts.map((s) => `${s.agent}: run ${s.runId} for ${new Date(s.scheduledAt).toISOString()}`).join('\n');
  const firingTimes = new Set(starts.map((s) => s.scheduledAt));
  assert.is(firingTimes.size, starts.length, `no firing time ran twice:\n${show}`);
  assert.ok(starts.length >= FIRINGS_WANTED, `at least ${FIRINGS_WANTED} firings:\n${show}`);
  for (const s of starts) assert.is(new Date(s.scheduledAt).getUTCSeconds() % 2, 0, `firing times follow the cron:\n${show}`);
  assert.is(Math.min(...firingTimes), nextRun, `the first firing is the one the reply announced (${announced![1]}):\n${show}`);
  const late = starts.filter((s) => s.at > clearedAt + CLEAR_SLACK_MS);
  assert.is(late.length, 0, `nothing fires after the clear (handled at ${new Date(clearedAt).toISOString()}):\n${show}`);

  // The job itself: one line per run, and the runs are exactly those the agents started.
  const written = linesOf(out).map(Number);
  assert.is(new Set(written).size, written.length, `each run wrote once: ${written.join(' ')}`);
  assert.equal([...written].sort((x, y) => x - y), starts.map((s) => s.runId).sort((x, y) => x - y), `the job ran once per firing:\n${show}`);

  // No firing was lost without a word: a firing time between the first and the last that did not
  // run was reported as missed (an agent paused) or skipped (the previous run still going).
  const first = Math.min(...firingTimes);
  const last = Math.max(...firingTimes);
  const gaps = (last - first) / 2000 + 1 - firingTimes.size;
  const reported = crew.reduce((n, a) => n + a.logs.reduce((m, l) =>
    m + (typeof l.line.missed === 'number' ? l.line.missed : 0) + (/firing at .* skipped/.test(l.line.msg ?? '') ? 1 : 0), 0), 0);
  assert.ok(gaps <= reported, `${gaps} firing(s) between the first and the last did not run, ${reported} reported:\n${show}`);

  // The run log, read by mail, shows the same runs, every one started by the schedule and ended well.
  const log = await ask(crew, `jobs log ${JOB}`, 2);
  const rows = log.reply.text.split('\n').map((l) => /^\s*(\d+)\s+tick\s+(\S+)\s+.*\bexit 0\b/.exec(l)).filter((m): m is RegExpExecArray => m !== null);
  assert.equal(rows.map((m) => Number(m[1])).sort((x, y) => x - y), [...written].sort((x, y) => x - y), `the run log lists the runs:\n${log.reply.text}`);
  assert.ok(rows.every((m) => m[2] === 'schedule'), `each run was started by the schedule:\n${log.reply.text}`);

  for (const a of crew) a.child.kill('SIGTERM');
  assert.equal(await Promise.all(crew.map((a) => a.exit)), [0, 0], 'both agents stop cleanly on SIGTERM');
}

test('two agents sharing one SQLite state file: a schedule set by mail fires once per firing, and stops on clear', async () => {
  const shared = join(work.dir, 'state.db');
  await firesOncePerFiring(() => (raw) => (raw.state = { path: shared }));
});

async function postgresReachable(): Promise<string | undefined> {
  const { Client } = require('pg') as typeof import('pg');
  const client = new Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.end().catch(() => undefined);
  }
}

test('two agents sharing PostgreSQL: a schedule set by mail fires once per firing, and stops on clear', async () => {
  const unreachable = await postgresReachable();
  if (unreachable) {
    if (process.env.CI) assert.unreachable(`PostgreSQL at ${PG_URL} is required in CI: ${unreachable}`);
    console.log(`  (PostgreSQL at ${PG_URL} unreachable: ${unreachable}; PostgreSQL schedule test skipped)`);
    return;
  }
  const schema = `mailagent_wsched_${process.pid}_${Date.now().toString(36)}`;
  try {
    await firesOncePerFiring((home) => (raw) => (raw.state = { path: join(home, 'state.db'), postgres: { url: PG_URL, schema } }));
  } finally {
    await killAgents();
    const { Client } = require('pg') as typeof import('pg');
    const pg = new Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
    await pg.connect();
    try {
      await pg.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await pg.end().catch(() => undefined);
    }
  }
});

test.run();
