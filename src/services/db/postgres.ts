import type { Pool, PoolClient } from 'pg';
import { CommandError } from '../../core/errors';
import type { ServerDatabase } from '../../config/types';
import { RowCollector, describeError, isNetworkError, privilegedAccount, withWatchdog, type EngineOptions } from './common';
import type { ColumnInfo, DbEngine, ParamTypes, QueryResult, SqlResult, TableInfo } from './engine';
import { toPositional } from './params';
import { EXACT_COUNT_BELOW, errorText, serverPassword, tableType, tlsOptions } from './server';

type PgConfig = ServerDatabase & { schema?: string };
type Streamed = QueryResult & { command: string; rowCount: number | null; hasRows: boolean };

const OID = { int8: 20, date: 1082, time: 1083, timestamp: 1114, interval: 1186 };

/**
 * Before a `db sql` statement: its statement timeout, and whether the account may write server
 * files or run programs there, which a READ ONLY transaction does not prevent.
 */
const SQL_SESSION = `SELECT set_config('statement_timeout', $1, true) AS timeout, current_user AS account,
  CASE WHEN (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN 'superuser'
       WHEN pg_has_role('pg_write_server_files', 'USAGE') THEN 'pg_write_server_files'
       WHEN pg_has_role('pg_execute_server_program', 'USAGE') THEN 'pg_execute_server_program' END AS privileged`;

/** "could not determine data type of parameter": ambiguous_parameter, indeterminate_datatype. */
const UNTYPED_PARAMETER = new Set(['42P08', '42P18']);

/** The PostgreSQL type of each declared parameter type, for statements the server cannot type alone. */
const PG_TYPES: Record<ParamTypes[string], string> = { string: 'text', enum: 'text', int: 'bigint', number: 'numeric', date: 'date', bool: 'boolean' };

/**
 * PostgreSQL through node-postgres. One small pool per database, opened on first use. Every
 * statement is sent with the extended protocol, which takes exactly one statement: `db sql`
 * cannot smuggle a COMMIT and a write after its SELECT. Reads run in READ ONLY transactions;
 * the server applies statement_timeout to every statement of the session.
 */
export function postgresEngine(cfg: PgConfig, opts: EngineOptions): DbEngine {
  let pool: Pool | undefined;
  let secret: string | undefined;

  const getPool = (): Pool => {
    if (pool) return pool;
    const pg = require('pg') as typeof import('pg');
    secret = serverPassword(cfg, opts, 'postgres');
    const getTypeParser = (oid: number, format?: string): unknown => {
      if (format === undefined || format === 'text') {
        // Dates, times and intervals as the server writes them (no time zone invented);
        // bigint as a number when it fits. timestamptz stays a Date, shown as ISO 8601 (UTC).
        if (oid === OID.date || oid === OID.time || oid === OID.timestamp || oid === OID.interval) return (v: string) => v;
        if (oid === OID.int8) return (v: string) => (Number.isSafeInteger(Number(v)) ? Number(v) : BigInt(v));
      }
      return pg.types.getTypeParser(oid, format as 'text');
    };
    pool = new pg.Pool({
      host: cfg.host,
      port: cfg.port ?? 5432,
      user: cfg.user,
      password: secret,
      database: cfg.database,
      ssl: tlsOptions(cfg.ssl),
      max: 3,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 10_000,
      allowExitOnIdle: true,
      statement_timeout: opts.timeoutMs,
      application_name: 'mailagent',
      // The schema name is a plain identifier (config.schema.json), quoted for the server.
      ...(cfg.schema && { options: `-c search_path="${cfg.schema}"` }),
      types: { getTypeParser } as never,
    });
    pool.on('error', () => undefined); // an idle connection was lost: the next checkout opens another
    return pool;
  };

  const translate = (err: unknown, context: { changes?: boolean; watchdog?: boolean } = {}): CommandError => {
    if (err instanceof CommandError) return err;
    const e = err as Error & { code?: string; detail?: string; severity?: string };
    const code = typeof e.code === 'string' ? e.code : '';
    const text = errorText(e);
    const o = { ...opts, secret, changes: context.changes };
    if (/^[0-9A-Z]{5}$/.test(code) && (e.severity || e.constructor?.name === 'DatabaseError')) {
      const detail = e.detail ? ` (${e.detail})` : '';
      if (code === '57014' && (context.watchdog || /statement timeout/.test(text))) return describeError('timeout', text, o);
      if (code.startsWith('08') || code === '57P01' || code === '57P03') return describeError('unreachable', text, o);
      if (code.startsWith('28') || code === '3D000') return describeError('login', text, o);
      // 25006 a write in a READ ONLY transaction; 25001 an attempt to make it read-write
      if (code.startsWith('25')) return describeError('read-only', text, o);
      if (code.startsWith('23')) return describeError('constraint', `${text}${detail}`, o);
      if (code.startsWith('22')) return describeError('value', text, o);
      if (code.startsWith('42')) return describeError('sql', text, o);
      return describeError('other', `${text}${detail}`, o);
    }
    if (context.watchdog) return describeError('timeout', text, o);
    if (isNetworkError(e) || e.name === 'AggregateError') return describeError('unreachable', text, o);
    throw err; // a bug, not a database answer: the pipeline reports it as an internal error
  };

  /** Runs `fn` on a pooled connection; `discard` closes that connection afterwards instead of reusing it. */
  const withClient = async <T>(fn: (client: PoolClient) => Promise<T>, discard = false): Promise<T> => {
    let client: PoolClient;
    try {
      client = await getPool().connect();
    } catch (err) {
      throw translate(err);
    }
    let failed = false;
    try {
      return await fn(client);
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      // After a failure the session's state is unknown (e.g. the server went away): not reused.
      client.release(discard || failed ? true : undefined);
    }
  };

  /** Streams the rows of one statement, keeping the first `maxRows` and counting the others. */
  const stream = (client: PoolClient, text: string, values: unknown[], maxRows: number): Promise<Streamed> =>
    new Promise((resolve, reject) => {
      const { Query } = require('pg') as typeof import('pg');
      const query = new Query({ text, values, rowMode: 'array', queryMode: 'extended' } as never);
      const rows = new RowCollector(maxRows);
      query.on('row', (row: unknown[]) => rows.add(row));
      query.on('error', reject);
      query.on('end', (result: { fields?: { name: string }[]; command: string; rowCount: number | null }) => {
        const fields = result.fields ?? [];
        resolve({ columns: fields.map((f) => f.name), rows: rows.rows, total: rows.total, command: result.command, rowCount: result.rowCount, hasRows: fields.length > 0 });
      });
      client.query(query as never);
    });

  const rollback = (client: PoolClient) => client.query('ROLLBACK').catch(() => undefined);

  /** BEGIN READ ONLY … ROLLBACK around `fn`. */
  const readOnly = async <T>(client: PoolClient, fn: () => Promise<T>): Promise<T> => {
    await client.query('BEGIN READ ONLY');
    try {
      return await fn();
    } finally {
      await rollback(client);
    }
  };

  const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

  /**
   * Runs a named statement with its parameters as written, so the server types them from their
   * context. Where it cannot (42P08/42P18, e.g. `:since IS NULL OR opened >= :since`), once more
   * with each parameter cast to its declared type: the first attempt failed at parse time, so
   * nothing ran.
   */
  const withParams = async <T>(
    sql: string,
    params: Record<string, unknown>,
    types: ParamTypes | undefined,
    attempt: (text: string, values: unknown[]) => Promise<T>,
  ): Promise<T> => {
    const plain = toPositional(sql, 'postgres', params);
    try {
      return await attempt(plain.text, plain.values);
    } catch (err) {
      if (!UNTYPED_PARAMETER.has((err as { code?: string }).code ?? '') || !types) throw err;
      const casts = Object.fromEntries(Object.entries(types).map(([name, type]) => [name, PG_TYPES[type]]));
      const typed = toPositional(sql, 'postgres', params, casts);
      return attempt(typed.text, typed.values);
    }
  };

  return {
    kind: 'postgres',

    tables: ({ counts = true } = {}) =>
      withClient(async (client) => {
        try {
          return await readOnly(client, async () => {
            const { rows } = await client.query<{ schema: string; name: string; type: string; estimate: number; current: boolean }>(
              `SELECT t.table_schema AS schema, t.table_name AS name, t.table_type AS type,
                      (SELECT c.reltuples FROM pg_catalog.pg_class c
                        WHERE c.oid = format('%I.%I', t.table_schema, t.table_name)::regclass)::bigint AS estimate,
                      t.table_schema::text = current_schema() AS current
                 FROM information_schema.tables t
                WHERE t.table_schema::text = ANY (current_schemas(false)::text[])
                ORDER BY array_position(current_schemas(false)::text[], t.table_schema::text), t.table_name`,
            );
            const list: TableInfo[] = [];
            for (const t of rows) {
              const name = t.current ? t.name : `${t.schema}.${t.name}`;
              let count: number | string | null = null;
              if (counts && t.estimate >= EXACT_COUNT_BELOW) count = `~${t.estimate}`;
              else if (counts) {
                // A savepoint per table: a timeout on one view must not lose the whole list.
                await client.query('SAVEPOINT mailagent_count');
                try {
                  const r = await client.query<{ n: number }>(`SELECT count(*) AS n FROM ${quoteIdent(t.schema)}.${quoteIdent(t.name)}`);
                  count = r.rows[0].n;
                  await client.query('RELEASE SAVEPOINT mailagent_count');
                } catch (err) {
                  if (!(err as { severity?: string }).severity) throw err;
                  await client.query('ROLLBACK TO SAVEPOINT mailagent_count');
                  count = '?';
                }
              }
              list.push({ name, type: tableType(t.type), rows: count });
            }
            return list;
          });
        } catch (err) {
          throw translate(err);
        }
      }),

    describe: (table) =>
      withClient(async (client): Promise<ColumnInfo[] | undefined> => {
        const dot = table.indexOf('.');
        const [schema, name] = dot > 0 ? [table.slice(0, dot), table.slice(dot + 1)] : [null, table];
        try {
          const found = await client.query<{ schema: string }>(
            `SELECT t.table_schema AS schema FROM information_schema.tables t
              WHERE t.table_name::text = $2::text
                AND (t.table_schema::text = $1::text OR ($1::text IS NULL AND t.table_schema::text = ANY (current_schemas(false)::text[])))
              ORDER BY array_position(current_schemas(false)::text[], t.table_schema::text) LIMIT 1`,
            [schema, name],
          );
          if (!found.rows.length) return undefined;
          const { rows } = await client.query<{ name: string; type: string; nullable: boolean; default: string | null; pk: boolean }>(
            `SELECT c.column_name AS name, format_type(a.atttypid, a.atttypmod) AS type, c.is_nullable = 'YES' AS nullable,
                    c.column_default AS default,
                    EXISTS (SELECT 1 FROM information_schema.table_constraints tc
                              JOIN information_schema.key_column_usage k
                                ON k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name
                             WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = c.table_schema
                               AND tc.table_name = c.table_name AND k.column_name = c.column_name) AS pk
               FROM information_schema.columns c
               JOIN pg_catalog.pg_attribute a
                 ON a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass AND a.attname = c.column_name::text
              WHERE c.table_schema::text = $1::text AND c.table_name::text = $2::text
              ORDER BY c.ordinal_position`,
            [found.rows[0].schema, name],
          );
          return rows.map((c) => ({ name: c.name, type: c.type, nullable: c.nullable, default: c.default, primaryKey: c.pk }));
        } catch (err) {
          throw translate(err);
        }
      }),

    query: (sql, params, maxRows, types) =>
      withClient(async (client) => {
        try {
          const result = await withParams(sql, params, types, (text, values) => readOnly(client, () => stream(client, text, values, maxRows)));
          if (!result.hasRows) throw new CommandError('this named query does not return rows');
          return { columns: result.columns, rows: result.rows, total: result.total };
        } catch (err) {
          throw translate(err);
        }
      }),

    update: (sql, params, types) =>
      withClient(async (client) => {
        try {
          return await withParams(sql, params, types, async (text, values) => {
            await client.query('BEGIN');
            try {
              const result = await stream(client, text, values, 0);
              await client.query('COMMIT');
              return { affected: result.rowCount ?? 0 };
            } catch (err) {
              await rollback(client);
              throw err;
            }
          });
        } catch (err) {
          throw translate(err, { changes: true });
        }
      }),

    sql: (text, maxRows) =>
      // The connection is closed afterwards: nothing the statement did to the session survives.
      withClient(async (client): Promise<SqlResult> => {
        const pid = (client as unknown as { processID?: number }).processID;
        const outcome = await withWatchdog(
          opts.timeoutMs,
          () =>
            readOnly(client, async () => {
              // A SELECT, not SET: it takes the transaction's snapshot, after which the server
              // refuses SET TRANSACTION READ WRITE ("must be set before any query").
              const { rows } = await client.query<{ account: string; privileged: string | null }>(SQL_SESSION, [String(Math.ceil(opts.timeoutMs))]);
              if (rows[0].privileged) throw privilegedAccount(opts, rows[0].account, rows[0].privileged);
              return stream(client, text, [], maxRows);
            }),
          async () => {
            if (pid) await getPool().query('SELECT pg_cancel_backend($1)', [pid]);
          },
        );
        if (outcome.error !== undefined) throw translate(outcome.error, { watchdog: outcome.fired });
        const result = outcome.value!;
        if (!result.hasRows) return { command: result.command, ...(result.rowCount !== null && { affected: result.rowCount }) };
        return { columns: result.columns, rows: result.rows, total: result.total };
      }, true),

    check: (sql, types) =>
      withClient(async (client) => {
        try {
          // PREPARE parses and plans, nothing runs; with untyped parameters once more with casts.
          await withParams(sql, {}, types, (text) => client.query(`PREPARE mailagent_check AS ${text}`));
          await client.query('DEALLOCATE mailagent_check');
        } catch (err) {
          throw translate(err);
        }
      }),

    version: () =>
      withClient(async (client) => {
        try {
          const { rows } = await client.query<{ v: string }>(`SELECT current_setting('server_version') AS v`);
          return `PostgreSQL ${rows[0].v.split(' ')[0]}`;
        } catch (err) {
          throw translate(err);
        }
      }),

    close: async () => {
      const p = pool;
      pool = undefined;
      await p?.end().catch(() => undefined);
    },
  };
}
