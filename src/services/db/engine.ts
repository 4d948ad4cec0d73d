import type { QueryParam } from '../../config/types';

/** What the db service needs from a database engine. */
export interface ColumnInfo {
  name: string;
  type: string;
  nullable: boolean;
  default: string | null;
  primaryKey: boolean;
}

export interface TableInfo {
  name: string;
  type: string;
  /** Exact count, or an estimate written "~N" for a large table on a server database; null when not asked for. */
  rows: number | string | null;
}

export interface QueryResult {
  columns: string[];
  rows: unknown[][];
  /** Rows the query produced; more than rows.length when the row cap cut it. */
  total: number;
}

/** `db sql` may run a statement that returns no rows (e.g. SHOW on some servers, or SET). */
export type SqlResult = QueryResult | { command: string; affected?: number };

/** The declared type of each named parameter, for engines that need it to bind a value. */
export type ParamTypes = Record<string, QueryParam['type']>;

export interface DbEngine {
  kind: string;
  tables(options?: { counts?: boolean }): Promise<TableInfo[]>;
  /** undefined when there is no such table or view. */
  describe(table: string): Promise<ColumnInfo[] | undefined>;
  /** A named query from config, read-only, with bound parameters. */
  query(sql: string, params: Record<string, unknown>, maxRows: number, types?: ParamTypes): Promise<QueryResult>;
  /** A named update from config, in a transaction, with bound parameters: the affected row count. */
  update(sql: string, params: Record<string, unknown>, types?: ParamTypes): Promise<{ affected: number }>;
  /** One statement from the mail, read-only (refused by the server otherwise), with timeout and row cap. */
  sql(text: string, maxRows: number): Promise<SqlResult>;
  version(): Promise<string>;
  /** Has the server parse and plan a named statement without running it (test-service); throws its error. */
  check(sql: string, types?: ParamTypes): Promise<void>;
  /** Closes pools and connections; the engine opens them again if used afterwards. */
  close(): Promise<void>;
}
