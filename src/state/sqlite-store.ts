import type { Statement } from 'better-sqlite3';
import { openStateFile, type openSqlite } from '../sqlite/open';
import { fsyncPath, WalFsync } from '../sqlite/wal-fsync';
import {
  EVENTS_KEPT_MS,
  EventPruning,
  journalEntryFromRow,
  emptyCounts,
  type BeginInfo,
  type JournalEntry,
  type JournalState,
  type OutboxEntry,
  type OutboxStats,
  type PendingConfirmation,
  type RateEvent,
  type StateStore,
  type StoredReply,
} from './store';

const SCHEMA_TABLES = `
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
  queued_at   INTEGER,
  next_attempt_at INTEGER,
  attempts    INTEGER NOT NULL DEFAULT 0,
  last_error  TEXT,
  attempt     INTEGER NOT NULL DEFAULT 0,
  created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE TABLE IF NOT EXISTS totp_used (address TEXT PRIMARY KEY, last_step INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS confirmations (
  token TEXT PRIMARY KEY, sender TEXT NOT NULL, commands TEXT NOT NULL, expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (kind TEXT NOT NULL, subject TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until INTEGER NOT NULL);`;

/** Columns added after the first journal format: the outbox's (attempts: failed sendings) and the handling attempt. */
const ADDED_JOURNAL_COLUMNS = [
  ['queued_at', 'INTEGER'],
  ['next_attempt_at', 'INTEGER'],
  ['attempts', 'INTEGER NOT NULL DEFAULT 0'],
  ['last_error', 'TEXT'],
  ['attempt', 'INTEGER NOT NULL DEFAULT 0'],
];

// events_by_subject covers the per-sender rate count: without it each of the sender's events in
// the hour costs a lookup in the table (3× the time at a few thousand events).
const SCHEMA_INDEXES = `
CREATE INDEX IF NOT EXISTS events_by_time ON events (kind, at);
CREATE INDEX IF NOT EXISTS events_by_subject ON events (kind, subject, at);
CREATE INDEX IF NOT EXISTS journal_outbox ON journal (next_attempt_at) WHERE state = 'reply-pending';`;

const NOW_SQL = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

/** The store in an SQLite file (WAL: several `run` processes may write at once). */
export class SqliteStore implements StateStore {
  private db: ReturnType<typeof openSqlite>;
  private readonly walFsync: WalFsync;
  private readonly statements = new Map<string, Statement>();
  private readonly eventPruning = new EventPruning();

  /** `fsync` is for tests, which finish it by hand. */
  constructor(path: string, fsync: (path: string) => Promise<void> = fsyncPath) {
    this.db = openStateFile(path, 'state store', (db) => {
      db.exec(SCHEMA_TABLES);
      // Journals written by an earlier version lack the outbox columns and the attempt counter.
      const columns = new Set((db.pragma('table_info(journal)') as { name: string }[]).map((c) => c.name));
      for (const [name, type] of ADDED_JOURNAL_COLUMNS) if (!columns.has(name)) db.exec(`ALTER TABLE journal ADD COLUMN ${name} ${type}`);
      db.exec(SCHEMA_INDEXES);
    });
    // Commits that only need to survive a crash of the process (leases, rate counters, outbox
    // bookkeeping, a read-only request about to run) skip the fsync: with WAL they are still
    // atomic and seen by every process at once. Those the exactly-once promise rests on (a change
    // about to run, a reply stored before its request is filed, a used one-time code) await
    // walFsync before they count, which also covers whatever was committed before them.
    this.db.pragma('synchronous = NORMAL');
    this.walFsync = new WalFsync(path, fsync);
  }

  /** Statements are compiled once: preparing one costs more than running it. */
  private sql(text: string): Statement {
    let statement = this.statements.get(text);
    if (!statement) this.statements.set(text, (statement = this.db.prepare(text)));
    return statement;
  }

  async get(key: string): Promise<JournalEntry | undefined> {
    const row = this.sql('SELECT * FROM journal WHERE key = ?').get(key) as Record<string, any> | undefined;
    return row && journalEntryFromRow(row);
  }

  async begin(key: string, info: BeginInfo, expected: { attempt: number }): Promise<boolean> {
    // One statement, so one write transaction: a second process waits for it, then finds the
    // attempt moved on and changes nothing. Attempt 0 also covers "no entry yet" (the insert).
    const statement =
      expected.attempt === 0
        ? `INSERT INTO journal (key, message_id, sender, body_hash, mutates, state, attempt) VALUES (@key, @messageId, @sender, @bodyHash, @mutates, 'executing', 1)
           ON CONFLICT(key) DO UPDATE SET state = 'executing', mutates = excluded.mutates, attempt = 1, updated_at = ${NOW_SQL} WHERE journal.attempt = 0`
        : `UPDATE journal SET state = 'executing', mutates = @mutates, attempt = @attempt + 1, updated_at = ${NOW_SQL} WHERE key = @key AND attempt = @attempt`;
    const changed = this.sql(statement).run({
      key,
      messageId: info.messageId ?? null,
      sender: info.sender,
      bodyHash: info.bodyHash,
      mutates: info.mutates ? 1 : 0,
      attempt: expected.attempt,
    }).changes;
    if (changed !== 1) return false;
    // A read-only request whose start a power loss erased is run again, as one found executing
    // would be: only a change must be on disk before it runs.
    if (info.mutates) await this.walFsync.flush();
    return true;
  }

  async saveReply(key: string, reply: StoredReply, expected?: { attempt: number }): Promise<boolean> {
    const changed = this.sql(
      `UPDATE journal SET state = 'reply-pending', reply_id = ?, reply_from = ?, reply_to = ?, reply_raw = ?,
       queued_at = ?, next_attempt_at = 0, attempts = 0, last_error = NULL, updated_at = ${NOW_SQL} WHERE key = ? AND (? IS NULL OR attempt = ?)`,
    ).run(reply.messageId, reply.from, JSON.stringify(reply.to), reply.raw, Date.now(), key, expected?.attempt ?? null, expected?.attempt ?? null).changes;
    if (changed !== 1) return false;
    await this.walFsync.flush();
    return true;
  }

  async takeDueReplies(now: number, leaseMs: number, limit: number): Promise<OutboxEntry[]> {
    // One write transaction: with WAL, a second process waits for it, so a reply is leased once.
    const take = this.db.transaction(() => {
      const rows = this.sql(`SELECT * FROM journal WHERE state = 'reply-pending' AND next_attempt_at <= ? ORDER BY queued_at LIMIT ?`).all(now, limit) as Record<string, any>[];
      const lease = this.sql('UPDATE journal SET next_attempt_at = ? WHERE key = ?');
      for (const row of rows) lease.run(now + leaseMs, row.key);
      return rows;
    });
    return take.immediate().map((row) => ({
      key: row.key,
      reply: { messageId: row.reply_id, from: row.reply_from, to: JSON.parse(row.reply_to), raw: row.reply_raw },
      attempts: row.attempts,
      queuedAt: row.queued_at,
      ...(row.last_error && { lastError: row.last_error }),
    }));
  }

  async deferReply(key: string, nextAttemptAt: number, error: string) {
    this.sql(`UPDATE journal SET next_attempt_at = ?, attempts = attempts + 1, last_error = ?, updated_at = ${NOW_SQL} WHERE key = ? AND state = 'reply-pending'`).run(
      nextAttemptAt,
      error,
      key,
    );
  }

  async outboxStats(): Promise<OutboxStats> {
    const row = this.sql(`SELECT count(*) AS n, min(queued_at) AS oldest FROM journal WHERE state = 'reply-pending'`).get() as { n: number; oldest: number | null };
    return { depth: row.n, ...(row.oldest !== null && { oldestQueuedAt: row.oldest }) };
  }

  async claim(name: string, owner: string, now: number, until: number): Promise<boolean> {
    const changed = this.sql(
      `INSERT INTO leases (name, owner, until) VALUES (?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until = excluded.until
       WHERE leases.owner = excluded.owner OR leases.until <= ?`,
    ).run(name, owner, until, now).changes;
    return changed === 1;
  }

  async release(name: string, owner: string) {
    this.sql('DELETE FROM leases WHERE name = ? AND owner = ?').run(name, owner);
  }

  async markReplied(key: string) {
    this.sql(`UPDATE journal SET state = 'replied', reply_raw = NULL, next_attempt_at = NULL, updated_at = ${NOW_SQL} WHERE key = ?`).run(key);
  }

  async counts() {
    const counts = emptyCounts();
    for (const row of this.sql('SELECT state, count(*) AS n FROM journal GROUP BY state').all() as { state: JournalState; n: number }[]) {
      counts[row.state] = row.n;
    }
    return counts;
  }

  async useTotpStep(address: string, step: number): Promise<boolean> {
    // Durable: a code must not work again after a power loss.
    const changed = this.sql(
      `INSERT INTO totp_used (address, last_step) VALUES (?, ?)
       ON CONFLICT(address) DO UPDATE SET last_step = excluded.last_step WHERE totp_used.last_step < excluded.last_step`,
    ).run(address, step).changes;
    if (changed !== 1) return false;
    await this.walFsync.flush();
    return true;
  }

  async saveConfirmation(p: PendingConfirmation) {
    this.sql('INSERT INTO confirmations (token, sender, commands, expires_at) VALUES (?, ?, ?, ?)').run(p.token, p.sender, JSON.stringify(p.commands), p.expiresAt);
  }

  async takeConfirmation(token: string, sender: string): Promise<PendingConfirmation | undefined> {
    const row = this.sql('DELETE FROM confirmations WHERE token = ? AND sender = ? RETURNING *').get(token, sender) as Record<string, any> | undefined;
    if (!row) return undefined;
    // Durable before the token's commands run: it must not work again after a power loss.
    await this.walFsync.flush();
    return { token, sender: row.sender, commands: JSON.parse(row.commands), expiresAt: row.expires_at };
  }

  async recordEvent(kind: RateEvent, subject: string, at: number) {
    this.sql('INSERT INTO events (kind, subject, at) VALUES (?, ?, ?)').run(kind, subject, at);
    if (this.eventPruning.due(at)) this.sql('DELETE FROM events WHERE at < ?').run(at - EVENTS_KEPT_MS);
  }

  async countEvents(kind: RateEvent, subject: string | undefined, since: number): Promise<number> {
    const row = (
      subject === undefined
        ? this.sql('SELECT count(*) AS n FROM events WHERE kind = ? AND at >= ?').get(kind, since)
        : this.sql('SELECT count(*) AS n FROM events WHERE kind = ? AND subject = ? AND at >= ?').get(kind, subject, since)
    ) as { n: number };
    return row.n;
  }

  async close() {
    this.db.close();
  }
}
