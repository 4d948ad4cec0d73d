/**
 * Named parameters (`:name`) in SQL from the config, found by a small lexer that knows where
 * parameters cannot be: string literals, quoted identifiers, comments, PostgreSQL dollar quotes
 * and `::type` casts. Each server driver gets its own placeholders; values are always bound,
 * never pasted into the SQL text.
 */
export type Dialect = 'sqlite' | 'postgres' | 'mysql';

export interface ParamScan {
  /** Each `:name` occurrence, in order, with its offset in the SQL. */
  named: { name: string; start: number; end: number }[];
  /** Native placeholders written into the SQL (`?`, `$1`): the config must use `:name` instead. */
  native: string[];
}

const IDENT_START = /[A-Za-z_]/;
const IDENT = /[A-Za-z0-9_]/;

/** Scans SQL text for named parameters, skipping literals, identifiers in quotes and comments. */
export function scanParams(sql: string, dialect: Dialect): ParamScan {
  const named: ParamScan['named'] = [];
  const native: string[] = [];
  const n = sql.length;
  let i = 0;

  /** Skips a quoted run starting at i (the opening quote); `q` doubled is an escape, backslash too when allowed. */
  const skipQuoted = (q: string, backslash: boolean): void => {
    i++;
    while (i < n) {
      const c = sql[i];
      if (backslash && c === '\\') {
        i += 2;
        continue;
      }
      if (c === q) {
        if (sql[i + 1] === q) {
          i += 2;
          continue;
        }
        i++;
        return;
      }
      i++;
    }
  };

  while (i < n) {
    const c = sql[i];
    const prev = i > 0 ? sql[i - 1] : '';
    if (c === '-' && sql[i + 1] === '-') {
      const eol = sql.indexOf('\n', i);
      i = eol < 0 ? n : eol + 1;
    } else if (c === '#' && dialect === 'mysql') {
      const eol = sql.indexOf('\n', i);
      i = eol < 0 ? n : eol + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      // PostgreSQL nests block comments; MySQL and SQLite end at the first */.
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else if (dialect === 'postgres' && sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else i++;
      }
    } else if (c === "'") {
      // MySQL reads backslash escapes in every string; PostgreSQL only in E'…' strings.
      const escapeString = dialect === 'mysql' || (dialect === 'postgres' && /[eE]/.test(prev) && !IDENT.test(sql[i - 2] ?? ''));
      skipQuoted("'", escapeString);
    } else if (c === '"') {
      skipQuoted('"', dialect === 'mysql');
    } else if (c === '`' && dialect !== 'postgres') {
      skipQuoted('`', false);
    } else if (c === '$' && dialect === 'postgres' && !IDENT.test(prev) && prev !== '$') {
      const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
      const positional = /^\$\d+/.exec(sql.slice(i));
      if (tag) {
        const close = sql.indexOf(tag[0], i + tag[0].length);
        i = close < 0 ? n : close + tag[0].length;
      } else if (positional) {
        native.push(positional[0]);
        i += positional[0].length;
      } else i++;
    } else if (c === '?' && dialect !== 'postgres') {
      native.push('?');
      i++;
    } else if (c === ':' && sql[i + 1] === ':') {
      i += 2; // a PostgreSQL cast, ::type
    } else if (c === ':' && prev !== ':' && !IDENT.test(prev) && IDENT_START.test(sql[i + 1] ?? '')) {
      let end = i + 1;
      while (end < n && IDENT.test(sql[end])) end++;
      named.push({ name: sql.slice(i + 1, end), start: i, end });
      i = end;
    } else i++;
  }
  return { named, native };
}

/** The distinct parameter names a statement uses, in order of first use. */
export function paramNames(sql: string, dialect: Dialect): string[] {
  return [...new Set(scanParams(sql, dialect).named.map((p) => p.name))];
}

/**
 * Rewrites `:name` to the driver's placeholders: `$1…` for PostgreSQL (one number per name, so a
 * name used twice binds once), `?` for MySQL/MariaDB (one value per occurrence). `casts` gives a
 * PostgreSQL type for some names (`$1::date`), for statements the server cannot type by itself.
 */
export function toPositional(
  sql: string,
  dialect: 'postgres' | 'mysql',
  params: Record<string, unknown>,
  casts: Record<string, string> = {},
): { text: string; values: unknown[] } {
  const { named } = scanParams(sql, dialect);
  const values: unknown[] = [];
  const numbers = new Map<string, number>();
  let text = '';
  let last = 0;
  for (const p of named) {
    const value = params[p.name] === undefined ? null : params[p.name];
    let placeholder = '?';
    if (dialect === 'postgres') {
      let k = numbers.get(p.name);
      if (k === undefined) {
        values.push(value);
        k = values.length;
        numbers.set(p.name, k);
      }
      placeholder = casts[p.name] ? `$${k}::${casts[p.name]}` : `$${k}`;
    } else values.push(value);
    text += sql.slice(last, p.start) + placeholder;
    last = p.end;
  }
  return { text: text + sql.slice(last), values };
}
