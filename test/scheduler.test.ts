import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Config } from '../src/config/types';
import { processMessage } from '../src/core/pipeline';
import { closeServiceStores } from '../src/services/jobs';
import { startScheduler } from '../src/services/scheduler';
import type { Notice } from '../src/services/types';
import { openServiceStore, type ServiceStore, type RunSummary } from '../src/state/service-store';
import { demoConfig, mail, tempDir, testDeps } from './support/env';
import { PG_URL, dropSchema, postgresReachable } from './support/pg';
import { readReply } from './support/reply';

const { dir, cleanup } = tempDir('mailagent-sched-');
const PG_SCHEMA = `mailagent_sched_${process.pid}_${Date.now().toString(36)}`;

/** A config whose jobs append a line to a file per run; `state` moves the store to PostgreSQL. */
function schedConfig(name: string, state?: (raw: Record<string, any>) => void): Config {
  return demoConfig(dir, (raw) => {
    raw.security = { evidence: { 'jobs:*': 'allowlist' } };
    raw.services.jobs = {
      timezone: 'UTC',
      jobs: {
        tick: { command: ['/bin/sh', '-c', 'echo "fired $MAILAGENT_RUN_ID" >> "$OUT"'], env: { OUT: join(dir, `${name}.out`) } },
        slow: { command: ['/bin/sh', '-c', 'sleep 0.5; echo done'] },
        // Runs while its hold file exists (60 s at most).
        held: { command: ['/bin/sh', '-c', 'i=0; while [ -e "$HOLD" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done; echo released'], env: { HOLD: join(dir, `${name}.hold`) } },
      },
    };
    raw.state.path = join(dir, `${name}.db`);
    state?.(raw);
  });
}

/** Waits (bounded) until the condition holds; the assertions that follow say what was expected. */
async function until(condition: () => Promise<boolean>, limitMs = 10_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await condition()) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Agent {
  logs: string[];
  stop: () => Promise<void>;
}

function agents(config: Config, now: () => Date): Agent[] {
  return ['agent-a', 'agent-b'].map((owner) => {
    const logs: string[] = [];
    const scheduler = startScheduler({ config, owner, now, log: (level, message) => logs.push(`${level} ${message}`), intervalMs: 20 });
    return { logs, stop: () => scheduler.stop() };
  });
}

const finished = (runs: RunSummary[]) => runs.filter((r) => r.status !== 'running');

/**
 * The behaviour both store kinds must show: a schedule set by mail fires once per firing with two
 * agents, a pause that misses firings runs the job once, and stop() waits for a running job.
 */
async function firesExactlyOnce(config: Config, outFile: string): Promise<void> {
  let clock = new Date('2026-11-30T01:59:00Z');
  const now = () => clock;
  const reply = await readReply(await processMessage(mail('jobs schedule set tick cron="0 2 * * *"'), testDeps(config)));
  assert.match(reply.text!, 'job tick is scheduled "0 2 * * *"; next run');

  const observer: ServiceStore = await openServiceStore(config);
  const running = agents(config, now);
  try {
    await pause(100); // several checks before the firing is due
    assert.equal(await observer.listRuns({ limit: 10 }), []);

    clock = new Date('2026-11-30T02:00:00.400Z');
    await until(async () => finished(await observer.listRuns({ limit: 10 })).length >= 1);
    await pause(200); // ten more checks by each agent: none may run it again
    const runs = await observer.listRuns({ limit: 10 });
    assert.is(runs.length, 1, JSON.stringify(runs));
    assert.is(runs[0].who, 'schedule');
    assert.is(runs[0].status, 'ok');
    assert.is(readFileSync(outFile, 'utf8'), `fired ${runs[0].id}\n`);
    const starters = running.filter((a) => a.logs.some((l) => l.startsWith('info job tick started by its schedule')));
    assert.is(starters.length, 1);
    const other = running.find((a) => a !== starters[0])!;
    assert.ok(other.logs.some((l) => l.startsWith('debug firing of job tick at 2026-11-30 02:00:00 UTC taken by another agent')), other.logs.join('\n'));

    // Three days without a check: the job runs once, and the gap is reported.
    clock = new Date('2026-12-03T02:00:00.400Z');
    await until(async () => finished(await observer.listRuns({ limit: 10 })).length >= 2);
    await pause(200);
    assert.is((await observer.listRuns({ limit: 10 })).length, 2);
    assert.ok(running.some((a) => a.logs.includes('warn job tick: 2 earlier firing(s) were missed; running it once')));
    assert.is(readFileSync(outFile, 'utf8').split('\n').filter(Boolean).length, 2);
  } finally {
    await Promise.all(running.map((a) => a.stop()));
    await observer.close();
  }
}

test('SQLite: a schedule set by mail fires exactly once per firing with two agents on one state file', async () => {
  const config = schedConfig('sqlite');
  await firesExactlyOnce(config, join(dir, 'sqlite.out'));
});

test('a schedule of a job removed from the config is skipped with one warning; the loop keeps going', async () => {
  const config = schedConfig('removed');
  const store = await openServiceStore(config);
  await store.setSchedule({ job: 'gone', cron: '* * * * *', setBy: 'ops@example.com', setAt: 0 });
  await store.setSchedule({ job: 'tick', cron: '* * * * *', setBy: 'ops@example.com', setAt: 0 });
  let clock = new Date('2026-11-30T10:00:30Z');
  const logs: string[] = [];
  const scheduler = startScheduler({ config, owner: 'solo', now: () => clock, log: (level, message) => logs.push(`${level} ${message}`), intervalMs: 20 });
  try {
    await pause(100);
    clock = new Date('2026-11-30T10:01:30Z');
    await until(async () => finished(await store.listRuns({ limit: 10 })).length >= 1);
    assert.equal(logs.filter((l) => l.includes('gone')), ['warn schedule of job gone ignored: the job is not in the config']);
    assert.is((await store.listRuns({ limit: 10 }))[0].job, 'tick');
  } finally {
    await scheduler.stop();
    await store.close();
  }
});

test('a schedule set just after a firing time first fires at the next one, as its reply said', async () => {
  const config = schedConfig('late-set');
  const store = await openServiceStore(config);
  // The scheduler last looked at 01:59:59.9; the schedule is set at 02:00:00.5, after 02:00 passed.
  let clock = new Date('2026-11-30T01:59:59.900Z');
  const scheduler = startScheduler({ config, owner: 'solo', now: () => clock, log: () => undefined, intervalMs: 20 });
  try {
    await pause(60);
    await store.setSchedule({ job: 'tick', cron: '0 2 * * *', setBy: 'ops@example.com', setAt: Date.parse('2026-11-30T02:00:00.500Z') });
    clock = new Date('2026-11-30T02:00:01Z');
    await pause(150); // several checks: 02:00 of this day must not run
    assert.equal(await store.listRuns({ limit: 10 }), []);
    clock = new Date('2026-12-01T02:00:00.300Z');
    await until(async () => finished(await store.listRuns({ limit: 10 })).length >= 1);
    assert.is((await store.listRuns({ limit: 10 })).length, 1);
  } finally {
    await scheduler.stop();
    await store.close();
  }
});

test('a scheduled run mails its result: to whoever set the schedule while on the allow list, else to the job\'s notify address', async () => {
  const config = schedConfig('notify', (raw) => {
    raw.services.jobs.jobs.fails = { command: ['/bin/sh', '-c', 'echo broken >&2; exit 3'], notify: 'oncall@example.com' };
  });
  const store = await openServiceStore(config);
  await store.setSchedule({ job: 'slow', cron: '* * * * *', setBy: 'OPS@example.com', setAt: 0 });
  await store.setSchedule({ job: 'fails', cron: '* * * * *', setBy: 'ops@example.com', setAt: 0 });
  await store.setSchedule({ job: 'tick', cron: '* * * * *', setBy: 'former@example.com', setAt: 0 });
  const notices: { key: string; notice: Notice }[] = [];
  let clock = new Date('2026-11-30T10:00:59Z');
  const scheduler = startScheduler({ config, owner: 'solo', now: () => clock, log: () => undefined, intervalMs: 20, notify: async (key, notice) => void notices.push({ key, notice }) });
  try {
    clock = new Date('2026-11-30T10:01:00.100Z');
    await until(async () => notices.length >= 2 && finished(await store.listRuns({ limit: 10 })).length >= 3);
  } finally {
    await scheduler.stop();
  }
  const runs = await store.listRuns({ limit: 10 });
  await store.close();
  const byJob = (job: string) => runs.find((r) => r.job === job)!;
  const sorted = notices.sort((a, b) => a.notice.to.localeCompare(b.notice.to));
  assert.equal(sorted.map((n) => [n.key, n.notice.to, n.notice.subject]), [
    [`job:fails#${byJob('fails').id}`, 'oncall@example.com', `job fails run ${byJob('fails').id} failed`],
    [`job:slow#${byJob('slow').id}`, 'ops@example.com', `job slow run ${byJob('slow').id} finished`],
  ], 'a user no longer on the allow list gets nothing');
  const failed = sorted[0].notice;
  assert.is(failed.command, 'jobs run fails (scheduled "* * * * *")');
  assert.ok(!failed.outcome.ok && failed.outcome.error.includes('exit 3') && failed.outcome.error.includes('broken'), JSON.stringify(failed.outcome));
  const ok = sorted[1].notice;
  assert.ok(ok.outcome.ok && ok.outcome.result.kind === 'text' && ok.outcome.result.text.includes('stdout:\ndone'), JSON.stringify(ok.outcome));
});

test('stop() waits for a job the scheduler started', async () => {
  const config = schedConfig('stop');
  const store = await openServiceStore(config);
  await store.setSchedule({ job: 'slow', cron: '* * * * *', setBy: 'ops@example.com', setAt: 0 });
  let clock = new Date('2026-11-30T10:00:59Z');
  const scheduler = startScheduler({ config, owner: 'solo', now: () => clock, log: () => undefined, intervalMs: 20 });
  try {
    clock = new Date('2026-11-30T10:01:00.100Z');
    await until(async () => (await store.listRuns({ limit: 1 })).length === 1);
    assert.is((await store.listRuns({ limit: 1 }))[0].status, 'running');
  } finally {
    await scheduler.stop();
  }
  const [run] = await store.listRuns({ limit: 1 });
  assert.is(run.status, 'ok');
  assert.is(run.tail, 'done');
  await store.close();
});

test('stop(deadline) gives up on a long job at the deadline; reload() keeps the running job and the next firings', async () => {
  const { writeFileSync, rmSync } = await import('node:fs');
  const { drainWork: drainJobs } = await import('../src/services/follow-up');
  const config = schedConfig('bounded');
  const hold = join(dir, 'bounded.hold');
  writeFileSync(hold, '');
  const store = await openServiceStore(config);
  await store.setSchedule({ job: 'held', cron: '* * * * *', setBy: 'ops@example.com', setAt: 0 });
  let clock = new Date('2026-11-30T10:00:59Z');
  const logs: string[] = [];
  const scheduler = startScheduler({ config, owner: 'solo', now: () => clock, log: (level, message) => logs.push(`${level} ${message}`), intervalMs: 20 });
  try {
    clock = new Date('2026-11-30T10:01:00.100Z');
    await until(async () => (await store.listRuns({ limit: 1 })).length === 1);
    // A reload while the job runs: the job is not started a second time, the scheduler goes on.
    scheduler.reload(schedConfig('bounded'));
    clock = new Date('2026-11-30T10:02:00.100Z');
    await until(async () => logs.some((l) => l.includes('still running from its previous firing')));
    assert.ok(logs.some((l) => l.includes('still running from its previous firing')), logs.join('\n'));
    assert.is((await store.listRuns({ limit: 5 })).length, 1);

    await scheduler.stop(Date.now() + 300);
    assert.ok(logs.some((l) => l.startsWith('warn scheduled work still running at shutdown: job held')), logs.join('\n'));
    const [run] = await store.listRuns({ limit: 1 });
    assert.is(run.status, 'running', 'stop() returned while the job still ran');
  } finally {
    rmSync(hold, { force: true });
    await scheduler.stop();
    assert.ok(await drainJobs(15_000), 'the held job ends once its file is gone');
    await store.close();
  }
});

test('PostgreSQL: two agents sharing the state server fire each firing once; the run log keeps output bytes', async () => {
  if (!(await postgresReachable())) {
    if (process.env.CI) assert.unreachable(`PostgreSQL at ${PG_URL} is required in CI`);
    console.log(`  (PostgreSQL at ${PG_URL} unreachable: PostgreSQL scheduler test skipped)`);
    return;
  }
  const config = schedConfig('pg', (raw) => (raw.state.postgres = { url: PG_URL, schema: PG_SCHEMA }));
  await firesExactlyOnce(config, join(dir, 'pg.out'));

  const a = await openServiceStore(config);
  const b = await openServiceStore(config);
  try {
    // Many agents racing for one firing: one wins.
    const claims = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).claimFiring('race', 1234, `agent-${i}`)));
    assert.is(claims.filter(Boolean).length, 1);
    const bytes = Buffer.from([0, 1, 2, 255, 10, 0xe2, 0x82]);
    const id = await a.startRun({ job: 'tick', args: { x: 'y' }, who: 'ops@example.com', startedAt: 5 });
    await a.finishRun(id, { endedAt: 9, status: 'failed', exitCode: 2, signal: null, stdout: bytes, stderr: Buffer.from('bad\n'), note: 'n' }, 10);
    const run = await b.getRun(id);
    assert.equal(run!.stdout, bytes);
    assert.equal({ ...run!, stdout: undefined }, {
      id, job: 'tick', args: { x: 'y' }, who: 'ops@example.com', startedAt: 5, endedAt: 9, status: 'failed', exitCode: 2, signal: null, note: 'n',
      tail: run!.tail, stdout: undefined, stderr: Buffer.from('bad\n'),
    });
  } finally {
    await a.close();
    await b.close();
  }
});

test.after(async () => {
  await closeServiceStores();
  await dropSchema(PG_SCHEMA);
  cleanup();
  assert.not.ok(existsSync(dir));
});
test.run();
