import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SqliteStore } from '../src/state/sqlite-store';
import { dumpLogs, handledKey, killAgents, sleep, startAgentProcess, until, writeAgentConfig, type AgentProcess } from './support/agent-process';
import { mail, tempDir } from './support/env';
import { appendMail, fetchAll, folderCounts, sendMail, sendMails, waitForCount, type FetchedMail } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';

// `mailagent watch` (the built binary) against a private Postfix + Dovecot: requests go in through
// Postfix to agent@example.com, replies come back through Postfix to ops@example.com and are read
// over IMAP. Crashes, server restarts and outages are real ones (kill -9, daemons stopped).
const test = suite('watch');
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const AGENT_FOLDERS = ['INBOX', 'Processing', 'Processed', 'Rejected'];
const QUERY = 'db query name=tickets_by_priority priority=1';

let stack: MailStack;
let work: { dir: string; cleanup: () => void };
const agents = new Set<AgentProcess>();

test.before.each(async () => {
  work = tempDir('mailagent-watch-');
  require('../examples/demo-db.mjs').createDemoDatabase(join(work.dir, 'demo.db'));
  stack = await startMailStack();
});

test.after.each(async () => {
  await killAgents();
  await stack?.stop();
  work?.cleanup();
});


/** Each agent gets its own state folder unless told otherwise; hundreds of requests from one sender are the point. */
function writeConfig(name: string, tweak: (raw: Record<string, any>) => void = () => {}): string {
  return writeAgentConfig(stack, work.dir, name, (raw) => {
    raw.security = { messagesPerUserPerHour: 100_000, repliesPerHour: 100_000 };
    delete raw.services.jobs;
    tweak(raw);
  });
}

function startAgent(config: string): AgentProcess {
  const agent = startAgentProcess({ config, cwd: work.dir, env: { HOME: work.dir, MAILAGENT_IMAP_PASSWORD: stack.users.agent.password } });
  agents.add(agent);
  agent.exit.then(() => agents.delete(agent));
  return agent;
}



/** Replies in ops' INBOX grouped by the request they answer (In-Reply-To). */
function byRequest(replies: FetchedMail[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of replies) out.set(r.inReplyTo, (out.get(r.inReplyTo) ?? 0) + 1);
  return out;
}

/**
 * Every request answered, by exactly one reply each, and nothing else answered. `resends` allows
 * that many requests to have their one reply delivered twice — the very same message (same
 * Message-ID), never a second run: after a kill -9 between the SMTP server's "250 OK" for a reply
 * and the store recording it as sent, the next agent cannot know the reply went out and sends it
 * again. No SMTP client can close that window; what the agent guarantees is that a request is
 * executed and answered once, and a crash costs at most an identical copy of replies in flight.
 */
function assertOneReplyEach(ids: string[], replies: FetchedMail[], resends = 0): void {
  const counts = byRequest(replies);
  const missing = ids.filter((id) => !counts.has(id));
  const doubled = [...counts].filter(([, n]) => n > 1);
  const replyIds = (request: string) => new Set(replies.filter((r) => r.inReplyTo === request).map((r) => r.messageId));
  const distinct = doubled.filter(([k]) => replyIds(k).size > 1);
  const strangers = [...counts.keys()].filter((k) => !ids.includes(k));
  const show = (list: [string, number][]) => list.slice(0, 5).map(([k, n]) => `${k}×${n}`).join(' ');
  assert.equal({ missing: missing.length, answeredTwice: distinct.length, strangers: strangers.length }, { missing: 0, answeredTwice: 0, strangers: 0 },
    `missing ${missing.slice(0, 5).join(' ')}; two different replies: ${show(distinct)}; strangers ${strangers.slice(0, 5).join(' ')}`);
  assert.ok(doubled.length <= resends && doubled.every(([, n]) => n === 2),
    `${doubled.length} replies delivered again (allowed: ${resends}, each at most twice): ${show(doubled)}\n`
    + doubled.slice(0, 3).flatMap(([k]) => [...replyIds(k)].flatMap(deliveryTrail)).join('\n'));
  assert.is(replies.length, ids.length + doubled.length);
}

/** The lines of one of the stack's logs (postfix.log, dovecot.log); none when it is not there. */
function stackLog(name: string): string[] {
  try {
    return readFileSync(join(stack.dir, name), 'utf8').split('\n');
  } catch {
    return [];
  }
}

/** Postfix's delivery lines (status=sent/deferred/bounced), for a failure message. */
function postfixDeliveries(): string[] {
  const lines = stackLog('postfix.log');
  return lines.length ? lines.filter((l) => l.includes(' status=')) : ['(no postfix.log)'];
}

/**
 * What Postfix and Dovecot logged about one message: whether a copy came from the agent handing it
 * over twice (two queue IDs) or from Postfix delivering one queue entry twice (LMTP cut off after
 * Dovecot had saved it).
 */
function deliveryTrail(messageId: string): string[] {
  const postfix = stackLog('postfix.log');
  const queueIds = new Set(postfix.filter((l) => l.includes(`message-id=${messageId}`)).map((l) => /: ([0-9A-F]{6,}): /.exec(l)?.[1]).filter(Boolean));
  return [`${messageId}: Postfix queue IDs ${[...queueIds].join(' ') || '(none)'}`,
    ...postfix.filter((l) => [...queueIds].some((q) => l.includes(`${q}: `))),
    ...stackLog('dovecot.log').filter((l) => l.includes(messageId))];
}

/**
 * Waits until `n` replies are in ops' INBOX and nothing more is on its way (the agents' outbox and
 * the Postfix queue are empty), so that a duplicate would be seen too.
 */
async function settledReplies(n: number, timeoutMs: number, outboxDepth: () => Promise<number>): Promise<FetchedMail[]> {
  // A reply Postfix deferred (Dovecot was down when it came) is retried now, not at its next
  // queue run: these tests are about the agent, not Postfix's retry timers.
  const flusher = setInterval(() => void stack.flushQueue(), 2000);
  try {
    await waitForCount(stack, 'ops', n, { timeoutMs, intervalMs: 250 });
  } catch (err) {
    // Say where the missing replies are: still in the outbox, in Postfix, or nowhere.
    const trouble = [...agents].flatMap((a) => a.logs.filter((l) => l.line.level !== 'info' && l.line.level !== 'debug'));
    throw new Error(`${(err as Error).message}; outbox depth ${await outboxDepth().catch((e) => e.message)}, `
      + `Postfix queue ${stack.postfixQueueSize()}; agents' warnings and errors:\n${dumpLogs(trouble.slice(-20))}\n`
      + `Postfix's last deliveries:\n${postfixDeliveries().slice(-10).join('\n')}`);
  } finally {
    clearInterval(flusher);
  }
  await until('the outbox to empty', async () => (await outboxDepth()) === 0, 20_000);
  await until('the Postfix queue to empty', () => stack.postfixQueueSize() === 0, 10_000);
  return fetchAll(stack, 'ops');
}

async function sqliteOutboxDepth(stateFile: string): Promise<number> {
  const store = new SqliteStore(stateFile);
  try {
    return (await store.outboxStats()).depth;
  } finally {
    await store.close();
  }
}

test('a request sent through Postfix is answered in ops@example.com\'s mailbox: threaded, with the transcript', async () => {
  const agent = startAgent(writeConfig('a'));
  await agent.waitFor((l) => l.msg === 'ready');
  const id = await sendMail(stack, { subject: 'urgent tickets', text: `${QUERY}\nthanks\n` });
  await agent.waitFor(handledKey(id));
  await waitForCount(stack, 'ops', 1);
  const [reply] = await fetchAll(stack, 'ops');

  assert.is(reply.subject, 'Re: urgent tickets — processed (1 ok, 0 failed)');
  assert.is(reply.inReplyTo, id);
  assert.match(reply.references, id);
  assert.match(reply.from, 'agent@example.com');
  assert.match(reply.to, 'ops@example.com');
  assert.is(reply.headers['auto-submitted'], 'auto-replied');
  const lines = reply.text.split('\n');
  const echo = lines.findIndex((l) => l.trim() === `> ${QUERY}`);
  assert.ok(echo >= 0, `the transcript quotes the command:\n${reply.text}`);
  assert.match(lines.slice(echo + 1).join('\n'), /\bid\b.*\bhost\b.*\bstatus\b.*\btitle\b/, 'then the result table');
  assert.equal(await folderCounts(stack, 'agent', AGENT_FOLDERS), { INBOX: 0, Processing: 0, Processed: 1, Rejected: 0 });
});

test('kill -9 in the middle of 200 queued requests, then a restart: none lost, no second answer, only replies in flight resent', async () => {
  const config = writeConfig('a');
  const ids = await sendMails(stack, Array.from({ length: 200 }, (_, i) => ({ subject: `batch ${i}`, text: `${QUERY}\n` })));
  await waitForCount(stack, 'agent', 200, { timeoutMs: 60_000 });

  const first = startAgent(config);
  await first.waitFor((l) => l.msg === 'handled' && first.count((x) => x.msg === 'handled') >= 60, { timeoutMs: 60_000 });
  first.child.kill('SIGKILL');
  await first.exit;
  const handledBeforeKill = first.count((l) => l.msg === 'handled');
  assert.ok(handledBeforeKill < 200, `the kill came before the end (${handledBeforeKill} handled)`);

  const second = startAgent(config);
  await second.waitFor((l) => l.msg === 'ready', { timeoutMs: 60_000 });
  const replies = await settledReplies(200, 90_000, () => sqliteOutboxDepth(join(work.dir, 'a', 'state.db')));
  // Replies in flight at the kill may arrive twice (see assertOneReplyEach): at most one outbox
  // pass, which takes no more replies than the agent's 4 SMTP connections.
  assertOneReplyEach(ids, replies, 4);
  const counts = await folderCounts(stack, 'agent', AGENT_FOLDERS);
  assert.equal(counts, { INBOX: 0, Processing: 0, Processed: 200, Rejected: 0 });

  second.child.kill('SIGTERM');
  assert.is(await second.exit, 0);
});

test('Dovecot restarted under a running agent: it reconnects within 5 s and answers the mail that came meanwhile', async () => {
  const agent = startAgent(writeConfig('a'));
  await agent.waitFor((l) => l.msg === 'ready');
  const before = await sendMail(stack, { subject: 'before', text: `${QUERY}\n` });
  await agent.waitFor(handledKey(before));
  // Its reply delivered first: Dovecot stopped in the middle of an LMTP delivery has saved the
  // mail without saying so to Postfix, which then delivers it again ("message may be sent more
  // than once"): a copy made by the mail stack, not by the agent.
  await waitForCount(stack, 'ops', 1, { timeoutMs: 30_000, intervalMs: 100 });
  await until('an empty Postfix queue', () => stack.postfixQueueSize() === 0, 30_000);

  const mark = agent.logs.length;
  await stack.stopDovecot();
  await agent.waitFor((l) => l.msg === 'IMAP connection lost' || l.msg === 'reconnecting', { from: mark, timeoutMs: 10_000 });
  // Postfix takes this one and defers it until Dovecot's LMTP is back.
  const away = await sendMail(stack, { subject: 'while away', text: `${QUERY}\n` });
  await sleep(1000);
  await stack.startDovecot();
  const upAt = Date.now();
  const after = await sendMail(stack, { subject: 'right after', text: `${QUERY}\n` });

  const reconnected = await agent.waitFor((l) => l.msg === 'connected', { from: mark, timeoutMs: 30_000 });
  const ms = reconnected.at - upAt;
  assert.ok(ms < 5000, `reconnected ${ms} ms after Dovecot was back`);

  await agent.waitFor(handledKey(away), { timeoutMs: 30_000 });
  await agent.waitFor(handledKey(after), { timeoutMs: 30_000 });
  const replies = await settledReplies(3, 30_000, () => sqliteOutboxDepth(join(work.dir, 'a', 'state.db')));
  assertOneReplyEach([before, away, after], replies);
  assert.equal(await folderCounts(stack, 'agent', AGENT_FOLDERS), { INBOX: 0, Processing: 0, Processed: 3, Rejected: 0 });
});

test('Postfix stopped: replies wait in the outbox, and arrive once Postfix is back', async () => {
  const config = writeConfig('a');
  const stateFile = join(work.dir, 'a', 'state.db');
  const agent = startAgent(config);
  await agent.waitFor((l) => l.msg === 'ready');
  await stack.stopPostfix();

  // With Postfix down, requests reach the mailbox the other way: IMAP APPEND.
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const id = `<outage-${i}-${process.pid}-${Date.now()}@example.com>`;
    ids.push(id);
    await appendMail(stack, 'agent', mail(`${QUERY}\n`, { Subject: `outage ${i}`, 'Message-ID': id }));
  }
  for (const id of ids) await agent.waitFor(handledKey(id));
  await agent.waitFor((l) => l.msg === 'reply not sent, will retry');
  assert.is(await sqliteOutboxDepth(stateFile), 3, 'three replies wait in the outbox');
  // Filed as soon as the reply is stored, not when it is sent.
  await waitForCount(stack, 'agent', 3, { folder: 'Processed' });
  assert.equal(await folderCounts(stack, 'ops', ['INBOX']), { INBOX: 0 });

  await stack.startPostfix();
  const replies = await settledReplies(3, 60_000, () => sqliteOutboxDepth(stateFile));
  assertOneReplyEach(ids, replies);
  assert.ok(agent.count((l) => l.msg === 'sent') >= 3);
});

test('three agents on one mailbox sharing a PostgreSQL state store: 300 requests, exactly one reply each', async () => {
  const { Client } = require('pg') as typeof import('pg');
  const schema = `mailagent_watch_${process.pid}_${Date.now().toString(36)}`;
  const pg = new Client({ connectionString: PG_URL });
  await pg.connect();
  try {
    const crew = ['a', 'b', 'c'].map((name) =>
      startAgent(writeConfig(name, (raw) => (raw.state.postgres = { url: PG_URL, schema }))));
    for (const a of crew) await a.waitFor((l) => l.msg === 'ready', { timeoutMs: 30_000 });

    const ids = await sendMails(stack, Array.from({ length: 300 }, (_, i) => ({ subject: `shared ${i}`, text: `${QUERY}\n` })));
    const pending = async () => Number((await pg.query(`SELECT count(*) AS n FROM "${schema}".mailagent_journal WHERE state = 'reply-pending'`)).rows[0].n);
    const replies = await settledReplies(300, 120_000, pending);
    assertOneReplyEach(ids, replies);
    // Nothing may stay behind in Processing, not even a second copy of a request: two agents that
    // MOVE the same message at the same moment can both succeed on Dovecot (MOVE is copy + expunge).
    const left = await fetchAll(stack, 'agent', 'Processing');
    const processed = new Set((await fetchAll(stack, 'agent', 'Processed')).map((m) => m.messageId));
    assert.is(left.length, 0, `${left.length} messages left in Processing, ${left.filter((m) => processed.has(m.messageId)).length} of them copies of answered requests`);
    assert.equal(await folderCounts(stack, 'agent', AGENT_FOLDERS), { INBOX: 0, Processing: 0, Processed: 300, Rejected: 0 });
    const executed = crew.map((a) => a.count((l) => l.msg === 'handled' && l.decision === 'executed'));
    assert.is(executed.reduce((x, y) => x + y, 0), 300, `each request executed once in all (per agent: ${executed.join(', ')})`);

    for (const a of crew) a.child.kill('SIGTERM');
    assert.equal(await Promise.all(crew.map((a) => a.exit)), [0, 0, 0]);
  } finally {
    for (const a of [...agents]) {
      a.child.kill('SIGKILL');
      await a.exit;
    }
    await pg.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await pg.end();
  }
});

test.run();
