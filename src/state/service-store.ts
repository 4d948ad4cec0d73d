import type { Pool } from 'pg';
import type { Config } from '../config/types';
import { EXIT, UserError } from '../core/errors';
import { openStateFile, type openSqlite } from '../sqlite/open';

/**
 * What the services remember: schedules set by mail, the log of every job run with its output,
 * the claims that make each scheduled firing run once even when several agents watch it, small
 * records (alert rules and their state) and time series (device samples). It lives beside the
 * journal (same SQLite file, or the same PostgreSQL schema) in tables of its own.
 *
 * Schedules and firings are keyed by name: a job's name as it is (job names have no ":"), other
 * services' entries as "<service>:<name>" (see scheduleKey).
 */
export type RunStatus = 'running' | 'ok' | 'failed' | 'timeout' | 'error';

export interface RunStart {
  job: string;
  /** The arguments as given in the mail (textual). */
  args: Record<string, string>;
  /** Sender address, or "schedule". */
  who: string;
  startedAt: number;
}

export interface RunEnd {
  endedAt: number;
  status: RunStatus;
  exitCode: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: Buffer;
  /** Why it did not run or how it ended, when the exit code does not say (timeout, spawn error). */
  note?: string;
}

export interface RunSummary extends RunStart {
  id: number;
  status: RunStatus;
  endedAt?: number;
  exitCode?: number | null;
  signal?: string | null;
  note?: string;
  /** The last lines of the output, for listings. */
  tail: string;
}

export interface RunDetail extends RunSummary {
  stdout: Buffer;
  stderr: Buffer;
}

/** The key of a schedule or firing that belongs to another service than jobs ("backup:etc"). */
export const scheduleKey = (service: string, name: string): string => `${service}:${name}`;

/** A small JSON document a service keeps; `version` counts its writes, for compare-and-set. */
export interface StoredRecord<T = unknown> {
  key: string;
  value: T;
  version: number;
  updatedAt: number;
}

/** One point of a time series. */
export interface Sample<T = unknown> {
  at: number;
  value: T;
}

export interface Schedule {
  /** The job's name, or a scheduleKey() of another service. */
  job: string;
  cron: string;
  setBy: string;
  setAt: number;
}

export interface ServiceStore {
  listSchedules(): Promise<Schedule[]>;
  setSchedule(schedule: Schedule): Promise<void>;
  /** False when the job had no schedule. */
  clearSchedule(job: string): Promise<boolean>;
  startRun(run: RunStart): Promise<number>;
  /** Records the end of a run and keeps only the newest `keep` finished runs of that job. */
  finishRun(id: number, end: RunEnd, keep: number): Promise<void>;
  /** Newest first. */
  listRuns(query: { job?: string; limit: number }): Promise<RunSummary[]>;
  getRun(id: number): Promise<RunDetail | undefined>;
  /** True for exactly one caller per (job, scheduledAt), across every agent sharing the store. */
  claimFiring(job: string, scheduledAt: number, owner?: string): Promise<boolean>;
  /** Records of one space (e.g. "nms.alert"), ordered by key. */
  listRecords<T>(space: string): Promise<StoredRecord<T>[]>;
  getRecord<T>(space: string, key: string): Promise<StoredRecord<T> | undefined>;
  /**
   * Writes a record. With `expected` (0 = must not exist) only when its version is still that
   * one: false means another writer came first and nothing was written.
   */
  putRecord(space: string, key: string, value: unknown, expected?: number): Promise<boolean>;
  deleteRecord(space: string, key: string): Promise<boolean>;
  appendSample(space: string, key: string, at: number, value: unknown): Promise<void>;
  /** Oldest first, from `since` on. */
  listSamples<T>(space: string, key: string, since: number): Promise<Sample<T>[]>;
  /** Drops the samples of a space older than `before`; returns how many. */
  pruneSamples(space: string, before: number): Promise<number>;
  close(): Promise<void>;
}

const TAIL_LINES = 10;
/** Claims older than this are pruned; a firing cannot be due again after it. */
const FIRING_MEMORY_MS = 7 * 86_400_000;

/** The last lines of a run's output (stdout, then stderr), as text. */
export function outputTail(stdout: Buffer, stderr: Buffer, lines = TAIL_LINES): string {
  // Text columns (PostgreSQL) take no NUL; binary output keeps its bytes in stdout/stderr.
  const text = (b: Buffer) => b.subarray(Math.max(0, b.length - 8192)).toString('utf8').replace(/\0/g, '\uFFFD');
  const all = [text(stdout), text(stderr)].filter((t) => t.trim() !== '').join('\n');
  return all.replace(/\s+$/, '').split('\n').slice(-lines).join('\n');
}

export class MemoryServiceStore implements ServiceStore {
  private schedules = new Map<string, Schedule>();
  private runs = new Map<number, RunDetail>();
  private firings = new Set<string>();
  private records = new Map<string, Map<string, StoredRecord>>();
  private samples = new Map<string, Sample[]>();
  private nextId = 1;

  async listSchedules() {
    return [...this.schedules.values()].sort((a, b) => a.job.localeCompare(b.job));
  }
  async setSchedule(schedule: Schedule) {
    this.schedules.set(schedule.job, { ...schedule });
  }
  async clearSchedule(job: string) {
    return this.schedules.delete(job);
  }
  async startRun(run: RunStart) {
    const id = this.nextId++;
    this.runs.set(id, { ...run, id, status: 'running', tail: '', stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) });
    return id;
  }
  async finishRun(id: number, end: RunEnd, keep: number) {
    const run = this.runs.get(id);
    if (!run) return;
    Object.assign(run, { ...end, tail: outputTail(end.stdout, end.stderr) });
    const finished = [...this.runs.values()].filter((r) => r.job === run.job && r.status !== 'running').sort((a, b) => b.id - a.id);
    for (const old of finished.slice(keep)) this.runs.delete(old.id);
  }
  async listRuns(query: { job?: string; limit: number }) {
    return [...this.runs.values()]
      .filter((r) => query.job === undefined || r.job === query.job)
      .sort((a, b) => b.id - a.id)
      .slice(0, query.limit)
      .map(({ stdout: _o, stderr: _e, ...summary }) => summary);
  }
  async getRun(id: number) {
    return this.runs.get(id);
  }
  async claimFiring(job: string, scheduledAt: number) {
    const key = `${job}\n${scheduledAt}`;
    if (this.firings.has(key)) return false;
    this.firings.add(key);
    return true;
  }
  private space(space: string): Map<string, StoredRecord> {
    let records = this.records.get(space);
    if (!records) this.records.set(space, (records = new Map()));
    return records;
  }
  async listRecords<T>(space: string) {
    return [...this.space(space).values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((r) => structuredClone(r) as StoredRecord<T>);
  }
  async getRecord<T>(space: string, key: string) {
    const found = this.space(space).get(key);
    return found && (structuredClone(found) as StoredRecord<T>);
  }
  async putRecord(space: string, key: string, value: unknown, expected?: number) {
    const records = this.space(space);
    const version = records.get(key)?.version ?? 0;
    if (expected !== undefined && expected !== version) return false;
    records.set(key, { key, value: structuredClone(value), version: version + 1, updatedAt: Date.now() });
    return true;
  }
  async deleteRecord(space: string, key: string) {
    return this.space(space).delete(key);
  }
  async appendSample(space: string, key: string, at: number, value: unknown) {
    const id = `${space}\n${key}`;
    const series = this.samples.get(id) ?? [];
    series.push({ at, value: structuredClone(value) });
    series.sort((a, b) => a.at - b.at);
    this.samples.set(id, series);
  }
  async listSamples<T>(space: string, key: string, since: number) {
    return (this.samples.get(`${space}\n${key}`) ?? []).filter((p) => p.at >= since).map((p) => structuredClone(p) as Sample<T>);
  }
  async pruneSamples(space: string, before: number) {
    let removed = 0;
    for (const [id, series] of this.samples) {
      if (!id.startsWith(`${space}\n`)) continue;
      const kept = series.filter((p) => p.at >= before);
      removed += series.length - kept.length;
      this.samples.set(id, kept);
    }
    return removed;
  }
  async close() {}
}

const recordOf = <T>(row: Row): StoredRecord<T> => ({ key: row.key, value: JSON.parse(row.value), version: Number(row.version), updatedAt: Number(row.updated_at) });

type Row = Record<string, any>;

function summaryOf(row: Row): RunSummary {
  return {
    id: Number(row.id),
    job: row.job,
    args: JSON.parse(row.args),
    who: row.who,
    startedAt: Number(row.started_at),
    status: row.status,
    ...(row.ended_at !== null && { endedAt: Number(row.ended_at) }),
    ...(row.status !== 'running' && { exitCode: row.exit_code, signal: row.signal }),
    ...(row.note !== null && { note: row.note }),
    tail: row.tail ?? '',
  };
}

const detailOf = (row: Row): RunDetail => ({ ...summaryOf(row), stdout: row.stdout ?? Buffer.alloc(0), stderr: row.stderr ?? Buffer.alloc(0) });

const SUMMARY_COLUMNS = 'id, job, args, who, started_at, ended_at, status, exit_code, signal, note, tail';

const SQLITE_SCHEMA = `
CREATE TABLE IF NOT EXISTS job_schedules (job TEXT PRIMARY KEY, cron TEXT NOT NULL, set_by TEXT NOT NULL, set_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS job_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job TEXT NOT NULL, args TEXT NOT NULL, who TEXT NOT NULL,
  started_at INTEGER NOT NULL, ended_at INTEGER, status TEXT NOT NULL,
  exit_code INTEGER, signal TEXT, note TEXT, tail TEXT, stdout BLOB, stderr BLOB
);
CREATE INDEX IF NOT EXISTS job_runs_by_job ON job_runs (job, id);
CREATE TABLE IF NOT EXISTS job_firings (job TEXT NOT NULL, scheduled_at INTEGER NOT NULL, owner TEXT, claimed_at INTEGER NOT NULL, PRIMARY KEY (job, scheduled_at));
CREATE TABLE IF NOT EXISTS service_records (space TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, version INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (space, key));
CREATE TABLE IF NOT EXISTS service_samples (space TEXT NOT NULL, key TEXT NOT NULL, at INTEGER NOT NULL, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS service_samples_by_key ON service_samples (space, key, at);`;

/** In the state store's SQLite file (WAL, so `run` processes and the watch agent share it). */
export class SqliteServiceStore implements ServiceStore {
  private db: ReturnType<typeof openSqlite>;

  constructor(path: string) {
    this.db = openStateFile(path, 'service store in', (db) => db.exec(SQLITE_SCHEMA));
  }

  async listSchedules(): Promise<Schedule[]> {
    const rows = this.db.prepare('SELECT * FROM job_schedules ORDER BY job').all() as Row[];
    return rows.map((r) => ({ job: r.job, cron: r.cron, setBy: r.set_by, setAt: r.set_at }));
  }
  async setSchedule(s: Schedule) {
    this.db
      .prepare('INSERT INTO job_schedules (job, cron, set_by, set_at) VALUES (?, ?, ?, ?) ON CONFLICT(job) DO UPDATE SET cron = excluded.cron, set_by = excluded.set_by, set_at = excluded.set_at')
      .run(s.job, s.cron, s.setBy, s.setAt);
  }
  async clearSchedule(job: string) {
    return this.db.prepare('DELETE FROM job_schedules WHERE job = ?').run(job).changes === 1;
  }
  async startRun(run: RunStart) {
    const info = this.db
      .prepare(`INSERT INTO job_runs (job, args, who, started_at, status) VALUES (?, ?, ?, ?, 'running')`)
      .run(run.job, JSON.stringify(run.args), run.who, run.startedAt);
    return Number(info.lastInsertRowid);
  }
  async finishRun(id: number, end: RunEnd, keep: number) {
    const finish = this.db.transaction(() => {
      this.db
        .prepare('UPDATE job_runs SET ended_at = ?, status = ?, exit_code = ?, signal = ?, note = ?, tail = ?, stdout = ?, stderr = ? WHERE id = ?')
        .run(end.endedAt, end.status, end.exitCode, end.signal, end.note ?? null, outputTail(end.stdout, end.stderr), end.stdout, end.stderr, id);
      const job = (this.db.prepare('SELECT job FROM job_runs WHERE id = ?').get(id) as Row | undefined)?.job;
      this.db
        .prepare(`DELETE FROM job_runs WHERE job = ? AND status <> 'running' AND id NOT IN (SELECT id FROM job_runs WHERE job = ? AND status <> 'running' ORDER BY id DESC LIMIT ?)`)
        .run(job, job, keep);
    });
    finish.immediate();
  }
  async listRuns(query: { job?: string; limit: number }) {
    const rows = (
      query.job === undefined
        ? this.db.prepare(`SELECT ${SUMMARY_COLUMNS} FROM job_runs ORDER BY id DESC LIMIT ?`).all(query.limit)
        : this.db.prepare(`SELECT ${SUMMARY_COLUMNS} FROM job_runs WHERE job = ? ORDER BY id DESC LIMIT ?`).all(query.job, query.limit)
    ) as Row[];
    return rows.map(summaryOf);
  }
  async getRun(id: number) {
    const row = this.db.prepare('SELECT * FROM job_runs WHERE id = ?').get(id) as Row | undefined;
    return row ? detailOf(row) : undefined;
  }
  async claimFiring(job: string, scheduledAt: number, owner?: string) {
    const now = Date.now();
    const claim = this.db.transaction(() => {
      const won = this.db
        .prepare('INSERT INTO job_firings (job, scheduled_at, owner, claimed_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING')
        .run(job, scheduledAt, owner ?? null, now).changes === 1;
      if (won) this.db.prepare('DELETE FROM job_firings WHERE claimed_at < ?').run(now - FIRING_MEMORY_MS);
      return won;
    });
    return claim.immediate();
  }
  async listRecords<T>(space: string) {
    return (this.db.prepare('SELECT * FROM service_records WHERE space = ? ORDER BY key').all(space) as Row[]).map((r) => recordOf<T>(r));
  }
  async getRecord<T>(space: string, key: string) {
    const row = this.db.prepare('SELECT * FROM service_records WHERE space = ? AND key = ?').get(space, key) as Row | undefined;
    return row ? recordOf<T>(row) : undefined;
  }
  async putRecord(space: string, key: string, value: unknown, expected?: number) {
    const json = JSON.stringify(value);
    const now = Date.now();
    if (expected === undefined) {
      this.db
        .prepare('INSERT INTO service_records (space, key, value, version, updated_at) VALUES (?, ?, ?, 1, ?) ON CONFLICT (space, key) DO UPDATE SET value = excluded.value, version = version + 1, updated_at = excluded.updated_at')
        .run(space, key, json, now);
      return true;
    }
    if (expected === 0) {
      return this.db.prepare('INSERT INTO service_records (space, key, value, version, updated_at) VALUES (?, ?, ?, 1, ?) ON CONFLICT DO NOTHING').run(space, key, json, now).changes === 1;
    }
    return this.db.prepare('UPDATE service_records SET value = ?, version = version + 1, updated_at = ? WHERE space = ? AND key = ? AND version = ?').run(json, now, space, key, expected).changes === 1;
  }
  async deleteRecord(space: string, key: string) {
    return this.db.prepare('DELETE FROM service_records WHERE space = ? AND key = ?').run(space, key).changes === 1;
  }
  async appendSample(space: string, key: string, at: number, value: unknown) {
    this.db.prepare('INSERT INTO service_samples (space, key, at, value) VALUES (?, ?, ?, ?)').run(space, key, at, JSON.stringify(value));
  }
  async listSamples<T>(space: string, key: string, since: number) {
    const rows = this.db.prepare('SELECT at, value FROM service_samples WHERE space = ? AND key = ? AND at >= ? ORDER BY at').all(space, key, since) as Row[];
    return rows.map((r) => ({ at: Number(r.at), value: JSON.parse(r.value) as T }));
  }
  async pruneSamples(space: string, before: number) {
    return this.db.prepare('DELETE FROM service_samples WHERE space = ? AND at < ?').run(space, before).changes;
  }
  async close() {
    this.db.close();
  }
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** On the shared PostgreSQL server of `state.postgres`, so agents on several hosts see one log and claim firings once. */
export class PgServiceStore implements ServiceStore {
  private constructor(
    private pool: Pool,
    private t: { schedules: string; runs: string; firings: string; records: string; samples: string },
  ) {}

  static async open(config: Config): Promise<PgServiceStore> {
    const { stateServer, scrub } = require('./pg-store') as typeof import('./pg-store');
    const { url, schema, where, secrets } = stateServer(config);
    const pg = require('pg') as typeof import('pg');
    const pool = new pg.Pool({ connectionString: url, max: 3, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 10_000, allowExitOnIdle: true, application_name: 'mailagent' });
    pool.on('error', () => undefined); // an idle connection was lost: the next query opens another
    const s = quoteIdent(schema);
    const store = new PgServiceStore(pool, {
      schedules: `${s}.job_schedules`,
      runs: `${s}.job_runs`,
      firings: `${s}.job_firings`,
      records: `${s}.service_records`,
      samples: `${s}.service_samples`,
    });
    const client = await pool.connect().catch(async (err: Error) => {
      await pool.end().catch(() => undefined);
      throw new UserError(`service store: cannot connect to the PostgreSQL state server ${where}: ${scrub(err.message, secrets)}`, EXIT.TEMPFAIL);
    });
    try {
      // Several agents may start at once: one creates the tables, the others wait for it.
      await client.query('BEGIN');
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('mailagent.jobs-store'))`);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${store.t.schedules} (job text PRIMARY KEY, cron text NOT NULL, set_by text NOT NULL, set_at bigint NOT NULL)`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${store.t.runs} (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job text NOT NULL, args text NOT NULL, who text NOT NULL,
        started_at bigint NOT NULL, ended_at bigint, status text NOT NULL,
        exit_code integer, signal text, note text, tail text, stdout bytea, stderr bytea)`);
      await client.query(`CREATE INDEX IF NOT EXISTS job_runs_by_job ON ${store.t.runs} (job, id)`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${store.t.firings} (job text NOT NULL, scheduled_at bigint NOT NULL, owner text, claimed_at bigint NOT NULL, PRIMARY KEY (job, scheduled_at))`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${store.t.records} (space text NOT NULL, key text NOT NULL, value text NOT NULL, version bigint NOT NULL, updated_at bigint NOT NULL, PRIMARY KEY (space, key))`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${store.t.samples} (space text NOT NULL, key text NOT NULL, at bigint NOT NULL, value text NOT NULL)`);
      await client.query(`CREATE INDEX IF NOT EXISTS service_samples_by_key ON ${store.t.samples} (space, key, at)`);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      client.release();
      await pool.end().catch(() => undefined);
      throw new UserError(`service store: cannot prepare tables in schema ${schema} on ${where}: ${scrub((err as Error).message, secrets)}`, EXIT.TEMPFAIL);
    }
    client.release();
    return store;
  }

  async listSchedules(): Promise<Schedule[]> {
    const { rows } = await this.pool.query(`SELECT * FROM ${this.t.schedules} ORDER BY job`);
    return rows.map((r: Row) => ({ job: r.job, cron: r.cron, setBy: r.set_by, setAt: Number(r.set_at) }));
  }
  async setSchedule(s: Schedule) {
    await this.pool.query(
      `INSERT INTO ${this.t.schedules} (job, cron, set_by, set_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (job) DO UPDATE SET cron = excluded.cron, set_by = excluded.set_by, set_at = excluded.set_at`,
      [s.job, s.cron, s.setBy, s.setAt],
    );
  }
  async clearSchedule(job: string) {
    return ((await this.pool.query(`DELETE FROM ${this.t.schedules} WHERE job = $1`, [job])).rowCount ?? 0) === 1;
  }
  async startRun(run: RunStart) {
    const { rows } = await this.pool.query(
      `INSERT INTO ${this.t.runs} (job, args, who, started_at, status) VALUES ($1, $2, $3, $4, 'running') RETURNING id`,
      [run.job, JSON.stringify(run.args), run.who, run.startedAt],
    );
    return Number(rows[0].id);
  }
  async finishRun(id: number, end: RunEnd, keep: number) {
    const { rows } = await this.pool.query(
      `UPDATE ${this.t.runs} SET ended_at = $1, status = $2, exit_code = $3, signal = $4, note = $5, tail = $6, stdout = $7, stderr = $8 WHERE id = $9 RETURNING job`,
      [end.endedAt, end.status, end.exitCode, end.signal, end.note ?? null, outputTail(end.stdout, end.stderr), end.stdout, end.stderr, id],
    );
    if (!rows.length) return;
    await this.pool.query(
      `DELETE FROM ${this.t.runs} WHERE job = $1 AND status <> 'running' AND id NOT IN
       (SELECT id FROM ${this.t.runs} WHERE job = $1 AND status <> 'running' ORDER BY id DESC LIMIT $2)`,
      [rows[0].job, keep],
    );
  }
  async listRuns(query: { job?: string; limit: number }) {
    const { rows } =
      query.job === undefined
        ? await this.pool.query(`SELECT ${SUMMARY_COLUMNS} FROM ${this.t.runs} ORDER BY id DESC LIMIT $1`, [query.limit])
        : await this.pool.query(`SELECT ${SUMMARY_COLUMNS} FROM ${this.t.runs} WHERE job = $1 ORDER BY id DESC LIMIT $2`, [query.job, query.limit]);
    return rows.map(summaryOf);
  }
  async getRun(id: number) {
    const { rows } = await this.pool.query(`SELECT * FROM ${this.t.runs} WHERE id = $1`, [id]);
    return rows.length ? detailOf(rows[0]) : undefined;
  }
  async claimFiring(job: string, scheduledAt: number, owner?: string) {
    const now = Date.now();
    const result = await this.pool.query(
      `INSERT INTO ${this.t.firings} (job, scheduled_at, owner, claimed_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
      [job, scheduledAt, owner ?? null, now],
    );
    const won = (result.rowCount ?? 0) === 1;
    if (won) await this.pool.query(`DELETE FROM ${this.t.firings} WHERE claimed_at < $1`, [now - FIRING_MEMORY_MS]);
    return won;
  }
  async listRecords<T>(space: string) {
    const { rows } = await this.pool.query(`SELECT * FROM ${this.t.records} WHERE space = $1 ORDER BY key COLLATE "C"`, [space]);
    return rows.map((r: Row) => recordOf<T>(r));
  }
  async getRecord<T>(space: string, key: string) {
    const { rows } = await this.pool.query(`SELECT * FROM ${this.t.records} WHERE space = $1 AND key = $2`, [space, key]);
    return rows.length ? recordOf<T>(rows[0]) : undefined;
  }
  async putRecord(space: string, key: string, value: unknown, expected?: number) {
    const json = JSON.stringify(value);
    const now = Date.now();
    if (expected === undefined) {
      await this.pool.query(
        `INSERT INTO ${this.t.records} AS r (space, key, value, version, updated_at) VALUES ($1, $2, $3, 1, $4)
         ON CONFLICT (space, key) DO UPDATE SET value = excluded.value, version = r.version + 1, updated_at = excluded.updated_at`,
        [space, key, json, now],
      );
      return true;
    }
    const result =
      expected === 0
        ? await this.pool.query(`INSERT INTO ${this.t.records} (space, key, value, version, updated_at) VALUES ($1, $2, $3, 1, $4) ON CONFLICT DO NOTHING`, [space, key, json, now])
        : await this.pool.query(`UPDATE ${this.t.records} SET value = $1, version = version + 1, updated_at = $2 WHERE space = $3 AND key = $4 AND version = $5`, [json, now, space, key, expected]);
    return (result.rowCount ?? 0) === 1;
  }
  async deleteRecord(space: string, key: string) {
    return ((await this.pool.query(`DELETE FROM ${this.t.records} WHERE space = $1 AND key = $2`, [space, key])).rowCount ?? 0) === 1;
  }
  async appendSample(space: string, key: string, at: number, value: unknown) {
    await this.pool.query(`INSERT INTO ${this.t.samples} (space, key, at, value) VALUES ($1, $2, $3, $4)`, [space, key, at, JSON.stringify(value)]);
  }
  async listSamples<T>(space: string, key: string, since: number) {
    const { rows } = await this.pool.query(`SELECT at, value FROM ${this.t.samples} WHERE space = $1 AND key = $2 AND at >= $3 ORDER BY at`, [space, key, since]);
    return rows.map((r: Row) => ({ at: Number(r.at), value: JSON.parse(r.value) as T }));
  }
  async pruneSamples(space: string, before: number) {
    return (await this.pool.query(`DELETE FROM ${this.t.samples} WHERE space = $1 AND at < $2`, [space, before])).rowCount ?? 0;
  }
  async close() {
    await this.pool.end();
  }
}

/** A new connection to the jobs tables of the configured state store; the caller closes it. */
export async function openServiceStore(config: Config): Promise<ServiceStore> {
  if (config.state.postgres) return PgServiceStore.open(config);
  return new SqliteServiceStore(config.state.path);
}
