import type { Pool } from 'pg';
import type { Config } from '../config/types';
import { resolveSecret } from '../config/secrets';
import { EXIT, UserError } from '../core/errors';
import { EVENTS_KEPT_MS, EventPruning, journalEntryFromRow, type BeginInfo, type JournalEntry, type JournalState, type OutboxEntry, type OutboxStats, type PendingConfirmation, type RateEvent, type StateStore, type StoredReply } from './store';

/**
 * The state store on a PostgreSQL server, so that agents on several hosts share one journal,
 * outbox, replay cache, TOTP memory, confirmation tokens and leases. Every method is one
 * statement whose row locks make it safe against other agents: an upsert with a WHERE on the
 * conflicting row (claims, TOTP steps), DELETE … RETURNING (tokens), FOR UPDATE SKIP LOCKED (the
 * outbox). Epoch milliseconds are BIGINT, read back as numbers.
 */

/** Tables carry a prefix: in a shared schema such as public they must not meet an application's own. */
const TABLES = ['mailagent_journal', 'mailagent_totp_used', 'mailagent_confirmations', 'mailagent_events', 'mailagent_leases'];

const ddl = (s: string): string[] => [
  `CREATE TABLE IF NOT EXISTS ${s}.mailagent_journal (
    key         TEXT PRIMARY KEY,
    message_id  TEXT,
    sender      TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    mutates     BOOLEAN NOT NULL,
    state       TEXT NOT NULL,
    reply_id    TEXT,
    reply_from  TEXT,
    reply_to    JSONB,
    reply_raw   BYTEA,
    queued_at   BIGINT,
    next_attempt_at BIGINT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    attempt     INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
  )`,
  // Journals created by an earlier version lack the handling attempt counter.
  `ALTER TABLE ${s}.mailagent_journal ADD COLUMN IF NOT EXISTS attempt INTEGER NOT NULL DEFAULT 0`,
  `CREATE INDEX IF NOT EXISTS mailagent_journal_outbox ON ${s}.mailagent_journal (next_attempt_at) WHERE state = 'reply-pending'`,
  `CREATE TABLE IF NOT EXISTS ${s}.mailagent_totp_used (address TEXT PRIMARY KEY, last_step BIGINT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS ${s}.mailagent_confirmations (
    token TEXT PRIMARY KEY, sender TEXT NOT NULL, commands JSONB NOT NULL, expires_at BIGINT NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS ${s}.mailagent_events (kind TEXT NOT NULL, subject TEXT NOT NULL, at BIGINT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS mailagent_events_by_time ON ${s}.mailagent_events (kind, at)`,
  `CREATE INDEX IF NOT EXISTS mailagent_events_by_subject ON ${s}.mailagent_events (kind, subject, at)`,
  `CREATE TABLE IF NOT EXISTS ${s}.mailagent_leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until BIGINT NOT NULL)`,
];

const INT8_OID = 20;

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

function parseUrl(url: string): URL | undefined {
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}

const isPasswordParam = (name: string) => /pass/i.test(name);

/** The URL as it may be shown: a password, in the user part or as a `password=` parameter, becomes ***. */
export function redactUrl(url: URL): string {
  const shown = new URL(url.href);
  if (shown.password) shown.password = '***';
  for (const name of [...shown.searchParams.keys()]) if (isPasswordParam(name)) shown.searchParams.set(name, '***');
  return shown.href;
}

/** Every password the URL carries, so that none can slip into a message through an error text. */
function passwordsIn(url: URL): string[] {
  const found = [url.password, decodeURIComponent(url.password)];
  for (const [name, value] of url.searchParams) if (isPasswordParam(name)) found.push(value);
  return [...new Set(found)].filter((p) => p.length > 0);
}

/** Where `state.postgres` points, checked: the URL, the schema, how it may be shown, and what must never be shown. */
export interface StateServer {
  url: string;
  schema: string;
  /** The URL with its passwords as ***. */
  where: string;
  /** Every password in the URL, to be scrubbed from any error text. */
  secrets: string[];
}

/** Resolves and checks `state.postgres` for every store kept there (journal, jobs). */
export function stateServer(config: Config): StateServer {
  const settings = config.state.postgres;
  if (!settings) throw new UserError('state.postgres is not configured', EXIT.CONFIG);
  const url = typeof settings.url === 'string' ? settings.url : resolveSecret(settings.url, config.file, 'state.postgres.url');
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new UserError('state.postgres.url: expected a postgres:// or postgresql:// URL', EXIT.CONFIG);
  }
  const parsed = parseUrl(url);
  if (!parsed) throw new UserError('state.postgres.url: not a valid URL', EXIT.CONFIG);
  const where = redactUrl(parsed);
  const secrets = passwordsIn(parsed);
  if (typeof settings.url === 'string' && secrets.length) {
    throw new UserError(
      `state.postgres.url ${where}: the password must not be written in the config`,
      EXIT.CONFIG,
      'use a secret reference, { "env": "NAME" } or { "file": "path" }, holding the whole URL',
    );
  }
  return { url, schema: settings.schema ?? 'public', where, secrets };
}

/** An error text with every secret replaced by ***. */
export function scrub(text: string, secrets: string[]): string {
  for (const secret of secrets) text = text.split(secret).join('***');
  return text;
}

/** Errors that mean "no working session with the server" rather than a refused statement. */
function isConnectionError(err: { code?: unknown; severity?: unknown; message?: string; name?: string }): boolean {
  const code = typeof err.code === 'string' ? err.code : '';
  if (err.severity) return code.startsWith('08') || code.startsWith('28') || code.startsWith('57P') || code === '3D000' || code === '53300';
  return /^E[A-Z_]+$/.test(code) || err.name === 'AggregateError' || /connect|terminated|timeout/i.test(err.message ?? '');
}

export class PgStore implements StateStore {
  private readonly eventPruning = new EventPruning();

  private constructor(
    private readonly pool: Pool,
    /** The schema, quoted for SQL. */
    private readonly s: string,
    /** Where the store is, for messages: the URL with its password redacted. */
    private readonly where: string,
    private readonly secrets: string[],
  ) {}

  /**
   * Connects and creates the schema and tables if missing. Several agents starting at once on
   * a new database take turns through an advisory lock (concurrent CREATE … IF NOT EXISTS of
   * the same object can otherwise fail on the catalog's unique indexes).
   */
  static async open(config: Config): Promise<PgStore> {
    const { url, schema, where, secrets } = stateServer(config);

    const pg = require('pg') as typeof import('pg');
    const getTypeParser = (oid: number, format?: string): unknown =>
      oid === INT8_OID && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text');
    const pool = new pg.Pool({
      connectionString: url,
      max: 4,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      allowExitOnIdle: true,
      keepAlive: true,
      statement_timeout: 30_000,
      application_name: 'mailagent-state',
      types: { getTypeParser } as never,
    });
    // An idle connection was lost (server restart, network): the next query opens another.
    pool.on('error', () => undefined);
    const store = new PgStore(pool, quoteIdent(schema), where, secrets);
    try {
      await store.createTables(schema);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw store.translate(err);
    }
    return store;
  }

  private async createTables(schema: string): Promise<void> {
    // Usually everything exists, up to the newest column: one read, no lock, and no CREATE
    // privilege needed.
    const { rows } = await this.pool.query<{ n: number; current: boolean }>(
      `SELECT (SELECT count(*)::int FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = ANY ($2::text[])) AS n,
              EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($3) AND attname = 'attempt' AND NOT attisdropped) AS current`,
      [schema, TABLES, `${this.s}.mailagent_journal`],
    );
    if (rows[0].n === TABLES.length && rows[0].current) return;
    const client = await this.pool.connect();
    let failed = false;
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`mailagent state store ${schema}`]);
      const exists = await client.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1', [schema]);
      if (!exists.rowCount) await client.query(`CREATE SCHEMA ${this.s}`);
      for (const statement of ddl(this.s)) await client.query(statement);
      await client.query('COMMIT');
    } catch (err) {
      failed = true;
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release(failed ? true : undefined);
    }
  }

  /** A driver or server error as a one-line UserError (75: the MTA retries), never showing a password. */
  private translate(err: unknown): unknown {
    if (err instanceof UserError) return err;
    const e = err as Error & { code?: string; severity?: string; errors?: Error[] };
    // Node's AggregateError (every address refused) has an empty message of its own.
    let text = e?.message || (Array.isArray(e?.errors) ? [...new Set(e.errors.map((x) => x.message))].join('; ') : '') || String(e?.code ?? err);
    text = scrub(text, this.secrets);
    const hint = e?.code === '42501' ? 'the database user needs USAGE and CREATE on the schema; state.postgres.schema picks another one' : undefined;
    const problem = isConnectionError(e) ? 'cannot connect to the PostgreSQL state store' : 'the PostgreSQL state store failed';
    return new UserError(`${problem} ${this.where}: ${text}`, EXIT.TEMPFAIL, hint);
  }

  private async query<R extends Record<string, any> = Record<string, any>>(text: string, values: unknown[] = []) {
    try {
      return await this.pool.query<R>(text, values);
    } catch (err) {
      throw this.translate(err);
    }
  }

  async get(key: string): Promise<JournalEntry | undefined> {
    const { rows } = await this.query(`SELECT * FROM ${this.s}.mailagent_journal WHERE key = $1`, [key]);
    return rows[0] && journalEntryFromRow(rows[0]);
  }

  async begin(key: string, info: BeginInfo, expected: { attempt: number }): Promise<boolean> {
    // A concurrent insert of the same key waits for the first to commit, then takes the
    // conflict path and re-checks the WHERE on the committed row: attempt moved on, no update.
    const { rowCount } =
      expected.attempt === 0
        ? await this.query(
            `INSERT INTO ${this.s}.mailagent_journal AS j (key, message_id, sender, body_hash, mutates, state, attempt) VALUES ($1, $2, $3, $4, $5, 'executing', 1)
             ON CONFLICT (key) DO UPDATE SET state = 'executing', mutates = excluded.mutates, attempt = 1, updated_at = now() WHERE j.attempt = 0`,
            [key, info.messageId ?? null, info.sender, info.bodyHash, info.mutates],
          )
        : await this.query(
            `UPDATE ${this.s}.mailagent_journal SET state = 'executing', mutates = $2, attempt = $3 + 1, updated_at = now() WHERE key = $1 AND attempt = $3`,
            [key, info.mutates, expected.attempt],
          );
    return rowCount === 1;
  }

  async saveReply(key: string, reply: StoredReply, expected?: { attempt: number }): Promise<boolean> {
    const { rowCount } = await this.query(
      `UPDATE ${this.s}.mailagent_journal SET state = 'reply-pending', reply_id = $1, reply_from = $2, reply_to = $3, reply_raw = $4,
       queued_at = $5, next_attempt_at = 0, attempts = 0, last_error = NULL, updated_at = now() WHERE key = $6 AND ($7::int IS NULL OR attempt = $7)`,
      [reply.messageId, reply.from, JSON.stringify(reply.to), reply.raw, Date.now(), key, expected?.attempt ?? null],
    );
    return rowCount === 1;
  }

  async markReplied(key: string) {
    await this.query(
      `UPDATE ${this.s}.mailagent_journal SET state = 'replied', reply_raw = NULL, next_attempt_at = NULL, updated_at = now() WHERE key = $1`,
      [key],
    );
  }

  async counts() {
    const counts: Record<JournalState, number> = { executing: 0, 'reply-pending': 0, replied: 0 };
    const { rows } = await this.query<{ state: JournalState; n: number }>(`SELECT state, count(*) AS n FROM ${this.s}.mailagent_journal GROUP BY state`);
    for (const row of rows) counts[row.state] = row.n;
    return counts;
  }

  async takeDueReplies(now: number, leaseMs: number, limit: number): Promise<OutboxEntry[]> {
    // Rows another agent is leasing right now are skipped, not waited for; a row leased and
    // committed meanwhile is re-checked against next_attempt_at by FOR UPDATE, so it is left out.
    const { rows } = await this.query(
      `UPDATE ${this.s}.mailagent_journal AS j SET next_attempt_at = $2
         FROM (SELECT key FROM ${this.s}.mailagent_journal
                WHERE state = 'reply-pending' AND next_attempt_at <= $1
                ORDER BY queued_at, key LIMIT $3 FOR UPDATE SKIP LOCKED) AS due
        WHERE j.key = due.key
        RETURNING j.*`,
      [now, now + leaseMs, limit],
    );
    return rows
      .sort((a, b) => a.queued_at - b.queued_at || (a.key < b.key ? -1 : 1))
      .map((row) => ({
        key: row.key,
        reply: { messageId: row.reply_id, from: row.reply_from, to: row.reply_to, raw: row.reply_raw },
        attempts: row.attempts,
        queuedAt: row.queued_at,
        ...(row.last_error && { lastError: row.last_error }),
      }));
  }

  async deferReply(key: string, nextAttemptAt: number, error: string) {
    await this.query(
      `UPDATE ${this.s}.mailagent_journal SET next_attempt_at = $1, attempts = attempts + 1, last_error = $2, updated_at = now()
        WHERE key = $3 AND state = 'reply-pending'`,
      [nextAttemptAt, error, key],
    );
  }

  async outboxStats(): Promise<OutboxStats> {
    const { rows } = await this.query<{ n: number; oldest: number | null }>(
      `SELECT count(*) AS n, min(queued_at) AS oldest FROM ${this.s}.mailagent_journal WHERE state = 'reply-pending'`,
    );
    return { depth: rows[0].n, ...(rows[0].oldest !== null && { oldestQueuedAt: rows[0].oldest }) };
  }

  async claim(name: string, owner: string, now: number, until: number): Promise<boolean> {
    const { rowCount } = await this.query(
      `INSERT INTO ${this.s}.mailagent_leases AS l (name, owner, until) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
       WHERE l.owner = excluded.owner OR l.until <= $4`,
      [name, owner, until, now],
    );
    return rowCount === 1;
  }

  async release(name: string, owner: string) {
    await this.query(`DELETE FROM ${this.s}.mailagent_leases WHERE name = $1 AND owner = $2`, [name, owner]);
  }

  async useTotpStep(address: string, step: number): Promise<boolean> {
    const { rowCount } = await this.query(
      `INSERT INTO ${this.s}.mailagent_totp_used AS t (address, last_step) VALUES ($1, $2)
       ON CONFLICT (address) DO UPDATE SET last_step = excluded.last_step WHERE t.last_step < excluded.last_step`,
      [address, step],
    );
    return rowCount === 1;
  }

  async saveConfirmation(p: PendingConfirmation) {
    await this.query(`INSERT INTO ${this.s}.mailagent_confirmations (token, sender, commands, expires_at) VALUES ($1, $2, $3, $4)`, [
      p.token,
      p.sender,
      JSON.stringify(p.commands),
      p.expiresAt,
    ]);
  }

  async takeConfirmation(token: string, sender: string): Promise<PendingConfirmation | undefined> {
    const { rows } = await this.query(`DELETE FROM ${this.s}.mailagent_confirmations WHERE token = $1 AND sender = $2 RETURNING *`, [token, sender]);
    const row = rows[0];
    return row ? { token, sender: row.sender, commands: row.commands, expiresAt: row.expires_at } : undefined;
  }

  async recordEvent(kind: RateEvent, subject: string, at: number) {
    if (!this.eventPruning.due(at)) {
      await this.query(`INSERT INTO ${this.s}.mailagent_events (kind, subject, at) VALUES ($1, $2, $3)`, [kind, subject, at]);
      return;
    }
    await this.query(
      `WITH pruned AS (DELETE FROM ${this.s}.mailagent_events WHERE at < $4)
       INSERT INTO ${this.s}.mailagent_events (kind, subject, at) VALUES ($1, $2, $3)`,
      [kind, subject, at, at - EVENTS_KEPT_MS],
    );
  }

  async countEvents(kind: RateEvent, subject: string | undefined, since: number): Promise<number> {
    // Two shapes, each answered from one index alone: (kind, at) for all senders, (kind, subject, at) for one.
    const { rows } =
      subject === undefined
        ? await this.query<{ n: number }>(`SELECT count(*) AS n FROM ${this.s}.mailagent_events WHERE kind = $1 AND at >= $2`, [kind, since])
        : await this.query<{ n: number }>(`SELECT count(*) AS n FROM ${this.s}.mailagent_events WHERE kind = $1 AND subject = $2 AND at >= $3`, [kind, subject, since]);
    return rows[0].n;
  }

  async close() {
    await this.pool.end().catch(() => undefined);
  }
}
