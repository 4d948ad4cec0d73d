import type { Pool, PoolConnection, FieldPacket, ResultSetHeader } from 'mysql2';
import { CommandError } from '../../core/errors';
import type { ServerDatabase } from '../../config/types';
import { RowCollector, describeError, isNetworkError, privilegedAccount, withWatchdog, type EngineOptions } from './common';
import type { ColumnInfo, DbEngine, QueryResult, SqlResult, TableInfo } from './engine';
import { toPositional } from './params';
import { EXACT_COUNT_BELOW, errorText, serverPassword, tableType, tlsOptions } from './server';

type Streamed = QueryResult & { hasRows: boolean; affected: number };
type MysqlError = Error & { code?: string; errno?: number; sqlState?: string; fatal?: boolean };

/** Error numbers (MariaDB and MySQL) that mean a statement ran out of time. */
const TIMEOUT_ERRNOS = new Set([1969 /* MariaDB max_statement_time */, 3024 /* MySQL max_execution_time */]);
const LOGIN_ERRNOS = new Set([1044, 1045, 1049, 1251, 1698]);
const CONSTRAINT_ERRNOS = new Set([4025 /* MariaDB CHECK */, 3819 /* MySQL CHECK */, 1048, 1062, 1216, 1217, 1451, 1452, 1557, 1586]);
const VALUE_ERRNOS = new Set([1264, 1265, 1292, 1366, 1367, 1406, 1411]);

/**
 * Before a `db sql` statement: whether the account may write files on the server (SELECT … INTO
 * OUTFILE), which a READ ONLY transaction does not prevent. GRANTEE is written 'user'@'host'.
 */
const SQL_ACCOUNT = `SELECT CURRENT_USER() AS account,
  (SELECT MAX(PRIVILEGE_TYPE) FROM information_schema.USER_PRIVILEGES
    WHERE PRIVILEGE_TYPE = 'FILE'
      AND GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')) AS privileged`;

/**
 * MySQL and MariaDB through mysql2. Named queries and updates are server-side prepared
 * statements (values never enter the SQL text); `db sql` goes through the text protocol with
 * multiple statements disabled. A DDL statement commits implicitly and would escape a READ ONLY
 * transaction, so `db sql` also makes the session read-only, and then closes the connection.
 */
export function mysqlEngine(cfg: ServerDatabase, opts: EngineOptions): DbEngine {
  let pool: Pool | undefined;
  let secret: string | undefined;
  const ready = new WeakSet<object>();

  const getPool = (): Pool => {
    if (pool) return pool;
    const mysql = require('mysql2') as typeof import('mysql2');
    secret = serverPassword(cfg, opts, 'mysql');
    const ssl = tlsOptions(cfg.ssl);
    pool = mysql.createPool({
      host: cfg.host,
      port: cfg.port ?? 3306,
      user: cfg.user,
      password: secret,
      database: cfg.database,
      ...(ssl && { ssl }),
      connectionLimit: 3,
      maxIdle: 3,
      idleTimeout: 10_000,
      connectTimeout: 10_000,
      multipleStatements: false,
      supportBigNumbers: true,
      bigNumberStrings: false,
      dateStrings: true,
      charset: 'utf8mb4',
    });
    pool.on('connection', (conn) => conn.on('error', () => undefined)); // a lost idle connection is dropped by the pool
    return pool;
  };

  const translate = (err: unknown, context: { changes?: boolean; watchdog?: boolean } = {}): CommandError => {
    if (err instanceof CommandError) return err;
    const e = err as MysqlError;
    const text = errorText(e);
    const o = { ...opts, secret, changes: context.changes };
    const errno = typeof e.errno === 'number' ? e.errno : undefined;
    if (context.watchdog || (errno !== undefined && TIMEOUT_ERRNOS.has(errno)) || e.code === 'PROTOCOL_SEQUENCE_TIMEOUT') {
      return describeError('timeout', text, o);
    }
    if (isNetworkError(e) || e.name === 'AggregateError') return describeError('unreachable', text, o);
    if (errno === undefined || !e.sqlState) throw err; // a bug, not a database answer
    if (LOGIN_ERRNOS.has(errno) || e.sqlState.startsWith('28')) return describeError('login', text, o);
    // 1792 a write in a READ ONLY transaction; 1568 an attempt to change that mid-transaction
    if (errno === 1792 || e.sqlState.startsWith('25')) return describeError('read-only', text, o);
    if (CONSTRAINT_ERRNOS.has(errno) || e.sqlState.startsWith('23')) return describeError('constraint', text, o);
    if (VALUE_ERRNOS.has(errno) || e.sqlState.startsWith('22')) return describeError('value', text, o);
    if (e.sqlState.startsWith('42')) return describeError('sql', text, o);
    return describeError('other', text, o);
  };

  /** One of our own small statements, results buffered; with values, a prepared statement. */
  const run = <T = unknown>(conn: PoolConnection, sql: string, values?: unknown[]): Promise<T> =>
    new Promise((resolve, reject) => {
      const done = (err: unknown, rows: unknown) => (err ? reject(err) : resolve(rows as T));
      if (values) conn.execute({ sql, values }, done);
      else conn.query({ sql }, done);
    });

  /** The statement timeout for every statement of the session: MariaDB, else MySQL's SELECT-only one. */
  const prepareSession = async (conn: PoolConnection): Promise<void> => {
    if (ready.has(conn)) return;
    try {
      await run(conn, `SET SESSION max_statement_time = ${opts.timeoutMs / 1000}`);
    } catch (err) {
      if ((err as MysqlError).errno !== 1193) throw err; // 1193: unknown variable, i.e. MySQL
      await run(conn, `SET SESSION max_execution_time = ${Math.ceil(opts.timeoutMs)}`);
    }
    ready.add(conn);
  };

  const withConnection = async <T>(fn: (conn: PoolConnection) => Promise<T>, discard = false): Promise<T> => {
    let conn: PoolConnection;
    try {
      conn = await new Promise<PoolConnection>((resolve, reject) => getPool().getConnection((err, c) => (err ? reject(err) : resolve(c))));
      await prepareSession(conn);
    } catch (err) {
      throw translate(err);
    }
    let failed = false;
    try {
      return await fn(conn);
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      if (discard || failed) conn.destroy();
      else conn.release();
    }
  };

  /** Streams one statement's rows: prepared (`values`) or text protocol (`db sql`). */
  const stream = (conn: PoolConnection, sql: string, values: unknown[] | undefined, maxRows: number): Promise<Streamed> =>
    new Promise((resolve, reject) => {
      const rows = new RowCollector(maxRows);
      let columns: string[] | undefined;
      let affected = 0;
      let settled = false;
      let firstSetDone = false;
      const command = values
        ? conn.execute({ sql, values, rowsAsArray: true })
        : conn.query({ sql, rowsAsArray: true });
      const emitter = command as unknown as NodeJS.EventEmitter;
      emitter.on('fields', (fields: FieldPacket[] | undefined) => {
        if (fields && columns === undefined) columns = fields.map((f) => f.name);
        else if (fields) firstSetDone = true; // a procedure's further result sets are not shown
      });
      emitter.on('result', (row: unknown[] | ResultSetHeader) => {
        if (Array.isArray(row)) {
          if (!firstSetDone) rows.add(row);
        } else if (row && typeof row === 'object' && 'affectedRows' in row) {
          affected += row.affectedRows;
          if (columns !== undefined) firstSetDone = true;
        }
      });
      emitter.on('error', (err: Error) => {
        if (!settled) reject(err);
        settled = true;
      });
      emitter.on('end', () => {
        if (settled) return;
        settled = true;
        resolve({ columns: columns ?? [], rows: rows.rows, total: rows.total, hasRows: columns !== undefined, affected });
      });
    });

  const rollback = (conn: PoolConnection) => run(conn, 'ROLLBACK').catch(() => undefined);

  const readOnly = async <T>(conn: PoolConnection, fn: () => Promise<T>): Promise<T> => {
    await run(conn, 'START TRANSACTION READ ONLY');
    try {
      return await fn();
    } finally {
      await rollback(conn);
    }
  };

  const quoteIdent = (name: string) => `\`${name.replace(/`/g, '``')}\``;

  return {
    kind: 'mysql',

    tables: ({ counts = true } = {}) =>
      withConnection(async (conn) => {
        try {
          return await readOnly(conn, async () => {
            const rows = await run<{ name: string; type: string; estimate: number | null }[]>(
              conn,
              `SELECT TABLE_NAME AS name, TABLE_TYPE AS type, TABLE_ROWS AS estimate
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME`,
            );
            const list: TableInfo[] = [];
            for (const t of rows) {
              let count: number | string | null = null;
              if (counts && t.estimate !== null && Number(t.estimate) >= EXACT_COUNT_BELOW) count = `~${t.estimate}`;
              else if (counts) {
                try {
                  const [r] = await run<{ n: number }[]>(conn, `SELECT COUNT(*) AS n FROM ${quoteIdent(t.name)}`);
                  count = Number(r.n);
                } catch (err) {
                  if ((err as MysqlError).fatal || !(err as MysqlError).sqlState) throw err;
                  count = '?';
                }
              }
              list.push({ name: t.name, type: tableType(t.type), rows: count });
            }
            return list;
          });
        } catch (err) {
          throw translate(err);
        }
      }),

    describe: (table) =>
      withConnection(async (conn): Promise<ColumnInfo[] | undefined> => {
        try {
          const found = await run<unknown[]>(
            conn,
            'SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?',
            [table],
          );
          if (!found.length) return undefined;
          const rows = await run<{ name: string; type: string; nullable: string; dflt: string | null; k: string }[]>(
            conn,
            `SELECT COLUMN_NAME AS name, COLUMN_TYPE AS type, IS_NULLABLE AS nullable, COLUMN_DEFAULT AS dflt, COLUMN_KEY AS k
               FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
            [table],
          );
          return rows.map((c) => ({ name: c.name, type: c.type, nullable: c.nullable === 'YES', default: c.dflt, primaryKey: c.k === 'PRI' }));
        } catch (err) {
          throw translate(err);
        }
      }),

    query: (sql, params, maxRows) =>
      withConnection(async (conn) => {
        const { text, values } = toPositional(sql, 'mysql', params);
        try {
          const result = await readOnly(conn, () => stream(conn, text, values, maxRows));
          if (!result.hasRows) throw new CommandError('this named query does not return rows');
          return { columns: result.columns, rows: result.rows, total: result.total };
        } catch (err) {
          throw translate(err);
        }
      }),

    update: (sql, params) =>
      withConnection(async (conn) => {
        const { text, values } = toPositional(sql, 'mysql', params);
        try {
          await run(conn, 'START TRANSACTION');
          try {
            const result = await stream(conn, text, values, 0);
            await run(conn, 'COMMIT');
            return { affected: result.affected };
          } catch (err) {
            await rollback(conn);
            throw err;
          }
        } catch (err) {
          throw translate(err, { changes: true });
        }
      }),

    sql: (text, maxRows) =>
      // The connection is closed afterwards: the read-only session and anything the statement
      // changed in it never go back to the pool.
      withConnection(async (conn): Promise<SqlResult> => {
        const threadId = conn.threadId;
        const outcome = await withWatchdog(
          opts.timeoutMs,
          async () => {
            await run(conn, 'SET SESSION TRANSACTION READ ONLY');
            const [account] = await run<{ account: string; privileged: string | null }[]>(conn, SQL_ACCOUNT);
            if (account.privileged) throw privilegedAccount(opts, account.account, account.privileged);
            return readOnly(conn, () => stream(conn, text, undefined, maxRows));
          },
          async () => {
            if (threadId) await new Promise((resolve) => getPool().query(`KILL QUERY ${Number(threadId)}`, resolve));
          },
        );
        if (outcome.error !== undefined) throw translate(outcome.error, { watchdog: outcome.fired });
        const result = outcome.value!;
        if (!result.hasRows) return { command: text.trim().split(/\s+/)[0].toUpperCase(), affected: result.affected };
        return { columns: result.columns, rows: result.rows, total: result.total };
      }, true),

    check: (sql) =>
      withConnection(async (conn) => {
        // A server-side prepare parses the statement and checks its tables; nothing runs.
        const { text } = toPositional(sql, 'mysql', {});
        try {
          await new Promise<void>((resolve, reject) =>
            conn.prepare(text, (err, statement) => {
              if (err) return reject(err);
              statement.close();
              resolve();
            }),
          );
        } catch (err) {
          throw translate(err);
        }
      }),

    version: () =>
      withConnection(async (conn) => {
        try {
          const [row] = await run<{ v: string }[]>(conn, 'SELECT VERSION() AS v');
          const m = /^([\d.]+)(-MariaDB)?/i.exec(row.v);
          return m ? `${m[2] ? 'MariaDB' : 'MySQL'} ${m[1]}` : row.v;
        } catch (err) {
          throw translate(err);
        }
      }),

    close: async () => {
      const p = pool;
      pool = undefined;
      if (p) await new Promise<void>((resolve) => p.end(() => resolve()));
    },
  };
}
