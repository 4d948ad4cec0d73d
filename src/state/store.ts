import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { EXIT, UserError } from '../core/errors';
import { openSqlite } from '../sqlite/open';

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
  reply?: StoredReply;
}

export interface PendingConfirmation {
  token: string;
  sender: string;
  /** The exact command lines the token releases. */
  commands: string[];
  expiresAt: number;
}

export type RateEvent = 'message' | 'reply';

/** Asynchronous so that a shared database server can stand behind it. */
export interface StateStore {
  get(key: string): Promise<JournalEntry | undefined>;
  begin(key: string, info: { messageId?: string; sender: string; bodyHash: string; mutates: boolean }): Promise<void>;
  saveReply(key: string, reply: StoredReply): Promise<void>;
  markReplied(key: string): Promise<void>;
  counts(): Promise<Record<JournalState, number>>;
  /** Records a TOTP time step as used; false when it (or a later one) was used already. */
  useTotpStep(address: string, step: number): Promise<boolean>;
  saveConfirmation(pending: PendingConfirmation): Promise<void>;
  /** Returns and deletes the pending confirmation, so a token works once. */
  takeConfirmation(token: string): Promise<PendingConfirmation | undefined>;
  recordEvent(kind: RateEvent, subject: string, at: number): Promise<void>;
  countEvents(kind: RateEvent, subject: string | undefined, since: number): Promise<number>;
  close(): Promise<void>;
}

const emptyCounts = (): Record<JournalState, number> => ({ executing: 0, 'reply-pending': 0, replied: 0 });

export class MemoryStore implements StateStore {
  private entries = new Map<string, JournalEntry>();
  private totp = new Map<string, number>();
  private confirmations = new Map<string, PendingConfirmation>();
  private events: { kind: RateEvent; subject: string; at: number }[] = [];

  async get(key: string) {
    return this.entries.get(key);
  }
  async begin(key: string, info: { sender: string; bodyHash: string; mutates: boolean }) {
    this.entries.set(key, { key, state: 'executing', sender: info.sender, bodyHash: info.bodyHash, mutates: info.mutates });
  }
  async saveReply(key: string, reply: StoredReply) {
    const entry = this.entries.get(key)!;
    this.entries.set(key, { ...entry, state: 'reply-pending', reply });
  }
  async markReplied(key: string) {
    const entry = this.entries.get(key)!;
    this.entries.set(key, { ...entry, state: 'replied', reply: undefined });
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
  async takeConfirmation(token: string) {
    const pending = this.confirmations.get(token);
    this.confirmations.delete(token);
    return pending;
  }
  async recordEvent(kind: RateEvent, subject: string, at: number) {
    this.events.push({ kind, subject, at });
  }
  async countEvents(kind: RateEvent, subject: string | undefined, since: number) {
    return this.events.filter((e) => e.kind === kind && (subject === undefined || e.subject === subject) && e.at >= since).length;
  }
  async close() {}
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS journal (
  key         TEXT PRIMARY KEY,
  message_id  TEXT,
  sender      TEXT NOT NULL,
  body_hash   TEXT NOT NULL,
  mutates     INTEGER NOT NULL,
  state       TEXT NOT NULL,
  reply_id    TEXT,
  reply_from  TEXT,
  reply_to    TEXT,
  reply_raw   BLOB,
  created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE TABLE IF NOT EXISTS totp_used (address TEXT PRIMARY KEY, last_step INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS confirmations (
  token TEXT PRIMARY KEY, sender TEXT NOT NULL, commands TEXT NOT NULL, expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (kind TEXT NOT NULL, subject TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_time ON events (kind, at);`;

const NOW_SQL = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

/** The store in an SQLite file (WAL: several `run` processes may write at once). */
export class SqliteStore implements StateStore {
  private db: ReturnType<typeof openSqlite>;

  constructor(path: string) {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      this.db = openSqlite(path, { timeout: 10_000 });
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.exec(SCHEMA);
    } catch (err) {
      throw new UserError(`state store ${path} is not usable: ${(err as Error).message}`, EXIT.TEMPFAIL);
    }
  }

  async get(key: string): Promise<JournalEntry | undefined> {
    const row = this.db.prepare('SELECT * FROM journal WHERE key = ?').get(key) as Record<string, any> | undefined;
    if (!row) return undefined;
    return {
      key,
      state: row.state,
      sender: row.sender,
      bodyHash: row.body_hash,
      mutates: row.mutates === 1,
      reply: row.reply_raw ? { messageId: row.reply_id, from: row.reply_from, to: JSON.parse(row.reply_to), raw: row.reply_raw } : undefined,
    };
  }

  async begin(key: string, info: { messageId?: string; sender: string; bodyHash: string; mutates: boolean }) {
    this.db
      .prepare(
        `INSERT INTO journal (key, message_id, sender, body_hash, mutates, state) VALUES (?, ?, ?, ?, ?, 'executing')
         ON CONFLICT(key) DO UPDATE SET state = 'executing', mutates = excluded.mutates, updated_at = ${NOW_SQL}`,
      )
      .run(key, info.messageId ?? null, info.sender, info.bodyHash, info.mutates ? 1 : 0);
  }

  async saveReply(key: string, reply: StoredReply) {
    this.db
      .prepare(
        `UPDATE journal SET state = 'reply-pending', reply_id = ?, reply_from = ?, reply_to = ?, reply_raw = ?,
         updated_at = ${NOW_SQL} WHERE key = ?`,
      )
      .run(reply.messageId, reply.from, JSON.stringify(reply.to), reply.raw, key);
  }

  async markReplied(key: string) {
    this.db.prepare(`UPDATE journal SET state = 'replied', reply_raw = NULL, updated_at = ${NOW_SQL} WHERE key = ?`).run(key);
  }

  async counts() {
    const counts = emptyCounts();
    for (const row of this.db.prepare('SELECT state, count(*) AS n FROM journal GROUP BY state').all() as { state: JournalState; n: number }[]) {
      counts[row.state] = row.n;
    }
    return counts;
  }

  async useTotpStep(address: string, step: number): Promise<boolean> {
    const changed = this.db
      .prepare(
        `INSERT INTO totp_used (address, last_step) VALUES (?, ?)
         ON CONFLICT(address) DO UPDATE SET last_step = excluded.last_step WHERE totp_used.last_step < excluded.last_step`,
      )
      .run(address, step).changes;
    return changed === 1;
  }

  async saveConfirmation(p: PendingConfirmation) {
    this.db.prepare('INSERT INTO confirmations (token, sender, commands, expires_at) VALUES (?, ?, ?, ?)').run(p.token, p.sender, JSON.stringify(p.commands), p.expiresAt);
  }

  async takeConfirmation(token: string): Promise<PendingConfirmation | undefined> {
    const row = this.db.prepare('DELETE FROM confirmations WHERE token = ? RETURNING *').get(token) as Record<string, any> | undefined;
    return row ? { token, sender: row.sender, commands: JSON.parse(row.commands), expiresAt: row.expires_at } : undefined;
  }

  async recordEvent(kind: RateEvent, subject: string, at: number) {
    this.db.prepare('INSERT INTO events (kind, subject, at) VALUES (?, ?, ?)').run(kind, subject, at);
    // Rate windows are an hour; keep a day for inspection.
    this.db.prepare('DELETE FROM events WHERE at < ?').run(at - 86_400_000);
  }

  async countEvents(kind: RateEvent, subject: string | undefined, since: number): Promise<number> {
    const row = (
      subject === undefined
        ? this.db.prepare('SELECT count(*) AS n FROM events WHERE kind = ? AND at >= ?').get(kind, since)
        : this.db.prepare('SELECT count(*) AS n FROM events WHERE kind = ? AND subject = ? AND at >= ?').get(kind, subject, since)
    ) as { n: number };
    return row.n;
  }

  async close() {
    this.db.close();
  }
}
