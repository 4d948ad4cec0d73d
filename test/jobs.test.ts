import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Config } from '../src/config/types';
import { ConfigError, validateConfig } from '../src/config/load';
import { processMessage } from '../src/core/pipeline';
import { closeServiceStores } from '../src/services/jobs';
import { drainWork as drainJobs } from '../src/services/follow-up';
import { buildArgv, executeProcess, startJob } from '../src/services/jobs/runner';
import { bindServiceStore, serviceStoreFor } from '../src/services/stores';
import { MemoryServiceStore, SqliteServiceStore } from '../src/state/service-store';
import { MemoryStore } from '../src/state/store';
import { demoConfig, exampleConfigObject, mail, tempDir, testDeps } from './support/env';
import { readReply } from './support/reply';

const { dir, cleanup } = tempDir('mailagent-jobs-');
const work = join(dir, 'work');
mkdirSync(work);

/** Writes its argv, working directory and a few variables as JSON to out-<run id>.json. */
const ECHO = join(dir, 'echo-argv.js');
writeFileSync(
  ECHO,
  `const fs = require('fs');
const env = process.env;
fs.writeFileSync(require('path').join(${JSON.stringify(dir)}, 'out-' + env.MAILAGENT_RUN_ID + '.json'), JSON.stringify({
  argv: process.argv.slice(2), cwd: process.cwd(), greeting: env.GREETING, token: env.API_TOKEN, leaked: env.JOBS_TEST_AGENT_ONLY ?? null, job: env.MAILAGENT_JOB,
}));
console.log('echoed ' + (process.argv.length - 2) + ' arguments');`,
);
/** Starts a background sleep and a foreground sleep, and says who they are. */
const TREE = join(dir, 'tree.sh');
// The background sleep outlives the foreground one: only a kill of the whole group stops both in time.
writeFileSync(TREE, `#!/bin/sh\nsleep 60 &\necho "$! $$" > ${JSON.stringify(join(dir, 'pids'))}\nsleep 30\n`, { mode: 0o755 });

process.env.JOBS_TEST_SECRET = 'token-from-env';
process.env.JOBS_TEST_AGENT_ONLY = 'agent secret';

function jobsSection(extra: Record<string, unknown> = {}) {
  return {
    timezone: 'UTC',
    replyAfterSeconds: 30,
    ...extra,
    jobs: {
      'echo-args': {
        description: 'writes its arguments to a file',
        command: [process.execPath, ECHO, '{text}', 'prefix-{text}-suffix', '{opt}'],
        cwd: 'work',
        env: { GREETING: 'hello', API_TOKEN: { env: 'JOBS_TEST_SECRET' } },
        params: { text: { type: 'string', required: true, maxLength: 500 }, opt: { type: 'string', pattern: '-?[a-z]+' } },
      },
      sleeper: { command: ['/bin/sh', TREE], timeoutSeconds: 1 },
      chatty: { command: ['/bin/sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" x; echo; echo END'], maxOutputBytes: 4096 },
      fails: { command: ['/bin/sh', '-c', 'echo started; echo oops >&2; exit 3'] },
      slow: { command: ['/bin/sh', '-c', 'sleep 1; echo slow done'] },
      'report-daily': { command: ['echo', 'daily report'] },
      'report-weekly': { command: ['echo', 'weekly report'] },
      needs: { command: ['echo', '{what}'], params: { what: { type: 'string', required: true } } },
    },
  };
}

function jobsConfig(extra: Record<string, unknown> = {}): Config {
  return demoConfig(dir, (raw) => {
    raw.services.jobs = jobsSection(extra);
    raw.security = { evidence: { 'jobs:*': 'allowlist' } };
    raw.roles.reporter = ['jobs:run name=report-*', 'jobs:log name=report-*'];
    raw.users.push({ address: 'rep@example.com', roles: ['reporter'] });
  });
}

const config = jobsConfig();

async function send(body: string, cfg = config) {
  return readReply(await processMessage(mail(body), testDeps(cfg)));
}

async function sendAs(from: string, body: string, cfg = config) {
  return readReply(await processMessage(mail(body, { From: from }), testDeps(cfg)));
}

const output = (runId: number) => JSON.parse(readFileSync(join(dir, `out-${runId}.json`), 'utf8'));
const runIdIn = (text: string, job: string) => Number(new RegExp(`job ${job}, run (\\d+)`).exec(text)![1]);

function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  // Killed but not yet reaped by its new parent: a zombie runs nothing.
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

/** A killed process takes a moment to be torn down by the kernel; wait (bounded) for it. */
async function goneSoon(pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && !gone(pid); i++) await new Promise((r) => setTimeout(r, 20));
  return gone(pid);
}

test('the example config with its demo jobs is valid and the demo jobs run on this machine', async () => {
  const example = demoConfig(dir);
  const reply = await readReply(await processMessage(mail('jobs run uptime\njobs run disk-usage dir=log\notp=000000'), testDeps(example)));
  // Mutating commands need strong evidence by default: the wrong code stops everything.
  assert.match(reply.text!, /^Nothing was run: .*one-time code/);
  const allowed = demoConfig(dir, (raw) => (raw.security = { evidence: { 'jobs:*': 'allowlist' } }));
  const ran = await readReply(await processMessage(mail('jobs run uptime\njobs run disk-free'), testDeps(allowed)));
  assert.is(ran.subject, 'Re: test — processed (2 ok, 0 failed)', ran.text);
  assert.match(ran.text!, /job uptime, run \d+: exit 0/);
  assert.match(ran.text!, /Filesystem/);
});

test('mail arguments arrive as literal argv elements: no shell sees ;, $( ), backticks or quotes', async () => {
  const values = ['; rm -rf /', '$(id)', '`touch pwned`', 'it\'s "quoted" \\ back', '$HOME && echo hi | cat > x'];
  const body = values.map((v) => `jobs run echo-args text="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join('\n');
  const reply = await send(`${body}\njobs run echo-args text=plain opt=-x`);
  assert.is(reply.subject, `Re: test — processed (${values.length + 1} ok, 0 failed)`, reply.text);
  const ids = [...reply.text!.matchAll(/job echo-args, run (\d+)/g)].map((m) => Number(m[1]));
  assert.is(ids.length, values.length + 1);
  values.forEach((v, i) => assert.equal(output(ids[i]).argv, [v, `prefix-${v}-suffix`]));
  assert.equal(output(ids[values.length]).argv, ['plain', 'prefix-plain-suffix', '-x']);
  assert.not.ok(existsSync(join(work, 'pwned')), 'a backtick value was executed');
  assert.not.ok(existsSync(join(work, 'x')), 'a redirection was executed');
});

test('newlines and other control characters in a value reach the job unchanged', async () => {
  const store = new MemoryServiceStore();
  const text = 'line one\nline two\r\n\ttabbed; $(id)';
  const started = await startJob({ config, store, name: 'echo-args', given: { text }, values: { text, opt: null }, who: 'test', now: () => new Date() });
  const result = await started.done;
  assert.is(result.status, 'ok');
  assert.equal(output(started.id).argv, [text, `prefix-${text}-suffix`]);
  assert.equal(buildArgv(config.services.jobs!.jobs['echo-args'], { text: 'a', opt: null }).slice(2), ['a', 'prefix-a-suffix']);
});

test('the job runs in its working directory with its own environment, not the agent\'s', async () => {
  const reply = await send('jobs run echo-args text=env');
  const seen = output(runIdIn(reply.text!, 'echo-args'));
  assert.is(seen.cwd, realpathSync(work));
  assert.is(seen.greeting, 'hello');
  assert.is(seen.token, 'token-from-env');
  assert.is(seen.job, 'echo-args');
  assert.is(seen.leaked, null);
  assert.not.match(reply.text!, 'token-from-env');
});

test('a timeout stops the whole process group: the job and the child it started', async () => {
  const reply = await send('jobs run sleeper');
  assert.is(reply.subject, 'Re: test — processed (0 ok, 1 failed)');
  assert.match(reply.text!, /ERROR: job sleeper, run \d+: timed out \(stopped after the timeout of 1 s\)/);
  const [child, shell] = readFileSync(join(dir, 'pids'), 'utf8').trim().split(' ').map(Number);
  try {
    assert.ok(await goneSoon(shell), `the job's shell ${shell} is still running`);
    assert.ok(await goneSoon(child), `the background sleep ${child} is still running`);
  } finally {
    for (const pid of [child, shell]) if (!gone(pid)) process.kill(pid, 'SIGKILL');
  }
});

test('a job that ignores SIGTERM is killed with SIGKILL after the grace period, children included', async () => {
  const pidFile = join(dir, 'stubborn-pid');
  const result = await executeProcess({
    argv: ['/bin/sh', '-c', `trap "" TERM; sleep 30 & echo $! > ${JSON.stringify(pidFile)}; wait`],
    cwd: dir,
    env: { PATH: process.env.PATH! },
    timeoutMs: 300,
    killGraceMs: 300,
    maxOutputBytes: 1024,
    startedAt: 0,
  });
  assert.is(result.status, 'timeout');
  assert.is(result.signal, 'SIGKILL');
  const child = Number(readFileSync(pidFile, 'utf8'));
  try {
    assert.ok(await goneSoon(child), 'the child that ignored SIGTERM is still running');
  } finally {
    if (!gone(child)) process.kill(child, 'SIGKILL');
  }
});

test('output over the cap is cut in the middle with a note; the log keeps head and end', async () => {
  const reply = await send('jobs run chatty');
  assert.is(reply.subject, 'Re: test — processed (1 ok, 0 failed)', reply.text);
  assert.match(reply.text!, 'output over 4096 bytes per stream was cut in the middle');
  const id = runIdIn(reply.text!, 'chatty');
  const run = await (await serviceStoreFor(config)).getRun(id);
  const stdout = run!.stdout.toString();
  assert.ok(stdout.length < 4096 + 200, `kept ${stdout.length} bytes`);
  assert.match(stdout, /^x{2048}\n\[\.\.\. output truncated: \d+ of 300005 bytes omitted \(cap 4096 bytes\) \.\.\.\]\n/);
  assert.ok(stdout.endsWith('x\nEND\n'));
});

test('a non-zero exit is a failed command with its exit code and the end of stderr', async () => {
  const reply = await send('jobs run fails');
  assert.is(reply.subject, 'Re: test — processed (0 ok, 1 failed)');
  assert.match(reply.text!, /ERROR: job fails, run \d+: exit 3 after \d+\.\d s\nstdout:\nstarted\nstderr:\noops/);
});

test('an unknown job or a bad argument is refused before anything runs', async () => {
  const store = await serviceStoreFor(config);
  const before = (await store.listRuns({ limit: 1000 })).length;
  const reply = await send('jobs run echo-args text=fine\njobs run nosuch\njobs run echo-args\njobs run echo-args text=-rf\njobs run echo-args text=a opt=UPPER\njobs run echo-args text=a bogus=1');
  assert.match(reply.subject!, 'not processed (5 problems)');
  assert.match(reply.text!, 'no job named "nosuch" (jobs: echo-args, sleeper');
  assert.match(reply.text!, 'missing text=…');
  assert.match(reply.text!, 'text=-rf: a value may not start with "-"');
  assert.match(reply.text!, 'opt=UPPER: does not match the allowed form');
  assert.match(reply.text!, 'unknown argument "bogus"');
  assert.is((await store.listRuns({ limit: 1000 })).length, before);
});

test('a role limited to jobs:run name=report-* runs report jobs and nothing else', async () => {
  const ok = await sendAs('rep@example.com', 'jobs run report-daily');
  assert.is(ok.subject, 'Re: test — processed (1 ok, 0 failed)', ok.text);
  assert.match(ok.text!, 'daily report');
  const denied = await sendAs('rep@example.com', 'jobs run echo-args text=x');
  assert.match(denied.text!, 'not allowed: your roles do not grant jobs:run with these arguments');
  // The log of another job is out of reach too, also through run=<id>.
  const otherRun = (await (await serviceStoreFor(config)).listRuns({ job: 'echo-args', limit: 1 }))[0].id;
  const peek = await sendAs('rep@example.com', `jobs log report-daily run=${otherRun}`);
  assert.match(peek.text!, `ERROR: no run ${otherRun} of job report-daily in the log`);
  const noName = await sendAs('rep@example.com', `jobs log run=${otherRun}`);
  assert.match(noName.text!, 'not allowed');
});

test('run log: a table of runs, and jobs log run=<id> attaches the full output', async () => {
  const first = await send('jobs run echo-args text="log me"');
  const id = runIdIn(first.text!, 'echo-args');
  const table = await send('jobs log echo-args tail=2');
  const lines = table.text!.split('\n');
  assert.match(lines[1], /^run\s+job\s+args\s+who\s+started\s+duration\s+result\s+last output line$/);
  assert.match(lines[2], /^-+( +-+){7}$/);
  assert.match(lines[3], new RegExp(`^\\s*${id}\\s+echo-args\\s+text="log me"\\s+ops@example.com\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC\\s+\\d+\\.\\d s\\s+exit 0\\s+echoed 2 arguments$`));
  assert.match(table.text!, '(newest 2 runs; tail=N shows more; 2 rows)');

  const detail = await send(`jobs log run=${id}`);
  assert.match(detail.text!, `run ${id} of job echo-args (text="log me"), by ops@example.com`);
  assert.match(detail.text!, 'result: exit 0');
  assert.match(detail.text!, `(attached: run-${id}-stdout.txt)`);
  assert.is(detail.attachments.length, 1);
  assert.is(detail.attachments[0].filename, `run-${id}-stdout.txt`);
  assert.is(detail.attachments[0].content.toString(), 'echoed 2 arguments\n');
  const failed = await send('jobs run fails');
  const failedId = runIdIn(failed.text!, 'fails');
  const both = await send(`jobs log run=${failedId}`);
  assert.equal(both.attachments.map((a) => [a.filename, a.content.toString()]), [[`run-${failedId}-stdout.txt`, 'started\n'], [`run-${failedId}-stderr.txt`, 'oops\n']]);
  assert.match((await send('jobs log run=999999')).text!, 'ERROR: no run 999999 in the log');
});

test('a run log over 40 rows comes as a CSV attachment with every run', async () => {
  const store = await serviceStoreFor(config);
  const base = Date.parse('2026-11-01T00:00:00Z');
  for (let i = 0; i < 45; i++) {
    const id = await store.startRun({ job: 'report-weekly', args: { week: String(i) }, who: 'ops@example.com', startedAt: base + i * 60_000 });
    await store.finishRun(id, { endedAt: base + i * 60_000 + 1500, status: i % 10 === 9 ? 'failed' : 'ok', exitCode: i % 10 === 9 ? 1 : 0, signal: null, stdout: Buffer.from(`week ${i}\n`), stderr: Buffer.alloc(0) }, 500);
  }
  const reply = await send('jobs log report-weekly');
  assert.match(reply.text!, '45 rows: the first 40 are shown, all of them are in job-runs.csv');
  assert.is(reply.attachments.length, 1);
  const csv = reply.attachments[0].content.toString().trimEnd().split('\r\n');
  assert.is(csv[0], 'run,job,args,who,started,duration,result,last output line');
  assert.is(csv.length, 46);
  assert.match(csv[1], /^\d+,report-weekly,"week=""44""",ops@example.com,2026-11-01 00:44:00 UTC,1\.5 s,exit 0,week 44$/);
  assert.match(csv[6], /,exit 1,week 39$/);
  assert.match(csv[45], /,week 0$/);
});

test('jobs list is a table of jobs with their arguments and schedules', async () => {
  const reply = await send('jobs list');
  assert.match(reply.text!, /^job\s+description\s+arguments\s+timeout\s+schedule\s+next run$/m);
  assert.match(reply.text!, /^echo-args\s+writes its arguments to a file\s+text opt\s+300 s\s*$/m);
  assert.match(reply.text!, /^sleeper\s+1 s\s*$/m);
});

function nextTwoAm(now: Date): string {
  const next = new Date(now);
  next.setUTCHours(2, 0, 0, 0);
  if (next <= now) next.setUTCDate(next.getUTCDate() + 1);
  return next.toISOString().replace('T', ' ').replace('.000Z', ' UTC');
}

test('schedules: set by mail, listed with the next run time, cleared; bad ones refused', async () => {
  const set = await send('jobs schedule set report-daily cron="0 2 * * *"');
  assert.is(set.subject, 'Re: test — processed (1 ok, 0 failed)', set.text);
  assert.match(set.text!, `job report-daily is scheduled "0 2 * * *"; next run ${nextTwoAm(new Date())}`);
  const listed = await send('jobs schedule');
  assert.match(listed.text!, /^job\s+cron\s+next run\s+set by\s+set at$/m);
  assert.match(listed.text!, new RegExp(`^report-daily\\s+0 2 \\* \\* \\*\\s+${nextTwoAm(new Date())}\\s+ops@example.com\\s+\\d{4}-`, 'm'));
  assert.match((await send('jobs list')).text!, new RegExp(`^report-daily\\s+\\d+ s\\s+0 2 \\* \\* \\*\\s+${nextTwoAm(new Date())}$`, 'm'));

  const bad = await send('jobs schedule set report-daily cron="61 * * * *"\njobs schedule set nosuch cron="* * * * *"\njobs schedule set needs cron="@daily"\njobs schedule set report-daily\njobs schedule clear');
  assert.match(bad.subject!, 'not processed (5 problems)');
  assert.match(bad.text!, 'cron="61 * * * *" is not a valid cron expression (Invalid value for minute: 61)');
  assert.match(bad.text!, 'no job named "nosuch"');
  assert.match(bad.text!, 'job needs cannot run on a schedule: it needs arguments (missing what=…)');
  assert.match(bad.text!, 'missing cron="…"');
  assert.match(bad.text!, 'missing the job name: jobs schedule clear <job>');

  const cleared = await send('jobs schedule clear report-daily\njobs schedule clear report-daily\njobs schedule');
  assert.match(cleared.text!, 'the schedule of job report-daily is cleared');
  assert.match(cleared.text!, 'job report-daily had no schedule (nothing changed)');
  assert.match(cleared.text!, /> jobs schedule\njob\s+cron\s+next run\s+set by\s+set at\n[- ]+\n\(cron times are in UTC; 0 rows\)/, cleared.text);
});

test('jobs run and schedule changes need strong evidence by default', async () => {
  const strict = demoConfig(dir, (raw) => (raw.services.jobs = jobsSection()));
  const reply = await readReply(await processMessage(mail('jobs run report-daily'), testDeps(strict)));
  assert.is(reply.subject, 'Re: test — confirmation needed');
  assert.match(reply.text!, 'jobs run report-daily');
  const change = await readReply(await processMessage(mail('jobs schedule clear report-daily', { 'Message-ID': '<strict-2@example.com>' }), testDeps(strict)));
  assert.is(change.subject, 'Re: test — confirmation needed');
  // Listing the schedules changes nothing: the allow list is enough.
  const listing = await readReply(await processMessage(mail('jobs schedule', { 'Message-ID': '<strict-3@example.com>' }), testDeps(strict)));
  assert.is(listing.subject, 'Re: test — processed (1 ok, 0 failed)');
});

test('follow-up: a job outliving replyAfterSeconds gets "started" now and its result in a second, threaded mail', async () => {
  const quick = jobsConfig({ replyAfterSeconds: 0.2 });
  bindServiceStore(quick, new MemoryServiceStore());
  const store = new MemoryStore();
  const request = mail('jobs run slow', { 'Message-ID': '<long-job-1@example.com>', Subject: 'nightly' });
  const deps = testDeps(quick, { store, followUps: true });
  const first = await processMessage(request, deps);
  assert.is(first.kind, 'reply');
  const immediate = await readReply(first);
  assert.is(immediate.subject, 'Re: nightly — processed (1 ok, 0 failed)');
  const id = Number(/started, run id (\d+)/.exec(immediate.text!)![1]);
  assert.match(immediate.text!, `job slow: started, run id ${id}. It is still running after 0.2 s; the result follows in a second mail.`);
  if (first.kind === 'reply') await store.markReplied(first.key); // as watch does once the reply is sent
  assert.equal(await store.takeDueReplies(Date.now(), 60_000, 10), [], 'the second mail is queued only when the job ends');

  assert.ok(await drainJobs(10_000), 'the job and its follow-up finished');
  const queued = await store.takeDueReplies(Date.now(), 60_000, 10);
  assert.is(queued.length, 1);
  assert.is(queued[0].key, `mid:<long-job-1@example.com>#job slow run ${id}`);
  assert.equal(queued[0].reply.to, ['ops@example.com']);
  const second = await simpleParser(queued[0].reply.raw);
  assert.is(second.subject, `Re: nightly — job slow run ${id} finished`);
  assert.is(second.inReplyTo, '<long-job-1@example.com>');
  assert.is(second.headers.get('auto-submitted'), 'auto-replied');
  // The second mail is audited like the first: one record each.
  assert.equal(deps.audits.map((a) => a.decision), ['executed', 'follow-up']);
  assert.is(deps.audits[1].reason, `job slow run ${id} finished`);
  assert.is(deps.audits[1].commands![0].command, 'jobs run slow');
  assert.ok(deps.audits[1].commands![0].ms >= 1000, 'the duration covers the whole job');
  assert.match(second.text!, new RegExp(`^> jobs run slow\\njob slow, run ${id}: exit 0 after 1\\.\\d s\\nstdout:\\nslow done\\n`));

  // Without follow-ups (mailagent run), the reply waits for the job.
  const waited = await readReply(await processMessage(mail('jobs run slow'), testDeps(quick, { store: new MemoryStore() })));
  assert.match(waited.text!, /job slow, run \d+: exit 0 after 1\.\d s\nstdout:\nslow done/);
});

test('follow-up of a failing job is marked failed', async () => {
  const quick = jobsConfig({ replyAfterSeconds: 0 });
  bindServiceStore(quick, new MemoryServiceStore());
  const store = new MemoryStore();
  const outcome = await processMessage(mail('jobs run fails', { Subject: 'try' }), testDeps(quick, { store, followUps: true }));
  if (outcome.kind === 'reply') await store.markReplied(outcome.key);
  const reply = await readReply(outcome);
  assert.match(reply.text!, 'started, run id 1', reply.text);
  assert.ok(await drainJobs(10_000));
  const [queued] = await store.takeDueReplies(Date.now(), 60_000, 10);
  const second = await simpleParser(queued.reply.raw);
  assert.is(second.subject, 'Re: try — job fails run 1 failed');
  assert.match(second.text!, 'ERROR: job fails, run 1: exit 3');
});

test('config problems in jobs are reported together', () => {
  const raw = exampleConfigObject(dir);
  raw.services.jobs = {
    timezone: 'Mars/Olympus',
    jobs: {
      'bad name!': { command: ['true'] },
      fromMail: { command: ['{prog}', '{undeclared}'], params: { prog: { type: 'string' }, unused: { type: 'int' }, name: { type: 'string' } } },
      envy: { command: ['env'], env: { 'NOT-OK': 'x' }, params: {} },
    },
  };
  try {
    validateConfig(raw, join(dir, 'config.json'));
    assert.unreachable('accepted a broken jobs section');
  } catch (err) {
    assert.instance(err, ConfigError);
    const messages = (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
    assert.ok(messages.includes('services.jobs.timezone: "Mars/Olympus" is not a known time zone (e.g. Europe/Berlin, UTC)'), messages.join('\n'));
    assert.ok(messages.some((m) => m.startsWith('services.jobs.jobs.bad name!: a job name is')));
    assert.ok(messages.includes('services.jobs.jobs.fromMail.command[0]: the program itself cannot come from a mail argument'));
    assert.ok(messages.includes('services.jobs.jobs.fromMail.command[1]: uses {undeclared} but params does not declare it'));
    assert.ok(messages.includes('services.jobs.jobs.fromMail.params.unused: is declared but the command never uses {unused}'));
    assert.ok(messages.includes('services.jobs.jobs.fromMail.params.name: "name" is reserved for the jobs commands: choose another name'));
    assert.ok(messages.includes('services.jobs.jobs.envy.env.NOT-OK: is not a valid environment variable name'));
  }
});

test('the SQLite run log prunes old runs and shares the state file', async () => {
  const path = join(dir, 'prune.db');
  const a = new SqliteServiceStore(path);
  const b = new SqliteServiceStore(path);
  try {
    for (let i = 0; i < 5; i++) {
      const id = await a.startRun({ job: 'j', args: {}, who: 'x', startedAt: i });
      await a.finishRun(id, { endedAt: i + 1, status: 'ok', exitCode: 0, signal: null, stdout: Buffer.from(`run ${i}\n`), stderr: Buffer.alloc(0) }, 3);
    }
    assert.equal((await b.listRuns({ job: 'j', limit: 10 })).map((r) => r.tail), ['run 4', 'run 3', 'run 2']);
    assert.ok(await a.claimFiring('j', 1000, 'a'));
    assert.not.ok(await b.claimFiring('j', 1000, 'b'));
  } finally {
    await a.close();
    await b.close();
  }
});

test.after(async () => {
  await drainJobs(15_000);
  await closeServiceStores();
  delete process.env.JOBS_TEST_SECRET;
  delete process.env.JOBS_TEST_AGENT_ONLY;
  cleanup();
});
test.run();
