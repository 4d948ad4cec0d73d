import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { judgeHealth, type AgentRecord } from '../src/core/health';
import { DEFAULT_HEALTH } from '../src/config/types';
import { BINARY, killAgents, startAgentProcess, writeAgentConfig } from './support/agent-process';
import { tempDir } from './support/env';
import { startMailStack, type MailStack } from './support/mailstack';

// `mailagent health` against a real `watch`: the agent records its IMAP round trips in the state
// store; freezing the mail server (SIGSTOP) turns the verdict degraded, then down, within the
// configured times; thawing it makes it healthy again; a stopped agent is down; none is unknown.
const test = suite('health');
const LIMITS = { imapCheckSeconds: 1, degradedAfterSeconds: 3, downAfterSeconds: 6, outboxDegradedSeconds: 600 };

let stack: MailStack | undefined;
let work: { dir: string; cleanup: () => void };

test.before(() => {
  work = tempDir('mailagent-health-');
});

test.after(async () => {
  await killAgents();
  await stack?.stop();
  work?.cleanup();
});

function health(config: string): { code: number | null; report: Record<string, any> } {
  const r = spawnSync(BINARY, ['health', '--json', '--config', config], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, report: JSON.parse(r.stdout || '{}') };
}

/** Polls `health` until it says `verdict`; returns the seconds it took. */
async function until(config: string, verdict: string, limitS: number): Promise<number> {
  const started = Date.now();
  let last: Record<string, any> = {};
  while (Date.now() - started < limitS * 1000) {
    last = health(config).report;
    if (last.verdict === verdict) return (Date.now() - started) / 1000;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`health did not turn ${verdict} within ${limitS} s; last: ${JSON.stringify(last)}`);
}

test('judging: unknown without agents, down when none reports, degraded and down by the age of the last IMAP round trip, degraded by an old outbox', () => {
  const now = 1_000_000_000;
  const agent = (fields: Partial<AgentRecord>): { key: string; value: AgentRecord } => ({
    key: 'h:1',
    value: { host: 'h', pid: 1, startedAt: now - 60_000, updatedAt: now - 1000, connection: 'idle', handled: 0, waitingOnOtherAgents: 0, ...fields },
  });
  const judge = (records: { key: string; value: AgentRecord }[], outbox = { depth: 0 } as { depth: number; oldestQueuedAt?: number }) => judgeHealth(records, outbox, DEFAULT_HEALTH, now);
  assert.is(judge([]).verdict, 'unknown');
  assert.is(judge([agent({ lastImapOkAt: now - 5000 })]).verdict, 'healthy');
  assert.is(judge([agent({ lastImapOkAt: now - 200_000 })]).verdict, 'degraded');
  assert.is(judge([agent({ lastImapOkAt: now - 700_000 })]).verdict, 'down');
  assert.is(judge([agent({ lastImapOkAt: now - 5000, updatedAt: now - 700_000 })]).verdict, 'down', 'a record nobody rewrites: the process is gone');
  assert.is(judge([agent({ lastImapOkAt: now - 5000, stoppedAt: now - 1000 })]).verdict, 'down', 'stopped');
  const old = judge([agent({ lastImapOkAt: now - 5000 })], { depth: 3, oldestQueuedAt: now - 900_000 });
  assert.is(old.verdict, 'degraded');
  assert.match(old.reasons.join(), 'a reply has waited 900 s in the outbox (3 waiting)');
  // Two agents: the mailbox is fine while one of them gets through.
  const two = judge([agent({ lastImapOkAt: now - 700_000 }), { ...agent({ lastImapOkAt: now - 2000, handled: 5 }), key: 'h:2' }]);
  assert.is(two.verdict, 'healthy');
});

test('watch against a frozen and thawed Dovecot: healthy, degraded, down, healthy; stopped is down; no agent is unknown', async () => {
  const none = writeAgentConfig({ smtpPort: 1, imapPort: 1 } as MailStack, work.dir, 'nobody', (raw) => (raw.health = LIMITS));
  const unknown = health(none);
  assert.is(unknown.code, 3, JSON.stringify(unknown.report));
  assert.is(unknown.report.verdict, 'unknown');

  stack = await startMailStack();
  const config = writeAgentConfig(stack, work.dir, 'a', (raw) => {
    raw.health = LIMITS;
    delete raw.services.jobs;
  });
  const agent = startAgentProcess({ config, cwd: work.dir, env: { HOME: work.dir, MAILAGENT_IMAP_PASSWORD: stack.users.agent.password } });
  await agent.waitFor((l) => l.msg === 'ready', { timeoutMs: 30_000 });
  await until(config, 'healthy', 10);
  const ok = health(config);
  assert.is(ok.code, 0);
  assert.is(ok.report.agents.length, 1);

  const frozen = stack.pids();
  for (const pid of frozen) process.kill(pid, 'SIGSTOP');
  try {
    const toDegraded = await until(config, 'degraded', 15);
    assert.is(health(config).code === 1 || health(config).code === 2, true);
    const toDown = await until(config, 'down', 15);
    assert.ok(toDegraded + toDown <= LIMITS.downAfterSeconds + 6, `down after ${toDegraded + toDown} s`);
    assert.is(health(config).code, 2);
  } finally {
    for (const pid of frozen) process.kill(pid, 'SIGCONT');
  }
  await until(config, 'healthy', 20);

  agent.child.kill('SIGTERM');
  assert.is(await agent.exit, 0);
  const stopped = health(config);
  assert.is(stopped.code, 2);
  assert.match(stopped.report.reasons.join(), 'no watch agent is running');
});

test.run();
