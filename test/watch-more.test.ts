import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { dumpLogs, handledKey, killAgents, sleep, startAgentProcess, until, writeAgentConfig, type AgentProcess } from './support/agent-process';
import { mail, tempDir } from './support/env';
import { appendMail, fetchAll, folderCounts, sendMail, waitForCount, withImap, type FetchedMail } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';

// `mailagent watch` (the built binary) against a private Postfix + Dovecot: a job that outlives
// its first reply (and a SIGTERM that comes while it runs), and a request folder whose
// UIDVALIDITY changes between two runs of the agent.
const test = suite('watch-more');
const JOB = 'slow';
/** The job sleeps this long, well past replyAfterSeconds (1 s) and well within the drain deadline (10 s). */
const JOB_SECONDS = 3;
const REQUESTS = 'Requests';

let stack: MailStack;
let work: { dir: string; cleanup: () => void };

test.before.each(async () => {
  work = tempDir('mailagent-wmore-');
  stack = await startMailStack();
});

test.after.each(async () => {
  await killAgents();
  await stack?.stop();
  work?.cleanup();
});



/** While this file exists the job does not end: the test decides when it is past a point (first reply, SIGTERM). */
const holdFile = () => join(work.dir, 'hold');

/**
 * The job: sleeps, waits while the hold file exists (at most 30 s; the temp dir's removal ends it
 * too), then prints one line naming its run.
 */
function writeJobScript(): string {
  const script = join(work.dir, 'slow.sh');
  writeFileSync(script, [
    '#!/bin/sh',
    `sleep ${JOB_SECONDS}`,
    'i=0',
    `while [ -e '${holdFile()}' ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done`,
    'echo "slow job done, run $MAILAGENT_RUN_ID"',
    '',
  ].join('\n'));
  chmodSync(script, 0o755);
  return script;
}


/** The config of the job tests: one slow job, answered "started" after 1 s, run on the word of the allow list. */
function slowJobConfig(): string {
  const script = writeJobScript();
  return writeConfig('jobs', (raw) => {
    raw.services.jobs = { replyAfterSeconds: 1, timezone: 'UTC', jobs: { [JOB]: { description: 'sleeps, then prints a line', command: [script], timeoutSeconds: 30 } } };
    // Mail from ops over this private Postfix is trusted by address: no one-time code for jobs run.
    raw.security = { evidence: { 'jobs:run': 'allowlist' } };
  });
}

/** Without the db and jobs of the example config; a test adds what it needs. */
function writeConfig(name: string, tweak: (raw: Record<string, any>) => void = () => {}): string {
  return writeAgentConfig(stack, work.dir, name, (raw) => {
    delete raw.services.db;
    delete raw.services.jobs;
    tweak(raw);
  });
}

function startAgent(config: string): AgentProcess {
  return startAgentProcess({ config, cwd: work.dir, env: { HOME: work.dir, MAILAGENT_IMAP_PASSWORD: stack.users.agent.password } });
}

/** Every reply in ops' INBOX once nothing more can come: the agent has exited and Postfix's queue is empty. */
async function finalReplies(): Promise<FetchedMail[]> {
  await until('the Postfix queue to empty', () => stack.postfixQueueSize() === 0, 15_000);
  return fetchAll(stack, 'ops');
}

const show = (replies: FetchedMail[]) => replies.map((r) => `${r.subject} (In-Reply-To ${r.inReplyTo})`).join('\n');

/** The first reply: "started, run id N", counted as one successful command; returns N. */
function startedRunId(reply: FetchedMail, request: string): number {
  assert.is(reply.inReplyTo, request, 'the first reply answers the request');
  assert.is(reply.subject, 'Re: slow one — processed (1 ok, 0 failed)');
  const started = new RegExp(`job ${JOB}: started, run id (\\d+)\\.`).exec(reply.text);
  assert.ok(started, `the first reply says the job started, with its run id:\n${reply.text}`);
  return Number(started![1]);
}

/** The follow-up: threaded under the same request, "job slow run N finished", the job's output in its body. */
function assertFollowUp(reply: FetchedMail, request: string, runId: number): void {
  assert.is(reply.inReplyTo, request, 'the follow-up is threaded under the request');
  assert.ok(reply.references.includes(request), `References names the request: ${reply.references}`);
  assert.is(reply.subject, `Re: slow one — job ${JOB} run ${runId} finished`);
  assert.match(reply.text, `slow job done, run ${runId}`, 'the follow-up holds the job\'s output');
}

/** Sends `jobs run slow` and waits for the first ("started") reply; returns the request's Message-ID, the run id and the reply. */
async function askForSlowJob(agent: AgentProcess): Promise<{ request: string; runId: number; first: FetchedMail }> {
  writeFileSync(holdFile(), '');
  const request = await sendMail(stack, { subject: 'slow one', text: `jobs run ${JOB}\n` });
  await agent.waitFor(handledKey(request), { timeoutMs: 30_000 });
  await agent.waitFor((l) => l.msg === 'sent', { timeoutMs: 30_000 });
  await waitForCount(stack, 'ops', 1, { timeoutMs: 30_000, intervalMs: 100 });
  const replies = await fetchAll(stack, 'ops');
  assert.is(replies.length, 1, `one reply so far (the job is still running):\n${show(replies)}`);
  return { request, runId: startedRunId(replies[0], request), first: replies[0] };
}

test('a job that outlives replyAfterSeconds gets two mails: "started, run id N", then "job slow run N finished"', async () => {
  const agent = startAgent(slowJobConfig());
  await agent.waitFor((l) => l.msg === 'ready', { timeoutMs: 30_000 });
  const { request, runId, first } = await askForSlowJob(agent);
  rmSync(holdFile());

  await waitForCount(stack, 'ops', 2, { timeoutMs: 30_000, intervalMs: 100 });
  agent.child.kill('SIGTERM');
  assert.is(await agent.exit, 0, 'the agent stops cleanly');
  const replies = await finalReplies();
  assert.is(replies.length, 2, `exactly two replies:\n${show(replies)}`);
  assert.is(replies[0].messageId, first.messageId, 'the "started" reply comes first');
  assertFollowUp(replies[1], request, runId);
  assert.is.not(replies[1].messageId, replies[0].messageId, 'two different mails');
  assert.equal(await folderCounts(stack, 'agent', ['INBOX', 'Processing', 'Processed']), { INBOX: 0, Processing: 0, Processed: 1 });
});

test('SIGTERM while the job runs: the agent waits for it, mails the result, then exits 0', async () => {
  const agent = startAgent(slowJobConfig());
  await agent.waitFor((l) => l.msg === 'ready', { timeoutMs: 30_000 });
  const { request, runId } = await askForSlowJob(agent);

  // The job is held until the agent has taken the signal: it is certainly still running then.
  const stoppingFrom = agent.logs.length;
  agent.child.kill('SIGTERM');
  const stopping = await agent.waitFor((l) => l.msg === 'stopping', { from: stoppingFrom, timeoutMs: 5000 });
  await sleep(500);
  assert.is(agent.child.exitCode, null, 'the agent waits for the job');
  rmSync(holdFile());
  assert.is(await agent.exit, 0, `the agent exits 0 after the drain; log:\n${dumpLogs(agent.logs.slice(-20))}`);

  // The follow-up went out during the shutdown, after the signal: the agent waited for the job.
  const sentAfterStop = agent.logs.filter((l) => l.line.msg === 'sent' && l.at >= stopping.at);
  assert.is(sentAfterStop.length, 1, `one reply (the follow-up) sent after "stopping"; log:\n${dumpLogs(agent.logs.slice(-20))}`);
  const warnings = agent.logs.filter((l) => /jobs still running|still waiting in the outbox/.test(l.line.msg ?? ''));
  assert.is(warnings.length, 0, `nothing left behind at shutdown:\n${dumpLogs(warnings)}`);

  await waitForCount(stack, 'ops', 2, { timeoutMs: 30_000, intervalMs: 100 });
  const replies = await finalReplies();
  assert.is(replies.length, 2, `exactly two replies:\n${show(replies)}`);
  assertFollowUp(replies[1], request, runId);
});

test('SIGTERM while a job runs for a minute: the agent gives up on it at the drain deadline and exits 0 soon after', async () => {
  const hold = join(work.dir, 'long.hold');
  const script = join(work.dir, 'long.sh');
  // Runs while its hold file exists, 60 s at most; the test removes the file at the end.
  writeFileSync(script, `#!/bin/sh\ni=0\nwhile [ -e '${hold}' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done\necho long job done\n`);
  chmodSync(script, 0o755);
  writeFileSync(hold, '');
  try {
    const agent = startAgent(writeConfig('long', (raw) => {
      raw.services.jobs = { replyAfterSeconds: 1, timezone: 'UTC', jobs: { long: { description: 'runs for a minute', command: [script], timeoutSeconds: 120 } } };
      raw.security = { evidence: { 'jobs:run': 'allowlist' } };
    }));
    await agent.waitFor((l) => l.msg === 'ready', { timeoutMs: 30_000 });
    const request = await sendMail(stack, { subject: 'long one', text: 'jobs run long\n' });
    await agent.waitFor(handledKey(request), { timeoutMs: 30_000 });
    await agent.waitFor((l) => l.msg === 'sent', { timeoutMs: 30_000 });

    const signalledAt = Date.now();
    agent.child.kill('SIGTERM');
    assert.is(await agent.exit, 0, `exit 0; log:\n${dumpLogs(agent.logs.slice(-20))}`);
    const seconds = (Date.now() - signalledAt) / 1000;
    // The drain deadline is 10 s; the job would hold the process for a minute.
    assert.ok(seconds < 10 + 8, `the agent exited ${seconds} s after SIGTERM; log:\n${dumpLogs(agent.logs.slice(-20))}`);
    assert.ok(agent.logs.some((l) => /jobs or backups still running at shutdown/.test(l.line.msg ?? '')), 'the unfinished job is reported');
    assert.ok(agent.logs.some((l) => l.line.msg === 'stopped'));
  } finally {
    rmSync(hold, { force: true });
  }
});

/** UIDVALIDITY of a folder of the agent's mailbox, as the server reports it. */
async function uidValidity(folder: string): Promise<bigint> {
  return withImap(stack, 'agent', async (client) => {
    const status = await client.status(folder, { uidValidity: true });
    assert.ok(status.uidValidity !== undefined, `the server reports the UIDVALIDITY of ${folder}`);
    return status.uidValidity!;
  });
}

test('UIDVALIDITY change of the request folder: the new request is answered, the one answered before is not answered again', async () => {
  const config = writeConfig('uv', (raw) => (raw.imap.mailbox = REQUESTS));
  await withImap(stack, 'agent', async (client) => void (await client.mailboxCreate(REQUESTS)));
  const oldId = `<uv-old-${process.pid}-${Date.now().toString(36)}@example.com>`;
  const oldRequest = mail('status\n', { Subject: 'first', 'Message-ID': oldId });
  await appendMail(stack, 'agent', oldRequest, REQUESTS);

  const first = startAgent(config);
  await first.waitFor((l) => l.msg === 'ready' && l.mailbox === REQUESTS, { timeoutMs: 30_000 });
  await first.waitFor(handledKey(oldId), { timeoutMs: 30_000 });
  await waitForCount(stack, 'ops', 1, { timeoutMs: 30_000, intervalMs: 100 });
  first.child.kill('SIGTERM');
  assert.is(await first.exit, 0, 'the first agent stops cleanly');
  assert.equal(await folderCounts(stack, 'agent', [REQUESTS, 'Processing', 'Processed', 'Rejected']), { [REQUESTS]: 0, Processing: 0, Processed: 1, Rejected: 0 });

  // Recreate the folder: the server starts its UIDs over under a new UIDVALIDITY.
  const before = await uidValidity(REQUESTS);
  await withImap(stack, 'agent', async (client) => {
    await client.mailboxDelete(REQUESTS);
    await client.mailboxCreate(REQUESTS);
  });
  const after = await uidValidity(REQUESTS);
  assert.is.not(after, before, 'recreating the folder gave it a new UIDVALIDITY');

  // The answered request again, byte for byte, and a new one.
  await appendMail(stack, 'agent', oldRequest, REQUESTS);
  const newId = `<uv-new-${process.pid}-${Date.now().toString(36)}@example.com>`;
  await appendMail(stack, 'agent', mail('status\n', { Subject: 'second', 'Message-ID': newId }), REQUESTS);

  const second = startAgent(config);
  await second.waitFor((l) => l.msg === 'ready' && l.mailbox === REQUESTS, { timeoutMs: 30_000 });
  assert.is(String(second.logs.find((l) => l.line.msg === 'ready')!.line.uidValidity), String(after), 'the agent reads the recreated folder');
  const again = await second.waitFor(handledKey(oldId), { timeoutMs: 30_000 });
  await second.waitFor(handledKey(newId), { timeoutMs: 30_000 });
  await waitForCount(stack, 'ops', 2, { timeoutMs: 30_000, intervalMs: 100 });
  second.child.kill('SIGTERM');
  assert.is(await second.exit, 0, 'the second agent stops cleanly');

  // Answered before: recognised by the journal, not run or answered again, filed as a refusal.
  assert.is(again.line.decision, 'dropped', `the old request is dropped:\n${JSON.stringify(again.line)}`);
  assert.is(again.line.reason, 'duplicate of a message already answered');
  const replies = await finalReplies();
  assert.is(replies.length, 2, `exactly two replies in all:\n${show(replies)}`);
  assert.equal(replies.map((r) => r.inReplyTo), [oldId, newId], 'one reply to each request');
  assert.equal(await folderCounts(stack, 'agent', [REQUESTS, 'Processing', 'Processed', 'Rejected']), { [REQUESTS]: 0, Processing: 0, Processed: 2, Rejected: 1 });
});

test.run();
