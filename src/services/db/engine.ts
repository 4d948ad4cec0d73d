/** What the db service needs from a database engine. */
export interface ColumnInfo {
  name: string;
  type: string;
  nullable: boolean;
  default: string | null;
  primaryKey: boolean;
}

export interface QueryResult {
  columns: string[];
  rows: unknown[][];
  /** Rows the query produced; more than rows.length when the row cap cut it. */
  total: number;
}

export interface DbEngine {
  kind: string;
  tables(): Promise<{ name: string; type: string; rows: number }[]>;
  /** undefined when there is no such table or view. */
  describe(table: string): Promise<ColumnInfo[] | undefined>;
  query(sql: string, params: Record<string, unknown>, maxRows: number): Promise<QueryResult>;
  version(): Promise<string>;
}
