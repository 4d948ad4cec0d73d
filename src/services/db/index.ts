import { CommandError } from '../../core/errors';
import type { Config, DatabaseConfig, DbServiceConfig } from '../../config/types';
import type { Problem } from '../../config/schema-check';
import { convertArgs, describeArgs } from '../args';
import type { Action, Prepared, Service } from '../types';
import type { DbEngine } from './engine';
import { sqliteEngine } from './sqlite';

const DEFAULT_MAX_ROWS = 1000;

function section(config: Config): DbServiceConfig {
  const db = config.services.db;
  if (!db) throw new CommandError('the db service is not configured');
  return db;
}

function databaseName(config: Config, requested: unknown): string {
  const db = section(config);
  return typeof requested === 'string' ? requested : db.default ?? Object.keys(db.databases)[0];
}

function engineFor(config: Config, requested: unknown): { name: string; cfg: DatabaseConfig; engine: DbEngine } {
  const name = databaseName(config, requested);
  const cfg = section(config).databases[name];
  if (!cfg) throw new CommandError(`no database named "${name}"`);
  return { name, cfg, engine: sqliteEngine(cfg) };
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

const tables: Action = {
  summary: 'list tables and views with their row counts',
  args: { db: dbArg },
  mutates: false,
  prepare: (args, config) => prepareWithDb(args, config, tables.args),
  run: async (args, ctx) => {
    const { engine } = engineFor(ctx.config, args.db);
    const list = await engine.tables();
    return { kind: 'table', columns: ['table', 'type', 'rows'], rows: list.map((t) => [t.name, t.type, t.rows]) };
  },
};

const describe: Action = {
  summary: 'show the columns of a table',
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

const query: Action = {
  summary: 'run a named query from the config with typed parameters',
  args: {
    name: { type: 'string', required: true, maxLength: 128, description: 'named query (see the list below)' },
    db: dbArg,
  },
  positional: ['name'],
  extraArgs: 'the named query\'s parameters as key=value',
  mutates: false,
  prepare: (args, config) => {
    const { name, db, ...params } = args;
    const base = prepareWithDb({ ...(name !== undefined && { name }), ...(db !== undefined && { db }) }, config, query.args);
    if (!base.ok) return base;
    const dbName = databaseName(config, db);
    const named = config.services.db?.databases[dbName]?.queries?.[name];
    if (!named) {
      const available = Object.keys(config.services.db?.databases[dbName]?.queries ?? {});
      return { ok: false, problems: [`no query named "${name}" in database ${dbName} (available: ${available.join(', ') || 'none'})`] };
    }
    const converted = convertArgs(params, named.params ?? {});
    return converted.ok ? { ok: true, args: { ...base.args, params: converted.args } } : converted;
  },
  run: async (args, ctx) => {
    const { engine, cfg } = engineFor(ctx.config, args.db);
    const name = String(args.name);
    const named = cfg.queries![name];
    const maxRows = named.maxRows ?? cfg.maxRows ?? DEFAULT_MAX_ROWS;
    const result = await engine.query(named.sql, args.params as Record<string, unknown>, maxRows);
    const note = result.total > result.rows.length ? `first ${result.rows.length} of ${result.total} rows (row cap)` : undefined;
    return { kind: 'table', columns: result.columns, rows: result.rows, note, name: `query-${name}` };
  },
};

const SQL_PARAM = /(?<![:\w]):([A-Za-z_]\w*)/g;

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
    for (const [qName, q] of Object.entries(db.queries ?? {})) {
      const at = `${path}.databases.${dbName}.queries.${qName}`;
      const declared = Object.keys(q.params ?? {});
      const used = [...new Set([...q.sql.matchAll(SQL_PARAM)].map((m) => m[1]))];
      for (const p of used.filter((u) => !declared.includes(u))) {
        problems.push({ path: `${at}.sql`, message: `uses :${p} but params does not declare it` });
      }
      for (const p of declared.filter((d) => !used.includes(d))) {
        problems.push({ path: `${at}.params.${p}`, message: `is declared but the SQL never uses :${p}` });
      }
      for (const [pName, p] of Object.entries(q.params ?? {})) {
        if (pName in query.args) problems.push({ path: `${at}.params.${pName}`, message: `"${pName}" is reserved for the query command itself: choose another name` });
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
  return problems;
}

export const db: Service = {
  name: 'db',
  summary: 'search databases with named, parameterised queries',
  actions: { tables, describe, query },
  checkConfig,
  helpDetails: (config) => {
    const lines: string[] = [];
    for (const [dbName, cfg] of Object.entries(config.services.db?.databases ?? {})) {
      lines.push(`Named queries in database ${dbName}${dbName === databaseName(config, undefined) ? ' (default)' : ''}:`);
      const queries = Object.entries(cfg.queries ?? {});
      if (!queries.length) lines.push('  (none)');
      for (const [qName, q] of queries) {
        lines.push(`  ${qName}${q.description ? ` - ${q.description}` : ''}`);
        for (const arg of describeArgs(q.params ?? {})) lines.push(`      ${arg}`);
      }
    }
    return lines;
  },
  probe: async (config) => {
    const details: string[] = [];
    let ok = true;
    for (const name of Object.keys(section(config).databases)) {
      try {
        const { engine, cfg } = engineFor(config, name);
        const [version, tableList] = await Promise.all([engine.version(), engine.tables()]);
        details.push(`${name}: ${version}, ${tableList.length} tables, ${Object.keys(cfg.queries ?? {}).length} named queries`);
      } catch (err) {
        ok = false;
        details.push(`${name}: ${(err as Error).message}`);
      }
    }
    return { ok, detail: details.join('; ') };
  },
};
