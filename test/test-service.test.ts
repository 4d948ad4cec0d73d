import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { writeAgentConfig } from './support/agent-process';
import { ROOT, tempDir } from './support/env';
import { startMailStack, type MailStack } from './support/mailstack';

// `mailagent test-service` through the binary, against the running PostgreSQL and MariaDB, the
// private mail stack and one host that does not answer: one row per target, exit 69, the JSON
// agrees with the table, and no secret of the config shows in either.

const test = suite('test-service');
const BINARY = join(ROOT, 'dist', 'mailagent');
const { dir, cleanup } = tempDir('mailagent-probe-');
let stack: MailStack;
let config: string;
const DB_SECRET = 'db-Secret-7f3a9c1e';
const SSH_PASSPHRASE = 'ssh-Passphrase-42b7';

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test.before(async () => {
  stack = await startMailStack();
  const closed = await closedPort();
  const share = join(dir, 'share');
  mkdirSync(share);
  writeFileSync(join(dir, 'db-password'), `${DB_SECRET}\n`);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(dir, 'ssh-key'), privateKey.export({ type: 'pkcs1', format: 'pem', cipher: 'aes-256-cbc', passphrase: SSH_PASSPHRASE }));
  config = writeAgentConfig(stack, dir, 'probe', (raw) => {
    raw.services.db = {
      default: 'pg',
      databases: {
        pg: { postgres: { host: '127.0.0.1', port: 5432, user: 'postgres', password: { file: '../db-password' }, database: 'test' } },
        maria: { mysql: { host: '127.0.0.1', port: 3306, user: 'root', database: 'test' } },
        // The unreachable host, with a secret the driver might be tempted to repeat.
        down: { postgres: { host: '127.0.0.1', port: closed, user: 'app', password: { file: '../db-password' }, database: 'test' } },
      },
    };
    raw.services.jobs = { jobs: { uptime: { command: ['uptime'] } } };
    raw.services.files = {
      shares: {
        drop: { path: share },
        backup: { sftp: { host: '127.0.0.1', port: closed, user: 'backup', privateKey: { file: '../ssh-key' }, passphrase: { env: 'SSH_PASSPHRASE' }, hostKey: `SHA256:${'A'.repeat(43)}`, path: '/srv', timeoutSeconds: 3 } },
      },
    };
  });
});

test.after(async () => {
  await stack?.stop();
  cleanup();
});

function probe(args: string[]) {
  return spawnSync(BINARY, ['test-service', '--config', config, ...args], {
    env: { PATH: process.env.PATH!, HOME: dir, MAILAGENT_IMAP_PASSWORD: stack.users.agent.password, SSH_PASSPHRASE },
    timeout: 60_000,
    encoding: 'utf8',
  });
}

interface Row {
  service: string;
  target: string;
  ok: boolean;
  ms: number;
  detail: string;
}

test('one row per target: what answers is ok, the unreachable ones fail, exit 69; the JSON agrees with the table', () => {
  const json = probe(['--json']);
  assert.is(json.status, 69, json.stderr);
  const rows = JSON.parse(json.stdout) as Row[];
  const byTarget = new Map(rows.map((r) => [`${r.service} ${r.target}`, r]));
  const expectOk = ['imap agent@127.0.0.1', 'smtp 127.0.0.1', 'state', 'audit', 'db pg', 'db maria', 'jobs uptime', 'jobs run log', 'files drop'];
  for (const prefix of expectOk) {
    const row = rows.find((r) => `${r.service} ${r.target}`.startsWith(prefix));
    assert.ok(row, `no row ${prefix}: ${json.stdout}`);
    assert.ok(row!.ok, `${prefix} should be ok: ${row!.detail}`);
  }
  assert.match(rows.find((r) => r.service === 'imap')!.detail, /^logged in; INBOX selected, IDLE; /);
  assert.match(byTarget.get('db pg')!.detail, /^PostgreSQL \d+/);
  assert.match(byTarget.get('db maria')!.detail, /^MariaDB \d+/);
  for (const failing of ['db down', 'files backup']) {
    assert.ok(byTarget.get(failing), `no row ${failing}`);
    assert.is(byTarget.get(failing)!.ok, false, failing);
  }
  assert.match(byTarget.get('db down')!.detail, /unreachable/);
  assert.match(byTarget.get('files backup')!.detail, 'cannot reach the SFTP server', byTarget.get('files backup')!.detail);

  const text = probe([]);
  assert.is(text.status, 69);
  const lines = text.stdout.trimEnd().split('\n');
  assert.match(lines[0], /^service +target +result +ms +detail$/);
  const tableRows = lines.slice(1).map((line) => /^(\S+) +(.+?) +(ok|FAIL) +\d+ {2}(.*)$/.exec(line)!);
  assert.ok(tableRows.every(Boolean), text.stdout);
  assert.equal(
    tableRows.map((m) => [m[1], m[2], m[3] === 'ok']),
    rows.map((r) => [r.service, r.target, r.ok]),
    'the table and the JSON list the same rows in the same order',
  );

  for (const output of [json.stdout, text.stdout, json.stderr, text.stderr]) {
    for (const secret of [DB_SECRET, SSH_PASSPHRASE, stack.users.agent.password]) assert.not.ok(output.includes(secret), `a secret was printed:\n${output}`);
  }
});

test('names pick probes; an unknown name is a usage error; --timeout bounds a probe', () => {
  const some = probe(['--json', 'imap', 'db']);
  assert.is(some.status, 69); // db down
  assert.equal([...new Set((JSON.parse(some.stdout) as Row[]).map((r) => r.service))].sort(), ['db', 'imap']);
  const only = probe(['--json', 'state', 'audit']);
  assert.is(only.status, 0, only.stdout);
  const unknown = probe(['nonsense']);
  assert.is(unknown.status, 64);
  assert.match(unknown.stderr, 'nothing to probe named "nonsense"');
  const bad = probe(['--timeout', 'soon']);
  assert.is(bad.status, 64);
  assert.match(bad.stderr, '--timeout soon: expected a duration');
});

test.run();
