import type { Config } from '../config/types';
import { silentLogger, type Logger } from '../core/log';
import type { OutboxEntry, StateStore } from '../state/store';
import type { SmtpSender } from './smtp';

/**
 * The outbox: every reply is stored (journal state reply-pending) before anything tries to send
 * it, so a crash or an SMTP outage loses nothing. A pass takes the due replies with a lease (so
 * agents sharing the store never send one twice at the same time), sends them, and either marks
 * them replied or defers them with exponential backoff.
 */
export interface OutboxOptions {
  store: StateStore;
  /** The sender to use now (the agent swaps it when the config is reloaded). */
  sender: () => SmtpSender;
  log?: Logger;
  /** Replies taken per pass at most (default 20); never more than the sender's connections. */
  batch?: number;
  /** How long a taken reply is ours; must outlast one SMTP conversation (default 2 min; see outboxLeaseMs and outboxPass). */
  leaseMs?: number;
  /** Delay before the next attempt after `attempts` failed ones (default: backoff()). */
  retryDelay?: (attempts: number) => number;
  /** A pass every N ms besides the kicks, for deferred replies (default 5 s; 0: none). */
  intervalMs?: number;
  now?: () => number;
}

export interface BackoffOptions {
  baseMs?: number;
  maxMs?: number;
  /** ± this fraction of randomness, so that many agents do not retry in step. */
  jitter?: number;
}

/**
 * How long a taken reply stays ours: long enough for one SMTP conversation (connect, greeting and
 * data, each bounded by the timeout), short enough that a reply held by a crashed agent is retried
 * soon.
 */
export function outboxLeaseMs(config: Config): number {
  return ((config.smtp?.timeoutSeconds ?? 30) * 2 + 10) * 1000;
}

/**
 * How many replies one pass takes, and for how long. The replies of a pass are sent at once, but a
 * pooled sender runs only `connections` conversations at a time and queues the rest, so a pass
 * larger than the pool would need its lease to cover several conversations in a row; a reply whose
 * lease ran out in the queue would be sent by another agent too. So a pass takes no more replies
 * than there are connections, and the lease covers one conversation per connection in use.
 */
export function outboxPass(batch: number, connections: number | undefined, conversationMs: number): { take: number; leaseMs: number } {
  const pool = connections === undefined ? Infinity : Math.max(1, Math.floor(connections));
  const take = Math.max(1, Math.min(batch, pool));
  return { take, leaseMs: conversationMs * Math.max(1, Math.ceil(take / pool)) };
}

/** min(max, base·2^n), jittered. */
export function backoff(n: number, { baseMs = 1000, maxMs = 5 * 60_000, jitter = 0.2 }: BackoffOptions = {}): number {
  const plain = Math.min(maxMs, baseMs * 2 ** Math.min(n, 30));
  return Math.round(plain * (1 - jitter + Math.random() * 2 * jitter));
}

export interface OutboxCounters {
  sent: number;
  failedAttempts: number;
  lastError?: string;
}

export class Outbox {
  readonly counters: OutboxCounters = { sent: 0, failedAttempts: 0 };
  private readonly store: StateStore;
  private readonly log: Logger;
  private readonly batch: number;
  private readonly leaseMs: number;
  private readonly retryDelay: (attempts: number) => number;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly sender: () => SmtpSender;
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  /** A pass at the earliest retry time, so a retry does not wait for the periodic pass. */
  private retryTimer: { at: number; timer: NodeJS.Timeout } | undefined;
  private stopped = false;

  constructor(options: OutboxOptions) {
    this.store = options.store;
    this.sender = options.sender;
    this.log = options.log ?? silentLogger;
    this.batch = options.batch ?? 20;
    this.leaseMs = options.leaseMs ?? 120_000;
    this.retryDelay = options.retryDelay ?? ((n) => backoff(n));
    this.intervalMs = options.intervalMs ?? 5000;
    this.now = options.now ?? Date.now;
  }

  /** Starts the periodic pass (deferred replies become due while nothing kicks). */
  start(): void {
    this.stopped = false;
    if (this.intervalMs > 0 && !this.timer) {
      this.timer = setInterval(() => this.kick(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** A new reply was stored: send it soon. Never throws. */
  kick(): void {
    if (this.stopped) return;
    this.pump().catch((err) => this.log.error('outbox pass failed', { err }));
  }

  /** One pass, repeated while replies are due; concurrent callers share the running pass. */
  pump(deadline = Infinity): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          while (this.now() < deadline) {
            const pass = outboxPass(this.batch, this.sender().connections, this.leaseMs);
            const due = await this.store.takeDueReplies(this.now(), pass.leaseMs, pass.take);
            if (due.length === 0) break;
            const sent = await Promise.all(due.map((entry) => this.sendOne(entry)));
            // Nothing got through: the server is down; the timer or the next kick comes back.
            if (!sent.includes(true)) return;
          }
        } while (this.again && this.now() < deadline);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /**
   * Sends what is due until nothing is left or the deadline (epoch ms) passes; a send in progress
   * at the deadline is not waited for. Returns the replies still waiting.
   */
  async drain(deadline: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - this.now()))));
    try {
      // A pass cut off by the deadline may still fail later (its store closed): it must not throw then.
      const pass = this.pump(deadline).catch((err) => this.log.error('outbox pass failed', { err }));
      await Promise.race([pass, late]);
    } finally {
      clearTimeout(timer);
    }
    return (await this.store.outboxStats()).depth;
  }

  /** Stops the timer and the kicks, and waits for a running pass (up to the deadline). */
  async stop(deadline = Infinity): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.retryTimer) clearTimeout(this.retryTimer.timer);
    this.retryTimer = undefined;
    if (!this.running) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, Math.min(deadline - this.now(), 2 ** 31 - 1)))));
    try {
      await Promise.race([this.running.catch(() => undefined), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private retryAt(at: number): void {
    if (this.stopped || this.intervalMs <= 0 || (this.retryTimer && this.retryTimer.at <= at)) return;
    if (this.retryTimer) clearTimeout(this.retryTimer.timer);
    const timer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, Math.max(0, at - this.now()) + 10);
    timer.unref();
    this.retryTimer = { at, timer };
  }

  /** True when the reply was handed to the server. */
  private async sendOne(entry: OutboxEntry): Promise<boolean> {
    try {
      await this.sender().send({ from: entry.reply.from, to: entry.reply.to }, entry.reply.raw);
    } catch (err) {
      const delay = this.retryDelay(entry.attempts);
      const message = (err as Error).message ?? String(err);
      this.counters.failedAttempts++;
      this.counters.lastError = message;
      this.log.warn('reply not sent, will retry', { key: entry.key, attempts: entry.attempts + 1, retryInMs: delay, err });
      this.retryAt(this.now() + delay);
      try {
        await this.store.deferReply(entry.key, this.now() + delay, message);
      } catch (deferErr) {
        // Its lease runs out instead, and then it is retried.
        this.log.error('could not record the failed attempt', { key: entry.key, err: deferErr });
      }
      return false;
    }
    // Sent: from here a failure to record it could only cause a duplicate, never a loss.
    try {
      await this.store.markReplied(entry.key);
      this.counters.sent++;
      this.log.info('sent', { key: entry.key, messageId: entry.reply.messageId, attempts: entry.attempts + 1, queuedMs: this.now() - entry.queuedAt });
    } catch (err) {
      this.log.error('reply sent but not recorded as sent', { key: entry.key, err });
    }
    return true;
  }
}
