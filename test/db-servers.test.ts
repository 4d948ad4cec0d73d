/**
 * The db service against the real PostgreSQL and MariaDB servers of the test machine: each run
 * works in its own schema / database (ma_test_<random>), dropped at the end even when a test fails.
 * Where a server is genuinely absent the engine's tests are skipped with the reason printed; under
 * CI (env CI set) an absent server is a failure instead.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { ParsedMail } from 'mailparser';
import { handler as testService } from '../src/commands/test-service';
import { validateConfig } from '../src/config/load';
import type { Config } from '../src/config/types';
import { CommandError, EXIT } from '../src/core/errors';
import { processMessage } from '../src/core/pipeline';
import { closeDatabases, db } from '../src/services/db';
import type { Result } from '../src/services/types';
import { MemoryStore } from '../src/state/store';
import { FIXED_NOW, exampleConfigObject, mail, tempDir, testDeps } from './support/env';
import { readReply } from './support/reply';

type Row = Record<string, unknown>;

/** A superuser connection of the test itself, for fixtures and for checking what really changed. */
interface Admin {
  query(sql: string, params?: unknown[]): Promise<Row[]>;
  close(): Promise<void>;
}

interface Names {
  main: string;
  crm: string;
  account: string;
  password: string;
}

interface ServerUnderTest {
  kind: 'postgres' | 'mysql';
  label: string;
  port: number;
  connect(): Promise<Admin>;
  /**
   * Creates the private main and crm schemas (PostgreSQL) or databases (MariaDB), and the
   * account the agent uses: it may change data (so a refused write is the READ ONLY transaction
   * at work, not a missing grant) but is no superuser.
   */
  create(admin: Admin, names: Names): Promise<void>;
  drop(admin: Admin, names: Names): Promise<void>;
  /** The config entry for one of them, as the agent's account (password from the file db-password). */
  entry(place: string, names: Names, extra?: Record<string, unknown>): Record<string, unknown>;
  /** The same as the server's superuser, which may write files on the server. */
  privileged(place: string): Record<string, unknown>;
  /** Writes a file on the server host, which READ ONLY does not stop. */
  fileWrite(path: string): string;
  sleep: string;
  integerType: RegExp;
  /** Write attempts through `db sql`, each with what the server answers. */
  writes: [string, RegExp][];
}

// ---------------------------------------------------------------------------------------------
// Fixture data, the same on both servers.

const HOSTS: [number, string, string, string][] = [
  [1, 'web-ams-01', 'ams', 'debian 12'],
  [2, 'web-ams-02', 'ams', 'debian 12'],
  [3, 'db-fra-01', 'fra', 'debian 11'],
  [4, 'db-fra-02', 'fra', 'debian 12'],
  [5, 'mail-lon-01', 'lon', 'debian 12'],
  [6, 'mail-lon-02', 'lon', 'ubuntu 24.04'],
];

const day = (i: number): string => new Date(Date.UTC(2026, 9, 1) + (i - 1) * 86_400_000).toISOString().slice(0, 10);

/** 60 tickets: priorities 1..4 in turn, every third one closed, opened one a day from 2026-10-01. */
const TICKETS: [number, number, number, string, string, string][] = Array.from({ length: 60 }, (_, k) => {
  const i = k + 1;
  const title = i === 7 ? 'disk full, "urgent"' : i === 8 ? '=HYPERLINK("x")' : `ticket ${i}`;
  return [i, ((i - 1) % 6) + 1, ((i - 1) % 4) + 1, i % 3 === 0 ? 'closed' : 'open', title, day(i)];
});

const DDL = (dateType: string) => [
  `CREATE TABLE hosts (id int PRIMARY KEY, name varchar(64) NOT NULL UNIQUE, site varchar(8) NOT NULL, os varchar(64))`,
  `CREATE TABLE tickets (id int PRIMARY KEY, host_id int NOT NULL REFERENCES hosts (id), priority int NOT NULL CHECK (priority BETWEEN 1 AND 4),
     status varchar(16) NOT NULL, title varchar(200) NOT NULL, opened ${dateType} NOT NULL)`,
  `CREATE VIEW open_tickets AS SELECT id, host_id, title FROM tickets WHERE status <> 'closed'`,
];

async function seed(admin: Admin, table: (t: string) => string, placeholders: (n: number, row: number) => string): Promise<void> {
  await admin.query(`INSERT INTO ${table('hosts')} (id, name, site, os) VALUES ${HOSTS.map((_, r) => placeholders(4, r)).join(', ')}`, HOSTS.flat());
  await admin.query(
    `INSERT INTO ${table('tickets')} (id, host_id, priority, status, title, opened) VALUES ${TICKETS.map((_, r) => placeholders(6, r)).join(', ')}`,
    TICKETS.flat(),
  );
}

const pgPlaceholders = (n: number, row: number) => `(${Array.from({ length: n }, (_, c) => `$${row * n + c + 1}`).join(', ')})`;
const mysqlPlaceholders = (n: number) => `(${Array(n).fill('?').join(', ')})`;

// ---------------------------------------------------------------------------------------------
// The two servers.

const postgres: ServerUnderTest = {
  kind: 'postgres',
  label: 'PostgreSQL',
  port: 5432,
  async connect() {
    const pg = require('pg') as typeof import('pg');
    const client = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' });
    client.on('error', () => undefined);
    await client.connect();
    return {
      query: async (sql, params) => (await client.query(sql, params)).rows,
      close: () => client.end(),
    };
  },
  async create(admin, { main, crm, account, password }) {
    for (const schema of [main, crm]) await admin.query(`CREATE SCHEMA ${schema}`);
    await admin.query(`SET search_path = ${main}`);
    for (const statement of DDL('date')) await admin.query(statement);
    await seed(admin, (t) => `${main}.${t}`, pgPlaceholders);
    await admin.query(`CREATE TABLE ${crm}.customers (name text PRIMARY KEY, plan text NOT NULL)`);
    await admin.query(`INSERT INTO ${crm}.customers VALUES ('acme', 'gold'), ('globex', 'silver'), ('initech', 'bronze')`);
    await admin.query('RESET search_path');
    await admin.query(`CREATE ROLE ${account} LOGIN PASSWORD '${password}'`);
    await admin.query(`GRANT USAGE, CREATE ON SCHEMA ${main}, ${crm} TO ${account}`);
    await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA ${main}, ${crm} TO ${account}`);
  },
  async drop(admin, { main, crm, account }) {
    for (const schema of [main, crm]) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    const [{ n }] = await admin.query('SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1', [account]);
    if (n) {
      await admin.query(`DROP OWNED BY ${account}`);
      await admin.query(`DROP ROLE ${account}`);
    }
  },
  entry: (place, { account }, extra = {}) => ({
    postgres: { host: '127.0.0.1', port: 5432, user: account, password: { file: 'db-password' }, database: 'test', schema: place, ...extra },
  }),
  privileged: (place) => ({ postgres: { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test', schema: place } }),
  fileWrite: (path) => `COPY (SELECT 'pwned') TO '${path}'`,
  sleep: 'SELECT pg_sleep(5)',
  integerType: /^integer$/,
  writes: [
    ["INSERT INTO hosts (id, name, site) VALUES (99, 'evil', 'ams')", /^refused by the server \(read-only\): cannot execute INSERT in a read-only transaction$/],
    ["UPDATE hosts SET os = 'pwned'", /^refused by the server \(read-only\): cannot execute UPDATE in a read-only transaction$/],
    ['DELETE FROM tickets', /^refused by the server \(read-only\): cannot execute DELETE in a read-only transaction$/],
    // PostgreSQL names the statement's own kind, SELECT, for a write inside WITH
    ['WITH gone AS (DELETE FROM tickets RETURNING id) SELECT count(*) FROM gone', /^refused by the server \(read-only\): cannot execute SELECT in a read-only transaction$/],
    ['CREATE TABLE evil (x int)', /^refused by the server \(read-only\): cannot execute CREATE TABLE in a read-only transaction$/],
    ['DROP TABLE tickets', /^refused by the server \(read-only\): cannot execute DROP TABLE in a read-only transaction$/],
    ['TRUNCATE tickets', /^refused by the server \(read-only\): cannot execute TRUNCATE TABLE in a read-only transaction$/],
    ['SELECT 1; DELETE FROM tickets', /^database error: cannot insert multiple commands into a prepared statement$/],
    ['set transaction read write', /^refused by the server \(read-only\): transaction read-write mode must be set before any query$/],
    ["COMMIT; INSERT INTO hosts (id, name, site) VALUES (99, 'evil', 'ams')", /^database error: cannot insert multiple commands into a prepared statement$/],
  ],
};

const mysql: ServerUnderTest = {
  kind: 'mysql',
  label: 'MariaDB',
  port: 3306,
  async connect() {
    const m = require('mysql2/promise') as typeof import('mysql2/promise');
    const conn = await m.createConnection({ host: '127.0.0.1', port: 3306, user: 'root', password: '', dateStrings: true });
    return {
      query: async (sql, params) => (await conn.query(sql, params))[0] as Row[],
      close: () => conn.end(),
    };
  },
  async create(admin, { main, crm, account, password }) {
    for (const name of [main, crm]) await admin.query(`CREATE DATABASE ${name}`);
    await admin.query(`USE ${main}`);
    for (const statement of DDL('date')) await admin.query(statement);
    await seed(admin, (t) => `${main}.${t}`, mysqlPlaceholders);
    await admin.query(`CREATE TABLE ${crm}.customers (name varchar(32) PRIMARY KEY, plan varchar(16) NOT NULL)`);
    await admin.query(`INSERT INTO ${crm}.customers VALUES ('acme', 'gold'), ('globex', 'silver'), ('initech', 'bronze')`);
    await admin.query(`CREATE USER '${account}'@'127.0.0.1' IDENTIFIED BY '${password}'`);
    for (const name of [main, crm]) await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP ON ${name}.* TO '${account}'@'127.0.0.1'`);
  },
  async drop(admin, { main, crm, account }) {
    for (const name of [main, crm]) await admin.query(`DROP DATABASE IF EXISTS ${name}`);
    await admin.query(`DROP USER IF EXISTS '${account}'@'127.0.0.1'`);
  },
  entry: (place, { account }, extra = {}) => ({
    mysql: { host: '127.0.0.1', port: 3306, user: account, password: { file: 'db-password' }, database: place, ...extra },
  }),
  privileged: (place) => ({ mysql: { host: '127.0.0.1', port: 3306, user: 'root', database: place } }),
  fileWrite: (path) => `SELECT 'pwned' INTO OUTFILE '${path}'`,
  sleep: 'SELECT SLEEP(5)',
  integerType: /^int(\(11\))?$/,
  writes: [
    ["INSERT INTO hosts (id, name, site) VALUES (99, 'evil', 'ams')", /^refused by the server \(read-only\): Cannot execute statement in a READ ONLY transaction/],
    ["UPDATE hosts SET os = 'pwned'", /^refused by the server \(read-only\): Cannot execute statement in a READ ONLY transaction/],
    ['DELETE FROM tickets', /^refused by the server \(read-only\): Cannot execute statement in a READ ONLY transaction/],
    ['CREATE TABLE evil (x int)', /^refused by the server \(read-only\): Cannot execute statement in a READ ONLY transaction/],
    ['DROP TABLE tickets', /^refused by the server \(read-only\): Cannot execute statement in a READ ONLY transaction/],
    ['TRUNCATE tickets', /^refused by the server \(read-only\): Cannot execute statement in a READ ONLY transaction/],
    ['SELECT 1; DELETE FROM tickets', /^database error: You have an error in your SQL syntax/],
    ['set transaction read write', /^refused by the server \(read-only\): Transaction characteristics can't be changed while a transaction is in progress/],
    ["COMMIT; INSERT INTO hosts (id, name, site) VALUES (99, 'evil', 'ams')", /^database error: You have an error in your SQL syntax/],
  ],
};

// ---------------------------------------------------------------------------------------------
// Helpers.

/** Whether something listens on a loopback port, asked synchronously so tests can be registered or skipped. */
function listening(port: number): boolean {
  const probe = `const s=require('node:net').connect(${port},'127.0.0.1');s.setTimeout(2000);s.on('connect',()=>process.exit(0));s.on('error',()=>process.exit(1));s.on('timeout',()=>process.exit(1));`;
  try {
    execFileSync(process.execPath, ['-e', probe], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/** A loopback port nothing listens on: bound, then released. */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    return err.message;
  }
  throw new Error('expected a CommandError');
}

const table = (result: Result): { columns: string[]; rows: unknown[][]; note?: string } => {
  if (result.kind !== 'table') throw new Error(`expected a table, got: ${result.text}`);
  return result;
};

/** RFC 4180 CSV, as a spreadsheet would read it. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (cell += '"'), i++;
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(cell), (cell = '');
    else if (c === '\r' && text[i + 1] === '\n') {
      row.push(cell), rows.push(row), (row = []), (cell = ''), i++;
    } else cell += c;
  }
  if (cell || row.length) row.push(cell), rows.push(row);
  return rows;
}

const SECRET_ENV = `MA_TEST_DB_PASSWORD_${randomBytes(4).toString('hex').toUpperCase()}`;

// ---------------------------------------------------------------------------------------------
// One suite per server.

function serverSuite(server: ServerUnderTest): void {
  const test = suite(server.label);
  const up = listening(server.port);
  if (!up) {
    const reason = `${server.label} is not reachable on 127.0.0.1:${server.port}`;
    if (process.env.CI) {
      test(`${server.label} server is reachable (required under CI)`, () => {
        assert.unreachable(reason);
      });
    } else {
      console.log(`  skipping the ${server.label} tests: ${reason}`);
      test.skip(`${server.label} tests (${reason})`, () => undefined);
    }
    test.run();
    return;
  }

  const suffix = randomBytes(5).toString('hex');
  const names: Names = {
    main: `ma_test_${suffix}`,
    crm: `ma_test_${suffix}_crm`,
    account: `ma_test_${suffix}_agent`,
    password: `pw-${randomBytes(9).toString('base64url')}`,
  };
  const { main, crm, password } = names;
  const { dir, cleanup } = tempDir();
  let admin: Admin | undefined;
  let config: Config;
  let downPort = 0;
  /** Where a file write through db sql would land: a place the database server can write to. */
  const serverFile = join(tmpdir(), `${names.main}.out`);

  /** Every fixture in one promise, so a failed setup fails each test rather than vanishing. */
  let ready: Promise<void> | undefined;
  const setup = async (): Promise<void> => {
    admin = await server.connect();
    await server.create(admin, names);
    writeFileSync(join(dir, 'db-password'), `${password}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'wrong-password'), `${password}-not\n`, { mode: 0o600 });
    downPort = await closedPort();
    config = makeConfig();
  };
  const prepared = async (): Promise<Config> => {
    ready ??= setup();
    await ready;
    return config;
  };

  const sleepQuery = server.kind === 'postgres' ? 'SELECT pg_sleep(:seconds) AS slept' : 'SELECT SLEEP(:seconds) AS slept';

  function rawConfig(options: { down?: boolean } = {}): Record<string, any> {
    const raw = exampleConfigObject(dir);
    raw.services.db = {
      default: 'main',
      databases: {
        main: {
          ...server.entry(main, names),
          maxRows: 50,
          timeoutSeconds: 1,
          queries: {
            host: {
              description: 'one host by name',
              sql: 'SELECT name, site, os FROM hosts WHERE name = :hostname',
              params: { hostname: { type: 'string', required: true, pattern: '[a-z0-9-]+', maxLength: 64 } },
            },
            tickets_by_priority: {
              sql: 'SELECT id, title FROM tickets WHERE priority = :priority ORDER BY id',
              params: { priority: { type: 'int', required: true, min: 1, max: 4 } },
            },
            opened_since: {
              sql: 'SELECT id, opened FROM tickets WHERE (:since IS NULL OR opened >= :since) ORDER BY id',
              params: { since: { type: 'date' } },
            },
            hosts_by_site: {
              sql: 'SELECT name, os FROM hosts WHERE site = :site ORDER BY name',
              params: { site: { type: 'enum', values: ['ams', 'fra', 'lon'], required: true } },
            },
            all_tickets: {
              sql: 'SELECT t.id, h.name AS host, t.priority, t.status, t.title, t.opened FROM tickets t JOIN hosts h ON h.id = t.host_id ORDER BY t.id',
            },
            open_tickets: { sql: 'SELECT id, title FROM open_tickets ORDER BY id' },
            slow: { sql: sleepQuery, params: { seconds: { type: 'int', required: true, max: 30 } } },
          },
          updates: {
            set_ticket_status: {
              sql: 'UPDATE tickets SET status = :status WHERE id = :id',
              params: { id: { type: 'int', required: true, min: 1 }, status: { type: 'enum', values: ['open', 'closed'], required: true } },
            },
            close_site: {
              sql: "UPDATE tickets SET status = 'closed' WHERE status <> 'closed' AND host_id IN (SELECT id FROM hosts WHERE site = :site)",
              params: { site: { type: 'enum', values: ['ams', 'fra', 'lon'], required: true } },
            },
            raise_priority: {
              sql: 'UPDATE tickets SET priority = priority - 1 WHERE host_id = :host',
              params: { host: { type: 'int', required: true } },
            },
            rename_host: {
              sql: 'UPDATE hosts SET name = :new_name WHERE name = :old_name',
              params: { old_name: { type: 'string', required: true }, new_name: { type: 'string', required: true } },
            },
          },
        },
        crm: { ...server.entry(crm, names), queries: { customers: { sql: 'SELECT name, plan FROM customers ORDER BY name' } } },
        from_env: { ...server.entry(main, names, { password: { env: SECRET_ENV } }), queries: { hosts: { sql: 'SELECT name FROM hosts ORDER BY id' } } },
        wrong_password: { ...server.entry(main, names, { password: { file: 'wrong-password' } }) },
        privileged: { ...server.privileged(main) },
        ...(options.down !== false && {
          down: { ...server.entry(main, names, { port: downPort }), queries: { ping: { sql: 'SELECT 1 AS one' } } },
        }),
      },
    };
    return raw;
  }
  const makeConfig = (options: { down?: boolean } = {}) => validateConfig(rawConfig(options), join(dir, 'config.json'));

  async function run(action: string, args: Record<string, string>): Promise<Result> {
    const cfg = await prepared();
    const spec = db.actions[action];
    const checked = spec.prepare!(args, cfg);
    if (!checked.ok) throw new Error(checked.problems.join('; '));
    return spec.run(checked.args, { config: cfg, now: () => FIXED_NOW });
  }
  const problems = async (action: string, args: Record<string, string>): Promise<string[]> => {
    const checked = db.actions[action].prepare!(args, await prepared());
    return checked.ok ? [] : checked.problems;
  };
  const adminQuery = async (sql: string): Promise<Row[]> => {
    await prepared();
    return admin!.query(sql);
  };
  /** A table of the private schema / database, as the admin connection names it. */
  const t = (name: string) => `${main}.${name}`;
  /** Every row and every table of the private schema: what "nothing changed" means. */
  const snapshot = async (): Promise<string> => {
    const tables = server.kind === 'postgres'
      ? await adminQuery(`SELECT table_name AS n FROM information_schema.tables WHERE table_schema = '${main}' ORDER BY 1`)
      : await adminQuery(`SELECT TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${main}' ORDER BY 1`);
    const hosts = await adminQuery(`SELECT * FROM ${t('hosts')} ORDER BY id`);
    const tickets = await adminQuery(`SELECT * FROM ${t('tickets')} ORDER BY id`);
    return JSON.stringify({ tables, hosts, tickets });
  };
  const scalar = async (sql: string): Promise<number> => Number(Object.values((await adminQuery(sql))[0])[0]);

  async function send(body: string, options: { from?: string; store?: MemoryStore } = {}): Promise<{ reply: ParsedMail; deps: ReturnType<typeof testDeps> }> {
    const cfg = await prepared();
    const deps = testDeps(cfg, { store: options.store ?? new MemoryStore() });
    const outcome = await processMessage(mail(body, options.from ? { From: options.from } : {}), deps);
    return { reply: await readReply(outcome), deps };
  }

  // Every test starts from the same rows, whatever the one before it changed.
  test.before.each(async () => {
    await prepared();
    for (const name of ['tickets', 'hosts']) await admin!.query(`DELETE FROM ${t(name)}`);
    await seed(admin!, t, server.kind === 'postgres' ? pgPlaceholders : mysqlPlaceholders);
  });

  test.after(async () => {
    try {
      await closeDatabases();
      if (admin) {
        await server.drop(admin, names);
        await admin.close();
      }
    } finally {
      rmSync(serverFile, { force: true });
      cleanup();
    }
  });

  test('db tables lists tables and views with their row counts', async () => {
    assert.equal(table(await run('tables', {})).rows, [
      ['hosts', 'table', 6],
      ['open_tickets', 'view', 40],
      ['tickets', 'table', 60],
    ]);
  });

  test('db describe shows columns, types, nullability and keys', async () => {
    const result = table(await run('describe', { table: 'tickets' }));
    assert.equal(result.columns, ['column', 'type', 'nullable', 'default', 'key']);
    assert.equal(result.rows.map((r) => r[0]), ['id', 'host_id', 'priority', 'status', 'title', 'opened']);
    assert.match(String(result.rows[0][1]), server.integerType);
    assert.equal([result.rows[0][2], result.rows[0][4]], ['no', 'PK']);
    assert.equal(result.rows[5].slice(1, 3), ['date', 'no']);
    assert.equal(table(await run('describe', { table: 'hosts' })).rows[3].slice(0, 3), ['os', server.kind === 'postgres' ? 'character varying(64)' : 'varchar(64)', 'yes']);
    assert.is(table(await run('describe', { table: 'open_tickets' })).rows.length, 3);
    assert.is(await failure(run('describe', { table: 'nope' })), `no table or view "nope" in database main (try: db tables)`);
    assert.match(await failure(run('describe', { table: "tickets' OR '1'='1" })), 'no table or view');
  });

  test('named queries bind each parameter type: string, int, date, enum', async () => {
    const host = table(await run('query', { name: 'host', hostname: 'db-fra-02' }));
    assert.equal(host.columns, ['name', 'site', 'os']);
    assert.equal(host.rows, [['db-fra-02', 'fra', 'debian 12']]);
    const urgent = table(await run('query', { name: 'tickets_by_priority', priority: '1' }));
    assert.is(urgent.rows.length, 15);
    assert.equal(urgent.rows[0], [1, 'ticket 1']);
    const recent = table(await run('query', { name: 'opened_since', since: '2026-11-20' }));
    assert.equal(recent.rows.map((r) => r[0]), [51, 52, 53, 54, 55, 56, 57, 58, 59, 60]);
    assert.equal(recent.rows[0][1], '2026-11-20');
    const fra = table(await run('query', { name: 'hosts_by_site', site: 'fra' }));
    assert.equal(fra.rows, [['db-fra-01', 'debian 11'], ['db-fra-02', 'debian 12']]);
  });

  test('an optional parameter left out is bound as NULL; the row cap says "first N of M rows"', async () => {
    const all = table(await run('query', { name: 'opened_since' }));
    assert.is(all.rows.length, 50);
    assert.is(all.note, 'first 50 of 60 rows (row cap)');
  });

  test('bad parameter values are refused at validation, before anything runs', async () => {
    assert.equal(await problems('query', { name: 'host', hostname: "web-ams-01' OR '1'='1" }), [
      "hostname=web-ams-01' OR '1'='1: does not match the allowed form [a-z0-9-]+",
    ]);
    assert.equal(await problems('query', { name: 'tickets_by_priority', priority: 'two' }), ['priority=two: expected an integer']);
    assert.equal(await problems('query', { name: 'tickets_by_priority', priority: '5' }), ['priority=5: must be ≤ 4']);
    assert.equal(await problems('query', { name: 'opened_since', since: '2026-02-30' }), ['since=2026-02-30: expected a date YYYY-MM-DD']);
    assert.equal(await problems('query', { name: 'hosts_by_site', site: 'par' }), ['site=par: expected one of ams, fra, lon']);
    assert.equal(await problems('query', { name: 'hosts_by_site' }), ['missing site=…']);
    assert.equal(await problems('query', { name: 'host', hostname: 'x', extra: '1' }), ['unknown argument "extra" (expected: hostname)']);
  });

  test('the default database is used unless db= names another one', async () => {
    assert.match((await problems('query', { name: 'customers' })).join(), 'no query named "customers" in database main');
    assert.equal(table(await run('query', { name: 'customers', db: 'crm' })).rows, [['acme', 'gold'], ['globex', 'silver'], ['initech', 'bronze']]);
    assert.equal(table(await run('sql', { sql: 'SELECT count(*) AS n FROM customers', db: 'crm' })).rows, [[3]]);
    assert.match(await failure(run('sql', { sql: 'SELECT count(*) AS n FROM customers' })), /^database error: .*customers/);
    assert.equal(table(await run('tables', { db: 'crm' })).rows, [['customers', 'table', 3]]);
    assert.equal(await problems('tables', { db: 'nope' }), ['db=nope: no such database (configured: main, crm, from_env, wrong_password, privileged, down)']);
  });

  test('db update runs in a transaction and reports the affected rows', async () => {
    const open = await scalar(`SELECT count(*) FROM ${t('tickets')} WHERE status <> 'closed' AND host_id IN (1, 2)`);
    assert.ok(open > 1);
    assert.equal(await run('update', { name: 'close_site', site: 'ams' }), { kind: 'text', text: `${open} rows affected (committed)` });
    assert.is(await scalar(`SELECT count(*) FROM ${t('tickets')} WHERE status <> 'closed' AND host_id IN (1, 2)`), 0);
    assert.equal(await run('update', { name: 'close_site', site: 'ams' }), { kind: 'text', text: '0 rows affected (committed)' });
    assert.equal(await run('update', { name: 'set_ticket_status', id: '1', status: 'open' }), { kind: 'text', text: '1 row affected (committed)' });
    assert.is(await scalar(`SELECT count(*) FROM ${t('tickets')} WHERE id = 1 AND status = 'open'`), 1);
  });

  test('a constraint violation is a clear error and the transaction is rolled back', async () => {
    // host 1 has tickets of priority 1 and 3: the statement lowers some before it meets the CHECK
    const before = await snapshot();
    const check = await failure(run('update', { name: 'raise_priority', host: '1' }));
    assert.match(check, /^constraint violated: .*; rolled back, nothing was changed$/);
    assert.match(check, server.kind === 'postgres' ? 'tickets_priority_check' : /CONSTRAINT .*tickets/);
    const unique = await failure(run('update', { name: 'rename_host', old_name: 'web-ams-01', new_name: 'db-fra-01' }));
    assert.match(unique, /^constraint violated: .*(unique|Duplicate entry).*; rolled back, nothing was changed$/);
    assert.is(await snapshot(), before);
  });

  test('db sql runs a select with the row cap', async () => {
    const few = table(await run('sql', { sql: 'SELECT name, site FROM hosts ORDER BY id' }));
    assert.equal(few.columns, ['name', 'site']);
    assert.equal(few.rows[5], ['mail-lon-02', 'lon']);
    assert.is(few.note, undefined);
    const capped = table(await run('sql', { sql: 'SELECT id FROM tickets ORDER BY id' }));
    assert.is(capped.rows.length, 50);
    assert.equal(capped.rows[49], [50]);
    assert.is(capped.note, 'first 50 of 60 rows (row cap)');
  });

  test('db sql: the server refuses every write, and nothing changes', async () => {
    const before = await snapshot();
    for (const [statement, expected] of server.writes) {
      const message = await failure(run('sql', { sql: statement })).catch((err: Error) => `${statement}: ${err.message}`);
      assert.match(message, expected, `${statement} → ${message}`);
    }
    assert.is(await snapshot(), before);
    // The pool is healthy afterwards.
    assert.equal(table(await run('sql', { sql: 'SELECT count(*) AS n FROM hosts' })).rows, [[6]]);
  });

  test('db sql refuses an account that can write files on the server; the agent\'s account is refused by the server', async () => {
    const target = serverFile;
    const refused = await failure(run('sql', { sql: server.fileWrite(target), db: 'privileged' }));
    const account = server.kind === 'postgres' ? 'postgres \\(superuser\\)' : 'root@127\\.0\\.0\\.1 \\(FILE\\)';
    assert.match(refused, new RegExp(`^db sql is refused on database privileged: its account ${account.replace(' ', ' can write files on the database server ')}`));
    assert.match(await failure(run('sql', { sql: 'SELECT 1 AS one', db: 'privileged' })), /^db sql is refused on database privileged/);
    const denied = await failure(run('sql', { sql: server.fileWrite(target) }));
    assert.match(denied, server.kind === 'postgres' ? /^database error: must be superuser or .*pg_write_server_files/ : /^database error: Access denied; .*FILE privilege/);
    assert.not.ok(existsSync(target));
    // named queries on that entry still work: they are fixed in the config
    assert.equal(table(await run('tables', { db: 'privileged' })).rows.length, 3);
  });

  test('a statement that runs too long is stopped by the server with a clear timeout error', async () => {
    assert.is(await failure(run('sql', { sql: server.sleep })), 'statement timed out after 1 s');
    assert.is(await failure(run('query', { name: 'slow', seconds: '5' })), 'statement timed out after 1 s');
    assert.equal(table(await run('query', { name: 'host', hostname: 'web-ams-01' })).rows.length, 1);
  });

  test('passwords come from secret references and never appear in errors', async () => {
    process.env[SECRET_ENV] = password;
    try {
      assert.equal(table(await run('query', { name: 'hosts', db: 'from_env' })).rows[0], ['web-ams-01']);
    } finally {
      delete process.env[SECRET_ENV];
    }
    await closeDatabases(); // the env password is resolved when the pool opens
    const missing = await failure(run('tables', { db: 'from_env' }));
    assert.is(missing, `services.db.databases.from_env.${server.kind}.password: environment variable ${SECRET_ENV} is not set`);
    if (server.kind === 'mysql') {
      const refused = await failure(run('tables', { db: 'wrong_password' }));
      assert.match(refused, /^database wrong_password refused the connection: Access denied for user/);
      assert.not.match(refused, password);
    }
    const { reply, deps } = await send('db tables db=wrong_password\ndb tables db=from_env');
    assert.not.match(reply.text!, password);
    assert.not.match(JSON.stringify(deps.audits), password);
  });

  test('a server that is down is a per-command error in the reply; the other commands still run', async () => {
    assert.match(await failure(run('query', { name: 'ping', db: 'down' })), new RegExp(`^database down is unreachable: .*ECONNREFUSED 127\\.0\\.0\\.1:${downPort}`));
    const { reply } = await send('db query ping db=down\ndb query host hostname=web-ams-02');
    assert.match(reply.subject!, /processed \(1 ok, 1 failed\)$/);
    assert.match(reply.text!, new RegExp(`> db query ping db=down\\nERROR: database down is unreachable: .*ECONNREFUSED`));
    assert.match(reply.text!, '> db query host hostname=web-ams-02\nname        site  os\n----------  ----  ---------\nweb-ams-02  ams   debian 12\n(1 row)');
  });

  test('reply: an aligned text table in the body, all rows as CSV over 40 rows', async () => {
    const { reply } = await send('db query open_tickets\ndb query opened_since since=2026-10-16\ndb query all_tickets');
    const text = reply.text!;
    assert.match(reply.subject!, /processed \(3 ok, 0 failed\)$/);
    // exactly 40 rows: all in the body, no attachment for them
    assert.match(text, /> db query open_tickets\nid  title\n--  -------------------\n 1  ticket 1\n 2  ticket 2\n 4  ticket 4\n/);
    assert.match(text, '58  ticket 58\n59  ticket 59\n(40 rows)');
    assert.match(text, '45 rows: the first 40 are shown, all of them are in query-opened_since.csv');
    assert.match(text, 'first 50 of 60 rows (row cap); 50 rows: the first 40 are shown, all of them are in query-all_tickets.csv');
    assert.equal(reply.attachments.map((a) => [a.filename, a.contentType]), [
      ['query-opened_since.csv', 'text/csv'],
      ['query-all_tickets.csv', 'text/csv'],
    ]);
    const since = parseCsv(reply.attachments[0].content.toString('utf8'));
    assert.equal(since[0], ['id', 'opened']);
    assert.is(since.length, 46);
    assert.equal(since[1], ['16', '2026-10-16']);
    assert.equal(since[45], ['60', '2026-11-29']);
    const all = parseCsv(reply.attachments[1].content.toString('utf8'));
    assert.equal(all[0], ['id', 'host', 'priority', 'status', 'title', 'opened']);
    assert.is(all.length, 51);
    assert.equal(all[7], ['7', 'web-ams-01', '3', 'open', 'disk full, "urgent"', '2026-10-07']);
    assert.equal(all[8][4], `'=HYPERLINK("x")`); // not a formula in a spreadsheet
  });

  test('reply: errors are reported per command', async () => {
    const { reply } = await send(`db sql "DELETE FROM tickets"\ndb sql "${server.sleep}"\ndb tables`);
    assert.match(reply.subject!, /processed \(1 ok, 2 failed\)$/);
    assert.match(reply.text!, /> db sql "DELETE FROM tickets"\nERROR: refused by the server \(read-only\)/);
    assert.match(reply.text!, `\nERROR: statement timed out after 1 s\n`);
    assert.match(reply.text!, 'open_tickets  view     40');
  });

  test('reply: db sql needs a role granting db:sql', async () => {
    const { reply } = await send('db sql "SELECT 1"', { from: 'helpdesk@example.com' });
    assert.match(reply.subject!, /not processed/);
    assert.match(reply.text!, '- line 1: "db sql "SELECT 1"": not allowed: your roles do not grant db:sql');
  });

  test('reply: db update needs strong evidence; once confirmed it runs in one transaction', async () => {
    const store = new MemoryStore();
    const { reply: challenge } = await send('db update set_ticket_status id=4 status=closed', { store });
    assert.match(challenge.subject!, /confirmation needed$/);
    assert.is(await scalar(`SELECT count(*) FROM ${t('tickets')} WHERE id = 4 AND status = 'closed'`), 0);
    const token = /confirm=([0-9a-f]{32})/.exec(challenge.text!)![1];
    const { reply } = await send(`confirm=${token}`, { store });
    assert.match(reply.text!, '> db update set_ticket_status id=4 status=closed\n1 row affected (committed)');
    assert.is(await scalar(`SELECT count(*) FROM ${t('tickets')} WHERE id = 4 AND status = 'closed'`), 1);
  });

  test('test-service db reports the server version and named query count; a down server exits 69', async () => {
    await prepared();
    const file = join(dir, 'probe.json');
    const output: string[] = [];
    const write = process.stdout.write;
    const probe = async (raw: Record<string, any>): Promise<number> => {
      writeFileSync(file, JSON.stringify(raw));
      process.stdout.write = ((chunk: string) => (output.push(String(chunk)), true)) as typeof process.stdout.write;
      try {
        return await testService({ config: file, name: 'db' });
      } finally {
        process.stdout.write = write;
      }
    };
    const healthy = rawConfig({ down: false });
    for (const name of ['from_env', 'wrong_password', 'privileged']) delete healthy.services.db.databases[name];
    assert.is(await probe(healthy), EXIT.OK, output.join(''));
    const version = server.kind === 'postgres' ? /PostgreSQL \d+\.\d+/ : /MariaDB \d+\.\d+\.\d+/;
    assert.match(output.join(''), new RegExp(`^db +main +ok +\\d+  ${version.source}, 3 tables, 7 named queries, 4 named updates, all prepared$`, 'm'));
    assert.match(output.join(''), new RegExp(`^db +crm +ok +\\d+  ${version.source}, 1 table, 1 named query, all prepared$`, 'm'));
    output.length = 0;
    const down = rawConfig();
    for (const name of ['from_env', 'wrong_password', 'privileged']) delete down.services.db.databases[name];
    assert.is(await probe(down), EXIT.UNAVAILABLE);
    assert.match(output.join(''), /^db +down +FAIL +\d+  database down is unreachable: .*ECONNREFUSED/m);
  });

  test.run();
}

serverSuite(postgres);
serverSuite(mysql);
