import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandError } from '../src/core/errors';
import { db } from '../src/services/db';
import { toPositional } from '../src/services/db/params';
import { openSqlite } from '../src/sqlite/open';
import { existsSync, renameSync, rmSync } from 'node:fs';
import type { Config } from '../src/config/types';
import { FIXED_NOW, demoConfig, tempDir } from './support/env';

const { dir, cleanup } = tempDir();
const config = demoConfig(dir, (raw) => {
  const queries = raw.services.db.databases.inventory.queries;
  queries.sneaky_write = { sql: "UPDATE hosts SET os = 'pwned' RETURNING name" };
  queries.capped = { sql: 'SELECT id FROM tickets ORDER BY id', maxRows: 5 };
  raw.services.db.databases.second = { sqlite: { path: join(dir, 'second.db') }, queries: { one: { sql: 'SELECT 1 AS one' } } };
  const inventory = raw.services.db.databases.inventory;
  inventory.updates.raise_priority = {
    description: 'every ticket of a host one step more urgent',
    sql: 'UPDATE tickets SET priority = priority - 1 WHERE host_id = :host',
    params: { host: { type: 'int', required: true } },
  };
  inventory.updates.rename_host = {
    sql: 'UPDATE hosts SET name = :new_name WHERE name = :old_name',
    params: { old_name: { type: 'string', required: true }, new_name: { type: 'string', required: true } },
  };
});

async function run(action: string, args: Record<string, string>, cfg: Config = config) {
  const spec = db.actions[action];
  const prepared = spec.prepare!(args, cfg);
  if (!prepared.ok) throw new Error(prepared.problems.join('; '));
  return spec.run(prepared.args, { config: cfg, now: () => FIXED_NOW });
}

async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.instance(err, CommandError);
    return (err as Error).message;
  }
  throw new Error('expected a CommandError');
}

test('db tables lists tables and views with row counts', async () => {
  assert.equal(await run('tables', {}), {
    kind: 'table',
    columns: ['table', 'type', 'rows'],
    rows: [
      ['hosts', 'table', 24],
      ['open_ticket_counts', 'view', 24],
      ['tickets', 'table', 60],
    ],
  });
});

test('db describe shows columns, types, nullability and keys', async () => {
  const result = await run('describe', { table: 'tickets' });
  assert.ok(result.kind === 'table');
  assert.equal(result.rows[0], ['id', 'INTEGER', 'no', '', 'PK']);
  assert.equal(result.rows.map((r) => r[0]), ['id', 'host_id', 'priority', 'status', 'title', 'opened']);
});

test('db describe of an unknown table is a clear command error (and no injection)', async () => {
  assert.is(await failure(run('describe', { table: 'nope' })), 'no table or view "nope" in database inventory (try: db tables)');
  assert.match(await failure(run('describe', { table: 'hosts; DROP TABLE hosts' })), 'no table or view');
  assert.ok((await run('tables', {})).kind === 'table');
});

test('db query binds typed parameters (never SQL text from mail)', async () => {
  const result = await run('query', { name: 'host', hostname: "web-ams-01' OR '1'='1" }).catch((e) => e.message);
  assert.match(result, 'does not match the allowed form');
  const ok = await run('query', { name: 'hosts_by_site', site: 'fra' });
  assert.ok(ok.kind === 'table');
  assert.is(ok.rows.length, 8);
  assert.equal(ok.columns, ['name', 'ip', 'os', 'role']);
});

test('optional parameters are bound as NULL', async () => {
  const all = await run('query', { name: 'open_tickets' });
  const recent = await run('query', { name: 'open_tickets', since: '2026-11-20' });
  assert.ok(all.kind === 'table' && recent.kind === 'table');
  assert.ok(all.rows.length > recent.rows.length && recent.rows.length > 0);
});

test('named queries run on a read-only connection: a write is refused by SQLite itself', async () => {
  assert.match(await failure(run('query', { name: 'sneaky_write' })), /readonly|read-only/i);
  const check = openSqlite(join(dir, 'demo.db'), { readonly: true });
  assert.is((check.prepare("SELECT count(*) AS n FROM hosts WHERE os = 'pwned'").get() as { n: number }).n, 0);
  check.close();
});

test('the row cap keeps the first N rows and says how many there were', async () => {
  const result = await run('query', { name: 'capped' });
  assert.ok(result.kind === 'table');
  assert.is(result.rows.length, 5);
  assert.is(result.note, 'first 5 of 60 rows (row cap)');
});

test('db= picks another configured database; an unknown one is a validation problem', async () => {
  assert.match(await failure(run('query', { name: 'one', db: 'second' })), 'does not exist');
  const prepared = db.actions.tables.prepare!({ db: 'crm' }, config);
  assert.equal(prepared, { ok: false, problems: ['db=crm: no such database (configured: inventory, second)'] });
});

test('probe reports each database, with every named statement prepared', async () => {
  const [inventory, second] = await db.probe(config);
  assert.is(inventory.target, 'inventory');
  assert.ok(inventory.ok, inventory.detail);
  assert.match(inventory.detail, /^SQLite 3\.\d+\.\d+, 3 tables, 7 named queries, 3 named updates, all prepared$/);
  assert.equal([second.target, second.ok], ['second', false]);
  assert.match(second.detail, 'database file');
  // A statement the database cannot prepare fails the probe, named, before any mail asks for it.
  const broken = demoConfig(dir, (raw) => (raw.services.db.databases.inventory.queries.typo = { sql: 'SELECT nme FROM hostz' }));
  const [probe] = await db.probe(broken);
  assert.is(probe.ok, false);
  assert.match(probe.detail, /; query typo: .*no such table: hostz/);
});

const count = (sql: string): number => {
  const check = openSqlite(join(dir, 'demo.db'), { readonly: true });
  try {
    return (check.prepare(sql).get() as { n: number }).n;
  } finally {
    check.close();
  }
};

test('db update runs a named statement in a transaction and reports the affected rows', async () => {
  assert.is(count("SELECT count(*) AS n FROM tickets WHERE id = 2 AND status = 'closed'"), 0);
  assert.equal(await run('update', { name: 'set_ticket_status', id: '2', status: 'closed' }), { kind: 'text', text: '1 row affected (committed)' });
  assert.is(count("SELECT count(*) AS n FROM tickets WHERE id = 2 AND status = 'closed'"), 1);
  assert.equal(await run('update', { name: 'set_ticket_status', id: '9999', status: 'open' }), { kind: 'text', text: '0 rows affected (committed)' });
  assert.is(db.actions.update.mutates, true);
});

test('db update parameters are typed and checked before anything runs', () => {
  const bad = db.actions.update.prepare!({ name: 'set_ticket_status', id: 'two', status: 'gone' }, config);
  assert.equal(bad, { ok: false, problems: ['id=two: expected an integer', 'status=gone: expected one of open, in progress, closed'] });
  const unknown = db.actions.update.prepare!({ name: 'drop_everything' }, config);
  assert.equal(unknown, { ok: false, problems: ['no update named "drop_everything" in database inventory (available: set_ticket_status, raise_priority, rename_host)'] });
  // a query name is not an update name, and the other way round
  assert.not.ok(db.actions.update.prepare!({ name: 'all_tickets' }, config).ok);
  assert.not.ok(db.actions.query.prepare!({ name: 'set_ticket_status', id: '1', status: 'open' }, config).ok);
});

test('db update: a constraint violation rolls the whole statement back', async () => {
  // host 1 has tickets of priority 1: priority 0 violates CHECK (priority BETWEEN 1 AND 4)
  const before = count('SELECT sum(priority) AS n FROM tickets WHERE host_id = 1');
  const message = await failure(run('update', { name: 'raise_priority', host: '1' }));
  assert.match(message, /^constraint violated: CHECK constraint failed: .*; rolled back, nothing was changed$/);
  assert.is(count('SELECT sum(priority) AS n FROM tickets WHERE host_id = 1'), before);
  const unique = await failure(run('update', { name: 'rename_host', old_name: 'web-ams-01', new_name: 'db-fra-01' }));
  assert.match(unique, /^constraint violated: UNIQUE constraint failed: hosts\.name/);
  assert.is(count("SELECT count(*) AS n FROM hosts WHERE name = 'web-ams-01'"), 1);
});

test('named queries stay read-only after an update opened the file read-write', async () => {
  await run('update', { name: 'set_ticket_status', id: '3', status: 'open' });
  assert.match(await failure(run('query', { name: 'sneaky_write' })), /read-only|readonly/i);
});

test('named queries keep their connection: it sees other writers, follows a replaced file, reports a removed one', async () => {
  const own = join(dir, 'kept.db');
  const cfg = demoConfig(dir, (raw) => {
    raw.services.db.databases.kept = { sqlite: { path: own }, queries: { names: { sql: 'SELECT name FROM t ORDER BY name' } } };
  });
  const make = (file: string, names: string[]) => {
    const w = openSqlite(file);
    w.exec('CREATE TABLE t (name TEXT)');
    for (const name of names) w.prepare('INSERT INTO t VALUES (?)').run(name);
    w.close();
  };
  const names = async () => ((await run('query', { name: 'names', db: 'kept' }, cfg)) as { rows: unknown[][] }).rows.map((r) => r[0]);
  make(own, ['a']);
  assert.equal(await names(), ['a']);
  const writer = openSqlite(own);
  writer.prepare('INSERT INTO t VALUES (?)').run('b');
  writer.close();
  assert.equal(await names(), ['a', 'b'], 'a write by another connection is seen');
  make(join(dir, 'kept-new.db'), ['c']);
  renameSync(join(dir, 'kept-new.db'), own);
  assert.equal(await names(), ['c'], 'the file put in its place is read, not the old one');
  rmSync(own);
  assert.match(await failure(run('query', { name: 'names', db: 'kept' }, cfg)), /^database file .*kept\.db does not exist$/);
});

test('db sql runs one read-only statement with the row cap', async () => {
  const result = await run('sql', { sql: 'SELECT name, site FROM hosts ORDER BY name' });
  assert.ok(result.kind === 'table');
  assert.equal(result.columns, ['name', 'site']);
  assert.is(result.rows.length, 24);
  assert.is(result.note, undefined);
  const capped = demoConfig(dir, (raw) => (raw.services.db.databases.inventory.maxRows = 10));
  const big = await run('sql', { sql: 'SELECT id FROM tickets' }, capped);
  assert.ok(big.kind === 'table');
  assert.is(big.rows.length, 10);
  assert.is(big.note, 'first 10 of 60 rows (row cap)');
});

test('db sql: SQLite itself refuses writes; statements that return nothing are refused', async () => {
  assert.match(await failure(run('sql', { sql: "UPDATE hosts SET os = 'pwned' RETURNING name" })), /^refused by the server \(read-only\): attempt to write a readonly database/);
  assert.match(await failure(run('sql', { sql: "INSERT INTO hosts (name, ip, os, site, role, last_seen) VALUES ('x', 'x', 'x', 'ams', 'x', 'x') RETURNING id" })), /readonly/);
  assert.match(await failure(run('sql', { sql: 'DELETE FROM tickets' })), /^refused: on SQLite, db sql runs only statements that return rows/);
  const copy = join(dir, 'copy.db');
  assert.match(await failure(run('sql', { sql: `VACUUM INTO '${copy}'` })), /^refused/);
  assert.not.ok(existsSync(copy));
  assert.match(await failure(run('sql', { sql: 'SELECT 1; DELETE FROM tickets' })), /more than one statement/);
  assert.match(await failure(run('sql', { sql: 'SELEC 1' })), /^database error: near "SELEC": syntax error/);
  assert.is(count('SELECT count(*) AS n FROM tickets'), 60);
  assert.is(count("SELECT count(*) AS n FROM hosts WHERE os = 'pwned'"), 0);
});

test('db sql takes the statement as one quoted word and needs the db:sql grant', () => {
  assert.equal(db.actions.sql.positional, ['sql']);
  assert.is(db.actions.sql.mutates, false);
  const prepared = db.actions.sql.prepare!({ sql: 'SELECT 1', db: 'nope' }, config);
  assert.equal(prepared, { ok: false, problems: ['db=nope: no such database (configured: inventory, second)'] });
});

test('help db lists named updates with their parameters, only to a sender who may run them', () => {
  const lines = db.helpDetails!(config, () => true).join('\n');
  assert.match(lines, 'Named updates in database inventory (db update; each runs in one transaction):');
  assert.match(lines, '  set_ticket_status - change the status of one ticket\n      id=<int>');
  assert.match(lines, 'status=<open|in progress|closed>');
  const viewer = db.helpDetails!(config, (action) => action === 'query').join('\n');
  assert.match(viewer, 'Named queries in database inventory');
  assert.not.match(viewer, 'set_ticket_status');
});

test('checkConfig reads :name outside literals and comments, and refuses native placeholders', () => {
  const problems = db.checkConfig(
    {
      databases: {
        a: {
          sqlite: { path: 'x.db' },
          queries: {
            literal: { sql: "SELECT ':nope' AS t, x::text FROM t -- :nor_this\nWHERE a = :yes", params: { yes: { type: 'string' } } },
            native: { sql: 'SELECT * FROM t WHERE a = ?' },
          },
          updates: {
            reserved: { sql: 'UPDATE t SET a = :db', params: { db: { type: 'string' } } },
            literal: { sql: 'DELETE FROM t' },
          },
        },
      },
    },
    'services.db',
  );
  assert.equal(
    problems.map((p) => `${p.path}: ${p.message}`),
    [
      'services.db.databases.a.queries.native.sql: uses the placeholder ?: write parameters as :name',
      'services.db.databases.a.updates.reserved.params.db: "db" is reserved for the update command itself: choose another name',
      'services.db.databases.a.updates.literal: has the same name as a query: choose another name',
    ],
  );
});

test('parameters become driver placeholders: one number per name for PostgreSQL, casts on request', () => {
  const sql = "SELECT * FROM t WHERE (:since IS NULL OR opened >= :since) AND note <> ':not_me' AND n = :n";
  assert.equal(toPositional(sql, 'postgres', { since: '2026-11-01', n: 3 }), {
    text: "SELECT * FROM t WHERE ($1 IS NULL OR opened >= $1) AND note <> ':not_me' AND n = $2",
    values: ['2026-11-01', 3],
  });
  assert.equal(toPositional(sql, 'postgres', { n: 3 }, { since: 'date' }).text, "SELECT * FROM t WHERE ($1::date IS NULL OR opened >= $1::date) AND note <> ':not_me' AND n = $2");
  assert.equal(toPositional(sql, 'postgres', { n: 3 }).values, [null, 3]);
  assert.equal(toPositional(sql, 'mysql', { since: '2026-11-01', n: 3 }), {
    text: "SELECT * FROM t WHERE (? IS NULL OR opened >= ?) AND note <> ':not_me' AND n = ?",
    values: ['2026-11-01', '2026-11-01', 3],
  });
});

test.after(cleanup);
test.run();
