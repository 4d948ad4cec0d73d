import { existsSync } from 'node:fs';
import { CommandError } from '../../core/errors';
import { openSqlite } from '../../sqlite/open';
import type { DatabaseConfig } from '../../config/types';
import type { DbEngine, QueryResult } from './engine';

/**
 * The embedded engine. Every command opens the file read-only: named queries from config are
 * for reading, and SQLite itself refuses a write on such a connection whatever the SQL says.
 */
export function sqliteEngine(cfg: DatabaseConfig): DbEngine {
  const open = () => {
    if (!existsSync(cfg.sqlite.path)) throw new CommandError(`database file ${cfg.sqlite.path} does not exist`);
    try {
      return openSqlite(cfg.sqlite.path, { readonly: true, fileMustExist: true, timeout: 5000 });
    } catch (err) {
      throw new CommandError(`cannot open database: ${(err as Error).message}`);
    }
  };
  const withDb = async <T>(fn: (db: ReturnType<typeof openSqlite>) => T): Promise<T> => {
    const db = open();
    try {
      return fn(db);
    } catch (err) {
      if (err instanceof CommandError) throw err;
      throw new CommandError(`database error: ${(err as Error).message}`);
    } finally {
      db.close();
    }
  };

  return {
    kind: 'sqlite',
    tables: () =>
      withDb((db) => {
        const names = db
          .prepare(`SELECT name, type FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name`)
          .all() as { name: string; type: string }[];
        return names.map(({ name, type }) => {
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
      withDb((db): QueryResult => {
        const stmt = db.prepare(sql);
        if (!stmt.reader) throw new CommandError('this named query does not return rows');
        stmt.raw(true);
        const columns = stmt.columns().map((c) => c.name);
        const rows: unknown[][] = [];
        let total = 0;
        for (const row of stmt.iterate(params) as Iterable<unknown[]>) {
          total++;
          if (rows.length < maxRows) rows.push(row);
        }
        return { columns, rows, total };
      }),
    version: () => withDb((db) => `SQLite ${(db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v}`),
  };
}
