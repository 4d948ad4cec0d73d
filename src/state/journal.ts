import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { EXIT, UserError } from '../core/errors';
import { openSqlite } from '../sqlite/open';

/**
 * The journal remembers every message the agent acted on, so that a retried delivery (the MTA
 * got exit 75, or the agent crashed) neither runs its commands twice nor loses the reply.
 *   executing     commands were started; outcome not yet recorded
 *   reply-pending the reply is stored here and waits to be sent
 *   replied       done
 */
export type JournalState = 'executing' | 'reply-pending' | 'replied';

export interface JournalEntry {
  key: string;
  state: JournalState;
  sender: string;
  mutates: boolean;
  reply?: { messageId: string; to: string[]; from: string; raw: Buffer };
}

export interface Journal {
  get(key: string): JournalEntry | undefined;
  begin(key: string, info: { messageId?: string; sender: string; mutates: boolean }): void;
  saveReply(key: string, reply: NonNullable<JournalEntry['reply']>): void;
  markReplied(key: string): void;
  counts(): Record<JournalState, number>;
  close(): void;
}

export class MemoryJournal implements Journal {
  private entries = new Map<string, JournalEntry>();
  get(key: string) {
    return this.entries.get(key);
  }
  begin(key: string, info: { sender: string; mutates: boolean }) {
    this.entries.set(key, { key, state: 'executing', sender: info.sender, mutates: info.mutates });
  }
  saveReply(key: string, reply: NonNullable<JournalEntry['reply']>) {
    const entry = this.entries.get(key)!;
    this.entries.set(key, { ...entry, state: 'reply-pending', reply });
  }
  markReplied(key: string) {
    const entry = this.entries.get(key)!;
    this.entries.set(key, { ...entry, state: 'replied', reply: undefined });
  }
  counts() {
    const counts = { executing: 0, 'reply-pending': 0, replied: 0 };
    for (const e of this.entries.values()) counts[e.state]++;
    return counts;
  }
  close() {}
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS journal (
  key         TEXT PRIMARY KEY,
  message_id  TEXT,
  sender      TEXT NOT NULL,
  mutates     INTEGER NOT NULL,
  state       TEXT NOT NULL,
  reply_id    TEXT,
  reply_from  TEXT,
  reply_to    TEXT,
  reply_raw   BLOB,
  created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);`;

/** The journal in an SQLite file (WAL: several `run` processes may write at once). */
export class SqliteJournal implements Journal {
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

  get(key: string): JournalEntry | undefined {
    const row = this.db.prepare('SELECT * FROM journal WHERE key = ?').get(key) as Record<string, any> | undefined;
    if (!row) return undefined;
    return {
      key,
      state: row.state,
      sender: row.sender,
      mutates: row.mutates === 1,
      reply: row.reply_raw ? { messageId: row.reply_id, from: row.reply_from, to: JSON.parse(row.reply_to), raw: row.reply_raw } : undefined,
    };
  }

  begin(key: string, info: { messageId?: string; sender: string; mutates: boolean }) {
    this.db
      .prepare(
        `INSERT INTO journal (key, message_id, sender, mutates, state) VALUES (?, ?, ?, ?, 'executing')
         ON CONFLICT(key) DO UPDATE SET state = 'executing', updated_at = excluded.updated_at`,
      )
      .run(key, info.messageId ?? null, info.sender, info.mutates ? 1 : 0);
  }

  saveReply(key: string, reply: NonNullable<JournalEntry['reply']>) {
    this.db
      .prepare(
        `UPDATE journal SET state = 'reply-pending', reply_id = ?, reply_from = ?, reply_to = ?, reply_raw = ?,
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE key = ?`,
      )
      .run(reply.messageId, reply.from, JSON.stringify(reply.to), reply.raw, key);
  }

  markReplied(key: string) {
    this.db
      .prepare(`UPDATE journal SET state = 'replied', reply_raw = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE key = ?`)
      .run(key);
  }

  counts() {
    const counts = { executing: 0, 'reply-pending': 0, replied: 0 };
    for (const row of this.db.prepare('SELECT state, count(*) AS n FROM journal GROUP BY state').all() as { state: JournalState; n: number }[]) {
      counts[row.state] = row.n;
    }
    return counts;
  }

  close() {
    this.db.close();
  }
}
