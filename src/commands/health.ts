/**
 * `mailagent health [--json]`: is the mailbox agent working? Read from the state store: the last
 * good IMAP round trip and sync, the last message handled, the outbox and the agents that report
 * there. Exit 0 healthy, 1 degraded, 2 down, 3 unknown (the Nagios/Icinga plugin convention), so
 * monitoring can run it as it is.
 */
import { loadConfig } from '../config/load';
import { AGENT_SPACE, VERDICT_EXIT, judgeHealth, type AgentRecord, type HealthReport } from '../core/health';
import { humanDuration } from '../core/status';
import { openServiceStore } from '../state/service-store';
import { openStateStore } from '../state/open';

const ago = (at: number | undefined, now: number) => (at === undefined ? 'never' : `${humanDuration(now - at)} ago`);

function text(report: HealthReport): string {
  const now = report.checkedAt;
  const lines = [
    `${report.verdict.toUpperCase()}${report.reasons.length ? `: ${report.reasons.join('; ')}` : ''}`,
    `last IMAP round trip: ${ago(report.lastImapOkAt, now)}`,
    `last inbox sync:      ${ago(report.lastSyncAt, now)}`,
    `last message handled: ${ago(report.lastHandledAt, now)}`,
    `outbox:               ${report.outbox.depth} waiting${report.outbox.oldestAgeSeconds !== undefined ? `, oldest ${humanDuration(report.outbox.oldestAgeSeconds * 1000)}` : ''}`,
    `waiting on another agent's lease: ${report.waitingOnOtherAgents}`,
    `agents:`,
    ...report.agents.map((a) => `  ${a.owner}  ${a.live ? a.connection : a.stoppedAt ? 'stopped' : 'silent'}, reported ${ago(a.updatedAt, now)}, ${a.handled} handled, up since ${new Date(a.startedAt).toISOString()}`),
  ];
  if (!report.agents.length) lines.push('  (none)');
  return `${lines.join('\n')}\n`;
}

export async function handler(argv: { config?: string; json?: boolean }): Promise<number> {
  const config = await loadConfig(argv.config);
  const now = Date.now();
  let report: HealthReport;
  try {
    const state = await openStateStore(config);
    const services = await openServiceStore(config);
    try {
      const outbox = await state.outboxStats();
      const records = await services.listRecords<AgentRecord>(AGENT_SPACE);
      report = judgeHealth(records, outbox, config.health, now);
    } finally {
      await services.close();
      await state.close();
    }
  } catch (err) {
    // Without the state store nothing can be said: unknown, with the reason.
    report = { verdict: 'unknown', reasons: [`the state store cannot be read: ${(err as Error).message}`], checkedAt: now, outbox: { depth: 0 }, waitingOnOtherAgents: 0, agents: [] };
  }
  process.stdout.write(argv.json ? `${JSON.stringify(report, null, 2)}\n` : text(report));
  return VERDICT_EXIT[report.verdict];
}
