/**
 * Everything the agent must remember between messages, in one store:
 * - the journal of handled messages, so that a retried delivery (the MTA got exit 75, or the
 *   agent crashed) neither runs commands twice nor loses a reply:
 *     executing     commands were started; outcome not yet recorded
 *     reply-pending the reply is stored here and waits to be sent
 *     replied       done
 * - the security memory: used TOTP time steps, pending confirmation tokens, recent events for
 *   rate limits.
 */
export type JournalState = 'executing' | 'reply-pending' | 'replied';

export interface StoredReply {
  messageId: string;
  to: string[];
  from: string;
  raw: Buffer;
}

export interface JournalEntry {
  key: string;
  state: JournalState;
  sender: string;
  bodyHash: string;
  mutates: boolean;
  /**
   * How many times handling of this message began (0: never, or a journal from before the
   * counter). begin() moves it on only from the value its caller read, so of two handlings of
   * the same message at the same time exactly one goes ahead.
   */
  attempt: number;
  reply?: StoredReply;
}

/** What begin() records about the message being handled. */
export interface BeginInfo {
  messageId?: string;
  sender: string;
  bodyHash: string;
  mutates: boolean;
}

export interface PendingConfirmation {
  token: string;
  sender: string;
  /** The exact command lines the token releases. */
  commands: string[];
  expiresAt: number;
}

export type RateEvent = 'message' | 'reply';

/** A reply waiting in the outbox (a journal entry in state reply-pending). */
export interface OutboxEntry {
  key: string;
  reply: StoredReply;
  /** Failed sending attempts so far. */
  attempts: number;
  /** Epoch ms when the reply was stored. */
  queuedAt: number;
  lastError?: string;
}

export interface OutboxStats {
  depth: number;
  /** Epoch ms of the oldest waiting reply. */
  oldestQueuedAt?: number;
}

/** Asynchronous so that a shared database server can stand behind it. */
export interface StateStore {
  get(key: string): Promise<JournalEntry | undefined>;
  /**
   * Compare-and-set into state executing: succeeds only when the entry's attempt (0 when there
   * is no entry) still equals expected.attempt, and sets it to expected.attempt + 1. False, with
   * nothing changed, when another handling of the same message got there first.
   */
  begin(key: string, info: BeginInfo, expected: { attempt: number }): Promise<boolean>;
  /**
   * Stores the reply (state reply-pending). With `expected`, only while the entry's attempt is
   * still expected.attempt: false, with nothing changed, when another handling took the message
   * over since (its answer is the one to send).
   */
  saveReply(key: string, reply: StoredReply, expected?: { attempt: number }): Promise<boolean>;
  markReplied(key: string): Promise<void>;
  counts(): Promise<Record<JournalState, number>>;
  /**
   * The outbox: replies due for sending (reply-pending, next attempt ≤ now), oldest first. Each
   * returned entry is leased to the caller until now + leaseMs, so another agent sharing the store
   * does not send it at the same time; markReplied or deferReply ends the lease.
   */
  takeDueReplies(now: number, leaseMs: number, limit: number): Promise<OutboxEntry[]>;
  /** Sending failed: count the attempt, keep the reply, try again at nextAttemptAt. */
  deferReply(key: string, nextAttemptAt: number, error: string): Promise<void>;
  outboxStats(): Promise<OutboxStats>;
  /**
   * A named lease, so several agents sharing the store do a thing once: true when `owner` now
   * holds `name` until `until` (it was free, expired, or already held by the same owner).
   */
  claim(name: string, owner: string, now: number, until: number): Promise<boolean>;
  /** Gives a lease back early (only the owner can). */
  release(name: string, owner: string): Promise<void>;
  /** Records a TOTP time step as used; false when it (or a later one) was used already. */
  useTotpStep(address: string, step: number): Promise<boolean>;
  saveConfirmation(pending: PendingConfirmation): Promise<void>;
  /**
   * Returns and deletes the pending confirmation issued to `sender` (lower-case), so a token works
   * once; a token presented by anyone else is left for its owner.
   */
  takeConfirmation(token: string, sender: string): Promise<PendingConfirmation | undefined>;
  recordEvent(kind: RateEvent, subject: string, at: number): Promise<void>;
  countEvents(kind: RateEvent, subject: string | undefined, since: number): Promise<number>;
  close(): Promise<void>;
}

/** Rate windows are an hour; events are kept a day, for inspection. */
export const EVENTS_KEPT_MS = 86_400_000;

/**
 * When to delete events older than EVENTS_KEPT_MS: once a minute at most. Every message records
 * two events, and the delete scans the table.
 */
export class EventPruning {
  private next = 0;

  due(now: number): boolean {
    if (now < this.next) return false;
    this.next = now + 60_000;
    return true;
  }
}

/** A journal row of either SQL store: SQLite keeps mutates as 0/1 and reply_to as JSON text, PostgreSQL as boolean and jsonb. */
export function journalEntryFromRow(row: Record<string, any>): JournalEntry {
  const to = typeof row.reply_to === 'string' ? JSON.parse(row.reply_to) : row.reply_to;
  return {
    key: row.key,
    state: row.state,
    sender: row.sender,
    bodyHash: row.body_hash,
    mutates: row.mutates === true || row.mutates === 1,
    attempt: Number(row.attempt ?? 0),
    reply: row.reply_raw ? { messageId: row.reply_id, from: row.reply_from, to, raw: row.reply_raw } : undefined,
  };
}

export const emptyCounts = (): Record<JournalState, number> => ({ executing: 0, 'reply-pending': 0, replied: 0 });

export class MemoryStore implements StateStore {
  private entries = new Map<string, JournalEntry>();
  private totp = new Map<string, number>();
  private confirmations = new Map<string, PendingConfirmation>();
  private events: { kind: RateEvent; subject: string; at: number }[] = [];
  private readonly eventPruning = new EventPruning();
  private outbox = new Map<string, { queuedAt: number; nextAttemptAt: number; attempts: number; lastError?: string }>();
  private leases = new Map<string, { owner: string; until: number }>();

  async get(key: string) {
    return this.entries.get(key);
  }
  async begin(key: string, info: BeginInfo, expected: { attempt: number }) {
    // No await between the check and the write: atomic within the process.
    if ((this.entries.get(key)?.attempt ?? 0) !== expected.attempt) return false;
    this.entries.set(key, { key, state: 'executing', sender: info.sender, bodyHash: info.bodyHash, mutates: info.mutates, attempt: expected.attempt + 1 });
    return true;
  }
  async saveReply(key: string, reply: StoredReply, expected?: { attempt: number }) {
    const entry = this.entries.get(key);
    if (!entry || (expected && entry.attempt !== expected.attempt)) return false;
    this.entries.set(key, { ...entry, state: 'reply-pending', reply });
    this.outbox.set(key, { queuedAt: Date.now(), nextAttemptAt: 0, attempts: 0 });
    return true;
  }
  async markReplied(key: string) {
    const entry = this.entries.get(key)!;
    this.entries.set(key, { ...entry, state: 'replied', reply: undefined });
    this.outbox.delete(key);
  }
  async takeDueReplies(now: number, leaseMs: number, limit: number) {
    const due = [...this.outbox.entries()].filter(([, o]) => o.nextAttemptAt <= now).sort(([, a], [, b]) => a.queuedAt - b.queuedAt).slice(0, limit);
    return due.map(([key, o]) => {
      o.nextAttemptAt = now + leaseMs;
      return { key, reply: this.entries.get(key)!.reply!, attempts: o.attempts, queuedAt: o.queuedAt, ...(o.lastError && { lastError: o.lastError }) };
    });
  }
  async deferReply(key: string, nextAttemptAt: number, error: string) {
    const o = this.outbox.get(key);
    if (o) Object.assign(o, { nextAttemptAt, attempts: o.attempts + 1, lastError: error });
  }
  async outboxStats() {
    const queued = [...this.outbox.values()].map((o) => o.queuedAt);
    return { depth: queued.length, ...(queued.length && { oldestQueuedAt: Math.min(...queued) }) };
  }
  async claim(name: string, owner: string, now: number, until: number) {
    const held = this.leases.get(name);
    if (held && held.owner !== owner && held.until > now) return false;
    this.leases.set(name, { owner, until });
    return true;
  }
  async release(name: string, owner: string) {
    if (this.leases.get(name)?.owner === owner) this.leases.delete(name);
  }
  async counts() {
    const counts = emptyCounts();
    for (const e of this.entries.values()) counts[e.state]++;
    return counts;
  }
  async useTotpStep(address: string, step: number) {
    if ((this.totp.get(address) ?? -1) >= step) return false;
    this.totp.set(address, step);
    return true;
  }
  async saveConfirmation(pending: PendingConfirmation) {
    this.confirmations.set(pending.token, pending);
  }
  async takeConfirmation(token: string, sender: string) {
    const pending = this.confirmations.get(token);
    if (pending?.sender !== sender) return undefined;
    this.confirmations.delete(token);
    return pending;
  }
  async recordEvent(kind: RateEvent, subject: string, at: number) {
    this.events.push({ kind, subject, at });
    if (this.eventPruning.due(at)) this.events = this.events.filter((e) => e.at >= at - EVENTS_KEPT_MS);
  }
  async countEvents(kind: RateEvent, subject: string | undefined, since: number) {
    return this.events.filter((e) => e.kind === kind && (subject === undefined || e.subject === subject) && e.at >= since).length;
  }
  async close() {}
}
