import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Ajv from 'ajv';
import { ConfigError, loadConfig, validateConfig } from '../src/config/load';
import { resolveSecret } from '../src/config/secrets';
import { UserError } from '../src/core/errors';
import { ROOT, exampleConfigObject, tempDir } from './support/env';

const { dir, cleanup } = tempDir();
const schema = JSON.parse(readFileSync(join(ROOT, 'config.schema.json'), 'utf8'));
const example = JSON.parse(readFileSync(join(ROOT, 'config.example.json'), 'utf8'));

function problemsOf(raw: unknown): string[] {
  try {
    validateConfig(raw, '/etc/mailagent.json');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

test('config.example.json validates against config.schema.json (independent validator)', () => {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(schema);
  assert.ok(validate(example), JSON.stringify(validate.errors));
});

test('the agent accepts config.example.json', () => {
  assert.equal(problemsOf(example), []);
});

test('every problem is reported at once, each with its JSON path', () => {
  const raw = structuredClone(example);
  raw.agent.address = 'not an address';
  raw.smtp.port = 'twenty-five';
  raw.smtp.password = 'inline-secret';
  raw.users[0].roles = ['admin', 'superuser'];
  raw.services.db.databases.inventory.queries.host.params.hostname.type = 'text';
  raw.surprise = true;
  const problems = problemsOf(raw);
  assert.equal(problems, [
    'agent.address: "not an address" is not a bare e-mail address (addr-spec), no display name',
    'smtp.port: expected integer, got string',
    'smtp.password: expected one of { "env": … } or { "file": … }',
    'services.db.databases.inventory.queries.host.params.hostname.type: expected one of "string", "int", "number", "date", "bool", "enum", got "text"',
    'surprise: unknown key (expected one of: agent, smtp, imap, state, audit, limits, usersFile, secretsFile, security, health, heartbeat, users, roles, services)',
    'users[0].roles[1]: role "superuser" is not defined in roles',
  ]);
});

test('the independent validator agrees that the broken config is invalid', () => {
  const raw = structuredClone(example);
  raw.smtp.password = 'inline-secret';
  assert.not.ok(new Ajv({ strict: false }).compile(schema)(raw));
});

test('references between sections are checked: roles, default database, query parameters', () => {
  const raw = structuredClone(example);
  raw.users[1].roles = ['nobody'];
  raw.users.push({ address: 'OPS@example.com', roles: [] });
  raw.services.db.default = 'crm';
  raw.services.db.databases.inventory.queries.host.sql = 'SELECT * FROM hosts WHERE name = :host';
  raw.services.db.databases.inventory.queries.hosts_by_site.params.site = { type: 'enum' };
  assert.equal(problemsOf(raw), [
    'users[1].roles[0]: role "nobody" is not defined in roles',
    'users[2].address: duplicate of users[0]',
    'services.db.default: "crm" is not one of databases (inventory)',
    'services.db.databases.inventory.queries.host.sql: uses :host but params does not declare it',
    'services.db.databases.inventory.queries.host.params.hostname: is declared but the SQL never uses :hostname',
    'services.db.databases.inventory.queries.hosts_by_site.params.site.values: is required for type enum',
  ]);
});

test('missing required sections are named', () => {
  assert.equal(problemsOf({}), ['agent: is required', 'users: is required (or usersFile)']);
  assert.equal(problemsOf([]), ['(top level): expected object, got array']);
});

test('relative paths resolve against the config file, not the working directory', () => {
  const cfg = validateConfig(structuredClone(example), '/srv/mailagent/config.json');
  assert.is(cfg.state.path, '/srv/mailagent/var/state.db');
  assert.is(cfg.services.db!.databases.inventory.sqlite?.path, '/srv/mailagent/var/demo.db');
});

test('secret references: env and file, never inline', () => {
  process.env.MAILAGENT_TEST_SECRET = 's3cret';
  assert.is(resolveSecret({ env: 'MAILAGENT_TEST_SECRET' }, join(dir, 'c.json'), 'smtp.password'), 's3cret');
  writeFileSync(join(dir, 'pw'), 'from-file\n', { mode: 0o600 });
  assert.is(resolveSecret({ file: 'pw' }, join(dir, 'c.json'), 'smtp.password'), 'from-file');
  try {
    resolveSecret({ env: 'MAILAGENT_TEST_UNSET' }, join(dir, 'c.json'), 'smtp.password');
    assert.unreachable();
  } catch (err) {
    assert.instance(err, UserError);
    assert.is((err as UserError).exitCode, 78);
    assert.is((err as Error).message, 'smtp.password: environment variable MAILAGENT_TEST_UNSET is not set');
  }
});

test('search order: --config, then MAILAGENT_CONFIG, then the working directory upwards', async () => {
  const project = join(dir, 'project');
  const nested = join(project, 'a', 'b');
  mkdirSync(nested, { recursive: true });
  const write = (file: string, address: string) => {
    const raw = exampleConfigObject(dir);
    raw.agent.address = address;
    writeFileSync(file, JSON.stringify(raw));
  };
  write(join(project, 'mailagent.config.json'), 'found@example.com');
  write(join(dir, 'explicit.json'), 'explicit@example.com');
  write(join(dir, 'env.json'), 'env@example.com');
  const cwd = process.cwd();
  const env = process.env.MAILAGENT_CONFIG;
  try {
    process.chdir(nested);
    delete process.env.MAILAGENT_CONFIG;
    assert.is((await loadConfig()).agent.address, 'found@example.com');
    process.env.MAILAGENT_CONFIG = join(dir, 'env.json');
    assert.is((await loadConfig()).agent.address, 'env@example.com');
    assert.is((await loadConfig(join(dir, 'explicit.json'))).agent.address, 'explicit@example.com');
  } finally {
    process.chdir(cwd);
    if (env === undefined) delete process.env.MAILAGENT_CONFIG;
    else process.env.MAILAGENT_CONFIG = env;
  }
});

test('YAML configs load too', async () => {
  const file = join(dir, 'mailagent.config.yaml');
  writeFileSync(file, 'agent:\n  address: agent@example.com\nusers:\n  - address: ops@example.com\n    roles: [admin]\nroles:\n  admin: ["*"]\n');
  assert.is((await loadConfig(file)).users[0].address, 'ops@example.com');
});

test('syntax errors and missing files are configuration errors (exit 78)', async () => {
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{ "agent": { "address": "a@b.c" }, }');
  for (const file of [bad, join(dir, 'missing.json')]) {
    try {
      await loadConfig(file);
      assert.unreachable();
    } catch (err) {
      assert.instance(err, UserError);
      assert.is((err as UserError).exitCode, 78);
    }
  }
});

test.after(cleanup);
test('oauth2 logins: checked with their JSON path; the schema agrees', () => {
  const raw = structuredClone(example);
  raw.imap = { host: 'imap.example.com', user: 'agent@example.com', password: { env: 'X' }, oauth2: { provider: 'generic', clientId: 'mailagent' } };
  raw.smtp = { host: 'smtp.example.com', oauth2: { provider: 'google', clientId: 'id', tenant: 'contoso', tokenUrl: 'https://x/token' } };
  assert.equal(problemsOf(raw).sort(), [
    'imap.oauth2.tokenUrl: is required for provider generic',
    'imap.password: use either password or oauth2, not both',
    'smtp.oauth2.tenant: is only for provider microsoft',
    'smtp.oauth2.tokenUrl: is only for provider generic (google\'s endpoints are built in)',
    'smtp.user: is required with oauth2 (the account the tokens are for)',
  ]);
  const good = structuredClone(example);
  good.imap = { host: 'outlook.office365.com', port: 993, secure: true, user: 'agent@contoso.com', oauth2: { provider: 'microsoft', clientId: '00000000-0000-0000-0000-000000000000', tenant: 'contoso.onmicrosoft.com' } };
  good.smtp = { host: 'smtp.office365.com', port: 587, requireTLS: true, user: 'agent@contoso.com', oauth2: { provider: 'microsoft', clientId: '00000000-0000-0000-0000-000000000000', tenant: 'contoso.onmicrosoft.com' } };
  assert.equal(problemsOf(good), []);
  const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
  assert.ok(validate(good), JSON.stringify(validate.errors));
});

test.run();
