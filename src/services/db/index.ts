import { CommandError } from '../../core/errors';
import type { Config, DatabaseConfig, DbServiceConfig, QueryParam } from '../../config/types';
import type { Problem } from '../../config/schema-check';
import { convertArgs, describeArgs, ownValue } from '../args';
import type { Action, Prepared, Result, Service } from '../types';
import type { EngineOptions } from './common';
import type { DbEngine, ParamTypes } from './engine';
import { mysqlEngine } from './mysql';
import { scanParams, type Dialect } from './params';
import { postgresEngine } from './postgres';
import { sqliteEngine } from './sqlite';

const DEFAULT_MAX_ROWS = 1000;
const DEFAULT_TIMEOUT_SECONDS = 10;

function section(config: Config): DbServiceConfig {
  const db = config.services.db;
  if (!db) throw new CommandError('the db service is not configured');
  return db;
}

function databaseName(config: Config, requested: unknown): string {
  const db = section(config);
  return typeof requested === 'string' ? requested : db.default ?? Object.keys(db.databases)[0];
}

function dialectOf(cfg: DatabaseConfig): Dialect {
  return cfg.postgres ? 'postgres' : cfg.mysql ? 'mysql' : 'sqlite';
}

/**
 * Engines by database entry, created on first use. Server engines hold a connection pool, which
 * closeDatabases() ends: call it once the work is done, or the process lingers on open sockets.
 */
const engines = new Map<DatabaseConfig, DbEngine>();

function engineFor(config: Config, requested: unknown): { name: string; cfg: DatabaseConfig; engine: DbEngine } {
  const name = databaseName(config, requested);
  const cfg = ownValue(section(config).databases, name);
  if (!cfg) throw new CommandError(`no database named "${name}"`);
  let engine = engines.get(cfg);
  if (!engine) {
    const opts: EngineOptions = { name, timeoutMs: (cfg.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000, configFile: config.file };
    if (cfg.postgres) engine = postgresEngine(cfg.postgres, opts);
    else if (cfg.mysql) engine = mysqlEngine(cfg.mysql, opts);
    else if (cfg.sqlite) engine = sqliteEngine(cfg.sqlite, opts);
    else throw new CommandError(`database ${name} has no engine configured`);
    engines.set(cfg, engine);
  }
  return { name, cfg, engine };
}

/** Ends every pool and connection the db service opened. Safe to call more than once. */
export async function closeDatabases(): Promise<void> {
  const open = [...engines.values()];
  engines.clear();
  await Promise.all(open.map((e) => e.close().catch(() => undefined)));
}

/** `db=` is checked during validation so a typo is reported before anything runs. */
function prepareWithDb(args: Record<string, string>, config: Config, specs: Action['args']): Prepared {
  const prepared = convertArgs(args, specs);
  const known = Object.keys(config.services.db?.databases ?? {});
  if (args.db !== undefined && !known.includes(args.db)) {
    const problem = `db=${args.db}: no such database (configured: ${known.join(', ')})`;
    return { ok: false, problems: [...(prepared.ok ? [] : prepared.problems), problem] };
  }
  return prepared;
}

const dbArg = { type: 'string', description: 'database name from config (default: the default database)' } as const;

const count = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

const paramTypes = (params: Record<string, QueryParam> = {}): ParamTypes =>
  Object.fromEntries(Object.entries(params).map(([name, p]) => [name, p.type]));

const rowNote = (shown: number, total: number): string | undefined =>
  total > shown ? `first ${shown} of ${total} rows (row cap)` : undefined;

const tables: Action = {
  summary: 'list tables and views with their row counts',
  example: 'db tables',
  args: { db: dbArg },
  mutates: false,
  prepare: (args, config) => prepareWithDb(args, config, tables.args),
  run: async (args, ctx) => {
    const { engine } = engineFor(ctx.config, args.db);
    const list = await engine.tables();
    const estimated = list.some((t) => typeof t.rows === 'string' && t.rows.startsWith('~'));
    return {
      kind: 'table',
      columns: ['table', 'type', 'rows'],
      rows: list.map((t) => [t.name, t.type, t.rows]),
      ...(estimated && { note: '~ marks the server\'s estimate for a large table' }),
    };
  },
};

const describe: Action = {
  summary: 'show the columns of a table',
  example: 'db describe hosts',
  args: { table: { type: 'string', required: true, maxLength: 128, description: 'table or view name' }, db: dbArg },
  positional: ['table'],
  mutates: false,
  prepare: (args, config) => prepareWithDb(args, config, describe.args),
  run: async (args, ctx) => {
    const { engine, name } = engineFor(ctx.config, args.db);
    const columns = await engine.describe(String(args.table));
    if (!columns) throw new CommandError(`no table or view "${args.table}" in database ${name} (try: db tables)`);
    return {
      kind: 'table',
      columns: ['column', 'type', 'nullable', 'default', 'key'],
      rows: columns.map((c) => [c.name, c.type, c.nullable ? 'yes' : 'no', c.default ?? '', c.primaryKey ? 'PK' : '']),
    };
  },
};

/** Shared by query and update: `name=` picks a statement from config, the rest are its parameters. */
function prepareNamed(kind: 'queries' | 'updates', action: Action) {
  return (args: Record<string, string>, config: Config): Prepared => {
    const { name, db, ...params } = args;
    const base = prepareWithDb({ ...(name !== undefined && { name }), ...(db !== undefined && { db }) }, config, action.args);
    if (!base.ok) return base;
    const dbName = databaseName(config, db);
    const statements = ownValue(config.services.db?.databases, dbName)?.[kind] ?? {};
    const named = ownValue(statements, name);
    if (!named) {
      const what = kind === 'queries' ? 'query' : 'update';
      return { ok: false, problems: [`no ${what} named "${name}" in database ${dbName} (available: ${Object.keys(statements).join(', ') || 'none'})`] };
    }
    const converted = convertArgs(params, named.params ?? {});
    return converted.ok ? { ok: true, args: { ...base.args, params: converted.args } } : converted;
  };
}

const query: Action = {
  summary: 'run a named query from the config with typed parameters',
  example: 'db query host hostname=web-ams-01',
  args: {
    name: { type: 'string', required: true, maxLength: 128, description: 'named query (see the list below)' },
    db: dbArg,
  },
  positional: ['name'],
  extraArgs: 'the named query\'s parameters as key=value',
  mutates: false,
  prepare: (args, config) => prepareNamed('queries', query)(args, config),
  run: async (args, ctx) => {
    const { engine, cfg, name: dbName } = engineFor(ctx.config, args.db);
    const name = String(args.name);
    const named = ownValue(cfg.queries, name);
    if (!named) throw new CommandError(`no query named "${name}" in database ${dbName}`);
    const maxRows = named.maxRows ?? cfg.maxRows ?? DEFAULT_MAX_ROWS;
    const result = await engine.query(named.sql, args.params as Record<string, unknown>, maxRows, paramTypes(named.params));
    return { kind: 'table', columns: result.columns, rows: result.rows, note: rowNote(result.rows.length, result.total), name: `query-${name}` };
  },
};

const update: Action = {
  summary: 'run a named update from the config (one transaction) and report the rows it changed',
  example: 'db update set_ticket_status id=42 status=closed',
  args: {
    name: { type: 'string', required: true, maxLength: 128, description: 'named update (see the list below)' },
    db: dbArg,
  },
  positional: ['name'],
  extraArgs: 'the named update\'s parameters as key=value',
  mutates: true,
  prepare: (args, config) => prepareNamed('updates', update)(args, config),
  run: async (args, ctx) => {
    const { engine, cfg, name: dbName } = engineFor(ctx.config, args.db);
    const named = ownValue(cfg.updates, String(args.name));
    if (!named) throw new CommandError(`no update named "${args.name}" in database ${dbName}`);
    const { affected } = await engine.update(named.sql, args.params as Record<string, unknown>, paramTypes(named.params));
    return { kind: 'text', text: `${affected} row${affected === 1 ? '' : 's'} affected (committed)` };
  },
};

const sql: Action = {
  summary: 'run one SQL statement read-only (the server refuses writes), with a timeout and a row cap',
  example: 'db sql "SELECT site, count(*) AS hosts FROM hosts GROUP BY site" db=inventory',
  args: {
    sql: { type: 'string', required: true, maxLength: 4000, description: 'the statement, in double quotes' },
    db: dbArg,
  },
  positional: ['sql'],
  mutates: false,
  prepare: (args, config) => prepareWithDb(args, config, sql.args),
  run: async (args, ctx): Promise<Result> => {
    const { engine, cfg } = engineFor(ctx.config, args.db);
    const maxRows = cfg.maxRows ?? DEFAULT_MAX_ROWS;
    const result = await engine.sql(String(args.sql), maxRows);
    if ('command' in result) {
      return { kind: 'text', text: `${result.command || 'statement'} done${result.affected ? `, ${result.affected} rows` : ''} (no rows returned)` };
    }
    return { kind: 'table', columns: result.columns, rows: result.rows, note: rowNote(result.rows.length, result.total), name: 'sql' };
  },
};

const STATEMENT_KINDS = ['queries', 'updates'] as const;
const RESERVED = new Set(['name', 'db']);

function checkConfig(raw: unknown, path: string): Problem[] {
  const cfg = raw as DbServiceConfig;
  const problems: Problem[] = [];
  const names = Object.keys(cfg.databases);
  if (cfg.default !== undefined && !names.includes(cfg.default)) {
    problems.push({ path: `${path}.default`, message: `"${cfg.default}" is not one of databases (${names.join(', ')})` });
  }
  if (cfg.default === undefined && names.length > 1) {
    problems.push({ path: `${path}.default`, message: 'is required when more than one database is configured' });
  }
  for (const [dbName, db] of Object.entries(cfg.databases)) {
    const dialect = dialectOf(db);
    for (const kind of STATEMENT_KINDS) {
      const statements: Record<string, { sql: string; params?: Record<string, QueryParam> }> = db[kind] ?? {};
      for (const [qName, q] of Object.entries(statements)) {
        const at = `${path}.databases.${dbName}.${kind}.${qName}`;
        const declared = Object.keys(q.params ?? {});
        const scan = scanParams(q.sql, dialect);
        const used = [...new Set(scan.named.map((p) => p.name))];
        if (scan.native.length) {
          problems.push({ path: `${at}.sql`, message: `uses the placeholder ${scan.native[0]}: write parameters as :name` });
        }
        for (const p of used.filter((u) => !declared.includes(u))) {
          problems.push({ path: `${at}.sql`, message: `uses :${p} but params does not declare it` });
        }
        for (const p of declared.filter((d) => !used.includes(d))) {
          problems.push({ path: `${at}.params.${p}`, message: `is declared but the SQL never uses :${p}` });
        }
        for (const [pName, p] of Object.entries(q.params ?? {})) {
          const command = kind === 'queries' ? 'query' : 'update';
          if (RESERVED.has(pName)) problems.push({ path: `${at}.params.${pName}`, message: `"${pName}" is reserved for the ${command} command itself: choose another name` });
          if (p.type === 'enum' && !p.values) problems.push({ path: `${at}.params.${pName}.values`, message: 'is required for type enum' });
          if (p.pattern !== undefined) {
            try {
              new RegExp(p.pattern);
            } catch {
              problems.push({ path: `${at}.params.${pName}.pattern`, message: 'is not a valid regular expression' });
            }
          }
        }
      }
    }
    const clash = Object.keys(db.queries ?? {}).filter((q) => q in (db.updates ?? {}));
    for (const q of clash) problems.push({ path: `${path}.databases.${dbName}.updates.${q}`, message: `has the same name as a query: choose another name` });
  }
  return problems;
}

export const db: Service = {
  name: 'db',
  summary: 'search databases with named, parameterised queries; named updates; read-only SQL',
  actions: { tables, describe, query, update, sql },
  checkConfig,
  helpDetails: (config, may) => {
    const lines: string[] = [];
    for (const [dbName, cfg] of Object.entries(config.services.db?.databases ?? {})) {
      if (may('query')) {
        lines.push(`Named queries in database ${dbName}${dbName === databaseName(config, undefined) ? ' (default)' : ''}:`);
        const queries = Object.entries(cfg.queries ?? {});
        if (!queries.length) lines.push('  (none)');
        for (const [qName, q] of queries) {
          lines.push(`  ${qName}${q.description ? ` - ${q.description}` : ''}`);
          for (const arg of describeArgs(q.params ?? {})) lines.push(`      ${arg}`);
        }
      }
      const updates = Object.entries(cfg.updates ?? {});
      if (updates.length && may('update')) {
        lines.push(`Named updates in database ${dbName} (db update; each runs in one transaction):`);
        for (const [uName, u] of updates) {
          lines.push(`  ${uName}${u.description ? ` - ${u.description}` : ''}`);
          for (const arg of describeArgs(u.params ?? {})) lines.push(`      ${arg}`);
        }
      }
    }
    return lines;
  },
  probe: (config) =>
    Promise.all(
      Object.keys(section(config).databases).map(async (name) => {
        try {
          const { engine, cfg } = engineFor(config, name);
          const version = await engine.version();
          const tableList = await engine.tables({ counts: false });
          const queries = Object.keys(cfg.queries ?? {}).length;
          const updates = Object.keys(cfg.updates ?? {}).length;
          const detail = `${version}, ${count(tableList.length, 'table')}, ${count(queries, 'named query', 'named queries')}` + (updates ? `, ${count(updates, 'named update')}` : '');
          // Each named statement is parsed by the server now, not first when a mail asks for it.
          const broken: string[] = [];
          const statements = [...Object.entries(cfg.queries ?? {}).map(([n, q]) => ['query', n, q] as const), ...Object.entries(cfg.updates ?? {}).map(([n, u]) => ['update', n, u] as const)];
          for (const [kind, statementName, statement] of statements) {
            await engine.check(statement.sql, paramTypes(statement.params)).catch((err: Error) => broken.push(`${kind} ${statementName}: ${err.message}`));
          }
          if (broken.length) return { target: name, ok: false, detail: `${detail}; ${broken.join('; ')}` };
          return { target: name, ok: true, detail: `${detail}, all prepared` };
        } catch (err) {
          return { target: name, ok: false, detail: (err as Error).message };
        }
      }),
    ),
};
