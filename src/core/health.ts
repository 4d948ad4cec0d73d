import type { HealthConfig } from '../config/types';
import type { OutboxStats } from '../state/store';

/**
 * Health of the mailbox agents, judged from what they record in the state store (one record per
 * `watch` process, rewritten every few seconds) and from the outbox. The verdicts and their exit
 * codes follow the plugin convention of Nagios and Icinga, so monitoring can call `mailagent
 * health` as it is.
 */

export const AGENT_SPACE = 'watch.agent';

/** What a running agent writes about itself. Times are epoch ms. */
export interface AgentRecord {
  host: string;
  pid: number;
  startedAt: number;
  /** Rewritten by a timer even when IMAP hangs: an old one means the process is gone or stuck. */
  updatedAt: number;
  /** disconnected, connecting, syncing, idle, stopping, stopped */
  connection: string;
  /** The last IMAP round trip that completed (login, sync, NOOP). */
  lastImapOkAt?: number;
  lastSyncAt?: number;
  lastHandledAt?: number;
  handled: number;
  waitingOnOtherAgents: number;
  stoppedAt?: number;
}

export type Verdict = 'healthy' | 'degraded' | 'down' | 'unknown';
export const VERDICT_EXIT: Record<Verdict, number> = { healthy: 0, degraded: 1, down: 2, unknown: 3 };

export interface HealthReport {
  verdict: Verdict;
  reasons: string[];
  checkedAt: number;
  lastImapOkAt?: number;
  lastSyncAt?: number;
  lastHandledAt?: number;
  outbox: { depth: number; oldestAgeSeconds?: number };
  waitingOnOtherAgents: number;
  agents: (AgentRecord & { owner: string; live: boolean })[];
}

const seconds = (ms: number) => Math.round(ms / 1000);
const newest = (values: (number | undefined)[]): number | undefined => values.reduce<number | undefined>((a, b) => (b === undefined ? a : a === undefined ? b : Math.max(a, b)), undefined);

/** The worse of two verdicts (unknown ranks below down: something is known to be wrong). */
function worse(a: Verdict, b: Verdict): Verdict {
  const rank: Record<Verdict, number> = { healthy: 0, unknown: 1, degraded: 2, down: 3 };
  return rank[b] > rank[a] ? b : a;
}

export function judgeHealth(records: { key: string; value: AgentRecord }[], outbox: OutboxStats, limits: HealthConfig, now: number): HealthReport {
  const downMs = limits.downAfterSeconds * 1000;
  const agents = records.map(({ key, value }) => ({ ...value, owner: key, live: value.stoppedAt === undefined && now - value.updatedAt < downMs }));
  const live = agents.filter((a) => a.live);
  const reasons: string[] = [];
  let verdict: Verdict = 'healthy';
  const lastImapOkAt = newest(live.map((a) => a.lastImapOkAt));
  if (agents.length === 0) {
    verdict = 'unknown';
    reasons.push('no watch agent has reported to this state store yet');
  } else if (live.length === 0) {
    verdict = 'down';
    const last = newest(agents.map((a) => a.updatedAt))!;
    reasons.push(`no watch agent is running: the last report is ${seconds(now - last)} s old`);
  } else if (lastImapOkAt === undefined) {
    const since = Math.min(...live.map((a) => a.startedAt));
    verdict = now - since >= downMs ? 'down' : 'degraded';
    reasons.push(`no IMAP connection has worked since the agent started ${seconds(now - since)} s ago`);
  } else {
    const age = now - lastImapOkAt;
    if (age >= downMs) verdict = 'down';
    else if (age >= limits.degradedAfterSeconds * 1000) verdict = 'degraded';
    if (verdict !== 'healthy') reasons.push(`the last good IMAP round trip was ${seconds(age)} s ago`);
  }
  const oldestAgeSeconds = outbox.oldestQueuedAt !== undefined ? seconds(now - outbox.oldestQueuedAt) : undefined;
  if (oldestAgeSeconds !== undefined && oldestAgeSeconds >= limits.outboxDegradedSeconds) {
    verdict = worse(verdict, 'degraded');
    reasons.push(`a reply has waited ${oldestAgeSeconds} s in the outbox (${outbox.depth} waiting): SMTP may be down`);
  }
  return {
    verdict,
    reasons,
    checkedAt: now,
    ...(lastImapOkAt !== undefined && { lastImapOkAt }),
    ...(newest(agents.map((a) => a.lastSyncAt)) !== undefined && { lastSyncAt: newest(agents.map((a) => a.lastSyncAt)) }),
    ...(newest(agents.map((a) => a.lastHandledAt)) !== undefined && { lastHandledAt: newest(agents.map((a) => a.lastHandledAt)) }),
    outbox: { depth: outbox.depth, ...(oldestAgeSeconds !== undefined && { oldestAgeSeconds }) },
    waitingOnOtherAgents: live.reduce((n, a) => n + a.waitingOnOtherAgents, 0),
    agents,
  };
}
