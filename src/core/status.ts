import { hostname } from 'node:os';
import type { Config, UserConfig } from '../config/types';
import type { StateStore } from '../state/store';
import { VERSION } from '../version';

/** What a running `watch` agent reports about itself. */
export interface AgentStatus {
  startedAt: Date;
  /** disconnected, connecting, syncing, idle, stopping */
  connection: string;
  /** The last thing the IMAP server told us, and when. */
  lastImapEvent?: { what: string; at: Date };
  messagesHandled: number;
  /** Messages another agent held a lease on when this one last looked (a crashed one holds its until imap.leaseSeconds). */
  waitingOnOtherAgents?: number;
  mode?: string;
}

/** "3d 4h", "5m 12s": a duration for people. */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const units: [string, number][] = [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]];
  const parts: string[] = [];
  let rest = s;
  for (const [name, size] of units) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0 || (name === 's' && parts.length === 0)) parts.push(`${n}${name}`);
  }
  return parts.slice(0, 2).join(' ');
}

/** The `status` command: what the agent is and what it holds. */
export async function statusText(config: Config, store: StateStore, user: UserConfig, agent?: AgentStatus, now = new Date()): Promise<string> {
  const counts = await store.counts();
  const outbox = await store.outboxStats();
  const lines = [
    `mailagent ${VERSION} on ${hostname()}`,
    `services: ${Object.keys(config.services).join(', ') || 'none'}`,
    `your roles: ${user.roles.join(', ') || 'none'}`,
    `messages answered: ${counts.replied}; replies waiting to be sent: ${counts['reply-pending']}`,
    `outbox: ${outbox.depth} waiting${outbox.oldestQueuedAt !== undefined ? `, oldest ${humanDuration(now.getTime() - outbox.oldestQueuedAt)} old` : ''}`,
  ];
  if (agent) {
    const event = agent.lastImapEvent;
    lines.push(
      `agent: up ${humanDuration(now.getTime() - agent.startedAt.getTime())}${agent.mode ? ` (${agent.mode})` : ''}, ${agent.messagesHandled} messages handled`,
      `imap: ${agent.connection}${event ? `; last event: ${event.what}, ${humanDuration(now.getTime() - event.at.getTime())} ago` : ''}`,
    );
    if (agent.waitingOnOtherAgents) lines.push(`messages waiting on another agent's lease: ${agent.waitingOnOtherAgents}`);
  }
  return lines.join('\n');
}
