import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CommandError } from '../src/core/errors';
import { db } from '../src/services/db';
import { openSqlite } from '../src/sqlite/open';
import type { Config } from '../src/config/types';
import { FIXED_NOW, demoConfig, tempDir } from './support/env';

const { dir, cleanup } = tempDir();
const config = demoConfig(dir, (raw) => {
  const queries = raw.services.db.databases.inventory.queries;
  queries.sneaky_write = { sql: "UPDATE hosts SET os = 'pwned' RETURNING name" };
  queries.capped = { sql: 'SELECT id FROM tickets ORDER BY id', maxRows: 5 };
  raw.services.db.databases.second = { sqlite: { path: join(dir, 'second.db') }, queries: { one: { sql: 'SELECT 1 AS one' } } };
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

test('probe reports each database', async () => {
  const probe = await db.probe(config);
  assert.is(probe.ok, false);
  assert.match(probe.detail, /inventory: SQLite 3\.\d+\.\d+, 3 tables, 7 named queries/);
  assert.match(probe.detail, 'second: database file');
});

test.after(cleanup);
test.run();
