import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { simpleParser } from 'mailparser';
import { generateSync } from 'otplib';
import { readTotpSecret } from '../src/auth/secrets-file';
import { ROOT, exampleConfigObject, mail, tempDir } from './support/env';
import { startSmtpSink } from './support/smtp-sink';

// TOTP from enrolment to a change, through the built binary as an MTA would run it:
// `mailagent users enroll-totp`, then `mailagent run` (state in its SQLite file, so a spent code
// is remembered by the next process) with the reply going to a real SMTP server on loopback.

const BINARY = join(ROOT, 'dist', 'mailagent');
const { dir, cleanup } = tempDir('mailagent-totp-');
// eslint-disable-next-line @typescript-eslint/no-require-imports
require('../examples/demo-db.mjs').createDemoDatabase(join(dir, 'demo.db'));

const CONFIG = join(dir, 'config.json');
const SECRETS = join(dir, 'secrets.json');
const UPDATE = 'db update name=set_ticket_status id=1 status=closed';

function writeConfig(smtpPort: number): void {
  const raw = exampleConfigObject(dir);
  delete raw.users;
  raw.usersFile = 'users.yaml';
  raw.secretsFile = 'secrets.json';
  raw.smtp = { host: '127.0.0.1', port: smtpPort, timeoutSeconds: 10 };
  writeFileSync(CONFIG, JSON.stringify(raw, null, 2));
  writeFileSync(join(dir, 'users.yaml'), 'users:\n  - address: ops@example.com\n    name: Operations\n    roles: [admin]\n');
}

const env = { PATH: process.env.PATH!, HOME: dir };

/** Runs the binary without blocking this process, which serves the SMTP sink meanwhile. */
function runBinary(args: string[], input?: Buffer): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(BINARY, args, { cwd: dir, env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => err.push(c));
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

function ticketStatus(id: number): string {
  const Database = require('better-sqlite3');
  const db = new Database(join(dir, 'demo.db'), { readonly: true });
  try {
    return db.prepare('SELECT status FROM tickets WHERE id = ?').get(id).status;
  } finally {
    db.close();
  }
}

test('enroll-totp, then a fresh code runs a mutating command once; the same code again is refused', async () => {
  assert.ok(existsSync(BINARY), 'dist/mailagent is missing: run npm run build');
  const sink = await startSmtpSink();
  try {
    writeConfig(sink.port);
    const enrol = spawnSync(BINARY, ['users', 'enroll-totp', 'ops@example.com', '--config', CONFIG], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
    assert.is(enrol.status, 0, enrol.stderr);
    const secret = readTotpSecret(SECRETS, 'ops@example.com');
    assert.ok(secret, 'no secret in the secrets file');
    assert.match(enrol.stdout, `secret=${secret}`);

    assert.is(ticketStatus(1), 'open');
    const code = generateSync({ secret: secret! });
    const first = await runBinary(['run', '--config', CONFIG], mail(`${UPDATE}\notp=${code}\n`, { Subject: 'close ticket 1', 'Message-ID': '<totp-e2e-1@example.com>' }));
    assert.is(first.status, 0, first.stderr);
    assert.is(sink.received.length, 1);
    const done = await simpleParser(sink.received[0].raw);
    assert.is(done.subject, 'Re: close ticket 1 — processed (1 ok, 0 failed)');
    assert.match(done.text!, `> ${UPDATE}\n1 row affected (committed)`);
    assert.not.match(sink.received[0].raw.toString(), code);
    assert.is(ticketStatus(1), 'closed');

    // Another message (another change, so that an unchanged row proves nothing ran) with the spent code.
    const again = await runBinary(
      ['run', '--config', CONFIG],
      mail(`db update name=set_ticket_status id=1 status=open\notp=${code}\n`, { Subject: 'reopen ticket 1', 'Message-ID': '<totp-e2e-2@example.com>' }),
    );
    assert.is(again.status, 0, again.stderr);
    assert.is(sink.received.length, 2);
    const refused = await simpleParser(sink.received[1].raw);
    assert.is(refused.subject, 'Re: reopen ticket 1 — not processed (one-time code)');
    assert.match(refused.text!, 'Nothing was run: the one-time code was not accepted (wrong, expired or already used).');
    assert.is(ticketStatus(1), 'closed');

    const audit = readFileSync(join(dir, 'audit.jsonl'), 'utf8');
    assert.is(audit.trimEnd().split('\n').length, 2);
    assert.not.match(audit, code);
    assert.equal(audit.trimEnd().split('\n').map((l) => JSON.parse(l).decision), ['executed', 'rejected']);
  } finally {
    await sink.close();
  }
});

test.after(cleanup);
test.run();
