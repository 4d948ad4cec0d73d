import type { Statement } from 'better-sqlite3';
import { statSync } from 'node:fs';
import { CommandError } from '../../core/errors';
import { openSqlite } from '../../sqlite/open';
import { RowCollector, describeError, type EngineOptions } from './common';
import type { DbEngine, QueryResult, SqlResult } from './engine';

type Db = ReturnType<typeof openSqlite>;

/**
 * The embedded engine. Named queries and `db sql` open the file read-only, so SQLite itself
 * refuses a write whatever the SQL says; only `db update` opens it read-write, inside a
 * transaction. better-sqlite3 is synchronous, so the statement timeout is checked between rows.
 */
export function sqliteEngine(cfg: { path: string }, opts: EngineOptions): DbEngine {
  const open = (readonly: boolean): Db => {
    try {
      return openSqlite(cfg.path, { readonly, fileMustExist: true, timeout: Math.min(opts.timeoutMs, 5000) });
    } catch (err) {
      throw new CommandError(`cannot open database: ${(err as Error).message}`);
    }
  };
  /**
   * The read-only connection is kept between requests (opening the file and reading its schema
   * cost more than a small query), with the statements of named queries compiled once. A file
   * replaced since (another inode) gets a new connection: the old one would still read the old file.
   */
  let reader: { db: Db; file: string; statements: Map<string, Statement> } | undefined;
  const readerFor = (file: string) => {
    if (reader?.file !== file) {
      reader?.db.close();
      reader = undefined;
      reader = { db: open(true), file, statements: new Map() };
    }
    return reader;
  };
  const dropReader = () => {
    reader?.db.close();
    reader = undefined;
  };
  const withDb = async <T>(fn: (db: Db, statements?: Map<string, Statement>) => T, options: { readonly?: boolean; changes?: boolean } = {}): Promise<T> => {
    const file = fileIdentity(cfg.path);
    const readonly = options.readonly ?? true;
    const kept = readonly ? readerFor(file) : undefined;
    const db = kept?.db ?? open(false);
    try {
      return fn(db, kept?.statements);
    } catch (err) {
      if (err instanceof CommandError) throw err;
      if (kept) dropReader(); // whatever went wrong, the next request starts afresh
      throw translate(err as Error & { code?: string }, options.changes ?? false);
    } finally {
      if (!kept) db.close();
    }
  };
  const translate = (err: Error & { code?: string }, changes: boolean): CommandError => {
    const code = err.code ?? '';
    if (!code.startsWith('SQLITE_')) {
      // Misuse reported by better-sqlite3 itself (e.g. a missing named parameter).
      if (err instanceof RangeError || err instanceof TypeError) return new CommandError(`database error: ${err.message}`);
      throw err;
    }
    if (code.startsWith('SQLITE_CONSTRAINT')) return describeError('constraint', err.message, { ...opts, changes });
    if (code.startsWith('SQLITE_READONLY')) return describeError('read-only', err.message, opts);
    if (code === 'SQLITE_ERROR') return describeError('sql', err.message, { ...opts, changes });
    return new CommandError(`database error: ${err.message}${changes ? '; rolled back, nothing was changed' : ''}`);
  };

  /** Reads every row, keeps the first `maxRows`, gives up when the statement timeout has passed. */
  const collect = (stmt: Statement, params: Record<string, unknown> | undefined, maxRows: number): QueryResult => {
    stmt.raw(true);
    const columns = stmt.columns().map((c) => c.name);
    const rows = new RowCollector(maxRows);
    const deadline = Date.now() + opts.timeoutMs;
    const iterator = (params ? stmt.iterate(params) : (stmt as unknown as { iterate(): unknown }).iterate()) as IterableIterator<unknown[]>;
    for (const row of iterator) {
      rows.add(row);
      if ((rows.total & 255) === 0 && Date.now() > deadline) {
        iterator.return?.();
        throw describeError('timeout', '', opts);
      }
    }
    if (Date.now() > deadline) throw describeError('timeout', '', opts);
    return { columns, rows: rows.rows, total: rows.total };
  };

  return {
    kind: 'sqlite',
    tables: ({ counts = true } = {}) =>
      withDb((db) => {
        const names = db
          .prepare(`SELECT name, type FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name`)
          .all() as { name: string; type: string }[];
        return names.map(({ name, type }) => {
          if (!counts) return { name, type, rows: null };
          const { n } = db.prepare(`SELECT count(*) AS n FROM "${name.replace(/"/g, '""')}"`).get() as { n: number };
          return { name, type, rows: n };
        });
      }),
    describe: (table) =>
      withDb((db) => {
        const known = db.prepare(`SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND name = ?`).get(table);
        if (!known) return undefined;
        const cols = db.prepare(`SELECT * FROM pragma_table_info(?)`).all(table) as {
          name: string;
          type: string;
          notnull: number;
          dflt_value: string | null;
          pk: number;
        }[];
        return cols.map((c) => ({
          name: c.name,
          type: c.type || 'ANY',
          nullable: c.notnull === 0 && c.pk === 0,
          default: c.dflt_value,
          primaryKey: c.pk > 0,
        }));
      }),
    query: (sql, params, maxRows) =>
      withDb((db, statements): QueryResult => {
        // Named queries come from the config: a small, fixed set worth keeping compiled.
        let stmt = statements?.get(sql);
        if (!stmt) {
          stmt = db.prepare(sql);
          statements?.set(sql, stmt);
        }
        if (!stmt.reader) throw new CommandError('this named query does not return rows');
        return collect(stmt, params, maxRows);
      }),
    update: (sql, params) =>
      withDb(
        (db) => {
          const stmt = db.prepare(sql);
          const run = db.transaction(() => {
            if (!stmt.reader) return stmt.run(params).changes;
            stmt.all(params); // UPDATE … RETURNING: the rows are not reported, the count is
            return (db.prepare('SELECT changes() AS n').get() as { n: number }).n;
          });
          return { affected: run.immediate() };
        },
        { readonly: false, changes: true },
      ),
    sql: (text, maxRows) =>
      withDb((db): SqlResult => {
        const stmt = db.prepare(text); // one statement: prepare() refuses several
        // Writes fail on this read-only connection (INSERT … RETURNING included), but a statement
        // that returns no rows could still act on files (VACUUM INTO writes a copy): refused.
        if (!stmt.reader) throw new CommandError('refused: on SQLite, db sql runs only statements that return rows (SELECT, WITH, VALUES, PRAGMA)');
        return collect(stmt, undefined, maxRows);
      }),
    version: () => withDb((db) => `SQLite ${(db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v}`),
    check: (sql) => withDb((db) => void db.prepare(sql)),
    close: async () => dropReader(),
  };
}

/** Device and inode of the database file: which file a kept connection reads. */
function fileIdentity(path: string): string {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw new CommandError(`database file ${path} does not exist`);
  }
  return `${stat.dev}:${stat.ino}`;
}
