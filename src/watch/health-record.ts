import { hostname } from 'node:os';
import type { Config } from '../config/types';
import { AGENT_SPACE, type AgentRecord } from '../core/health';
import type { Logger } from '../core/log';
import { serviceStoreFor } from '../services/stores';

/** What the agent knows about itself at a moment, for its health record. */
export type AgentFacts = Omit<AgentRecord, 'host' | 'pid' | 'startedAt' | 'updatedAt' | 'stoppedAt'>;

/**
 * Rewrites this agent's record in the state store every few seconds, from a timer of its own:
 * an IMAP call that hangs stops the facts from changing, never the record from being written, so
 * `mailagent health` can tell a stuck connection (old lastImapOkAt) from a dead process (old record).
 */
export class HealthRecorder {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private warned = false;
  private readonly startedAt = Date.now();

  constructor(
    private config: () => Config,
    private readonly owner: string,
    private readonly facts: () => AgentFacts,
    private readonly log: Logger,
  ) {}

  /** Every half imapCheckSeconds, between 1 and 10 s. */
  private intervalMs(): number {
    return Math.min(10_000, Math.max(1000, (this.config().health.imapCheckSeconds * 1000) / 2));
  }

  start(): void {
    const tick = () => {
      this.writing = this.write().finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.intervalMs());
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  /** A last record saying the agent stopped (a clean stop is not an outage). */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
    await this.write(Date.now());
  }

  private async write(stoppedAt?: number): Promise<void> {
    const record: AgentRecord = {
      host: hostname(),
      pid: process.pid,
      startedAt: this.startedAt,
      updatedAt: Date.now(),
      ...this.facts(),
      ...(stoppedAt !== undefined && { stoppedAt, connection: 'stopped' }),
    };
    try {
      await (await serviceStoreFor(this.config())).putRecord(AGENT_SPACE, this.owner, record);
      this.warned = false;
    } catch (err) {
      // The state store is down: say so once, keep trying.
      if (!this.warned) this.log.warn('health record not written to the state store', { err });
      this.warned = true;
    }
  }
}
