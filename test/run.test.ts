import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { simpleParser } from 'mailparser';
import { ROOT, exampleConfigObject, mail, tempDir } from './support/env';
import { closedPort, startSmtpSink } from './support/smtp-sink';
import { SqliteStore } from '../src/state/sqlite-store';

// These tests run the built binary, as an MTA or procmail would.
const BINARY = join(ROOT, 'dist', 'mailagent');
const { dir, cleanup } = tempDir();
// eslint-disable-next-line @typescript-eslint/no-require-imports
require('../examples/demo-db.mjs').createDemoDatabase(join(dir, 'demo.db'));

function writeConfig(name: string, tweak: (raw: Record<string, any>) => void = () => {}): string {
  const raw = exampleConfigObject(dir);
  tweak(raw);
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(raw, null, 2));
  return file;
}

function run(args: string[], input?: Buffer, env: Record<string, string> = {}) {
  const result = spawnSync(BINARY, args, { input, cwd: dir, env: { PATH: process.env.PATH!, HOME: dir, ...env }, timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr.toString() };
}

/** Like run, without blocking this process: needed while an in-process SMTP server must answer. */
function runAsync(args: string[], input: Buffer, env: Record<string, string> = {}): Promise<ReturnType<typeof run>> {
  return new Promise((resolve, reject) => {
    const child = spawn(BINARY, args, { cwd: dir, env: { PATH: process.env.PATH!, HOME: dir, ...env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => err.push(c));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
    child.stdin.end(input);
  });
}

const printConfig = writeConfig('print.json', (raw) => delete raw.smtp);

test('the binary exists (npm test builds it first)', () => {
  assert.ok(existsSync(BINARY), 'run npm run build');
});

test('run --print writes the complete reply message and exits 0', async () => {
  const r = run(['run', '--print', '--config', printConfig], mail('help', { Subject: 'help please', 'Message-ID': '<p1@example.com>' }));
  assert.is(r.status, 0, r.stderr);
  const reply = await simpleParser(r.stdout);
  assert.is(reply.subject, 'Re: help please — processed (1 ok, 0 failed)');
  assert.is(reply.inReplyTo, '<p1@example.com>');
  assert.match(reply.text!, '> help\nmailagent ');
  assert.match(r.stdout.toString(), /^Auto-Submitted: auto-replied\r\n/m);
});

test('unknown sender: no output, exit 0, one audit line', () => {
  const before = existsSync(join(dir, 'audit.jsonl')) ? readFileSync(join(dir, 'audit.jsonl'), 'utf8').split('\n').length : 1;
  const r = run(['run', '--print', '--config', printConfig], mail('db tables', { From: 'Eve <eve@example.net>', 'Message-ID': '<evil@example.net>' }));
  assert.is(r.status, 0);
  assert.is(r.stdout.length, 0);
  assert.is(r.stderr, '');
  const lines = readFileSync(join(dir, 'audit.jsonl'), 'utf8').trimEnd().split('\n');
  assert.is(lines.length, before);
  assert.equal(JSON.parse(lines.at(-1)!), {
    time: JSON.parse(lines.at(-1)!).time,
    messageId: '<evil@example.net>',
    sender: 'eve@example.net',
    decision: 'dropped',
    reason: 'sender eve@example.net is not on the allow list',
  });
});

test('Auto-Submitted: auto-replied: no output, exit 0', () => {
  const r = run(['run', '--print', '--config', printConfig], mail('db tables', { 'Auto-Submitted': 'auto-replied' }));
  assert.is(r.status, 0);
  assert.is(r.stdout.length, 0);
});

test('one valid and one invalid command: one error reply naming the invalid line', async () => {
  const r = run(['run', '--print', '--config', printConfig], mail('db tables\ndb query name=hosts_by_site site=mars'));
  assert.is(r.status, 0);
  const reply = await simpleParser(r.stdout);
  assert.match(reply.subject!, 'not processed (1 problem)');
  assert.match(reply.text!, '- line 2: "db query name=hosts_by_site site=mars": site=mars: expected one of ams, fra, lon');
  assert.not.match(reply.text!, '> db tables');
});

test('usage errors exit 64; --help and --version exit 0', () => {
  assert.is(run(['run', '--bogus']).status, 64);
  assert.is(run(['frobnicate']).status, 64);
  assert.is(run([]).status, 64);
  assert.is(run(['run', '--print', '--config', printConfig], Buffer.alloc(0)).status, 64);
  assert.is(run(['--help']).status, 0);
  assert.is(run(['run', '--help']).status, 0);
});

test('configuration errors exit 78 and list every problem', () => {
  const broken = writeConfig('broken.json', (raw) => {
    raw.agent.address = 'nope';
    raw.users[0].roles = ['ghost'];
    raw.limits = { maxCommands: 0 };
  });
  const r = run(['run', '--print', '--config', broken], mail('help'));
  assert.is(r.status, 78);
  assert.match(r.stderr, '3 problems');
  assert.match(r.stderr, 'agent.address:');
  assert.match(r.stderr, 'limits.maxCommands: must be ≥ 1');
  assert.is(run(['run', '--print', '--config', join(dir, 'missing.json')], mail('help')).status, 78);
  assert.is(run(['run', '--print'], mail('help')).status, 78, 'no config anywhere');
  assert.is(run(['run', '--config', printConfig], mail('help')).status, 78, 'no smtp and no --print');
});

test('the config is found through MAILAGENT_CONFIG', () => {
  const r = run(['run', '--print'], mail('status'), { MAILAGENT_CONFIG: printConfig });
  assert.is(r.status, 0, r.stderr);
  assert.ok(r.stdout.length > 0);
});

test('run sends the reply over SMTP: the server receives exactly the --print bytes', async () => {
  const sink = await startSmtpSink();
  try {
    const config = writeConfig('smtp.json', (raw) => {
      raw.smtp = { host: '127.0.0.1', port: sink.port, user: 'agent', password: { env: 'SMTP_PW' } };
    });
    const r = await runAsync(['run', '--config', config], mail('db tables', { 'Message-ID': '<smtp-1@example.com>' }), { SMTP_PW: 'pw' });
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stdout.length, 0);
    assert.is(sink.received.length, 1);
    assert.is(sink.received[0].login, 'agent:pw', 'password from the env secret reference');
    assert.is(sink.received[0].from, 'agent@example.com');
    assert.equal(sink.received[0].to, ['ops@example.com']);
    const reply = await simpleParser(sink.received[0].raw);
    assert.is(reply.inReplyTo, '<smtp-1@example.com>');
    assert.match(reply.text!, '> db tables');
    // The same message delivered again (an MTA retry) is not answered twice.
    assert.is((await runAsync(['run', '--config', config], mail('db tables', { 'Message-ID': '<smtp-1@example.com>' }), { SMTP_PW: 'pw' })).status, 0);
    assert.is(sink.received.length, 1);
  } finally {
    await sink.close();
  }
});

test('SMTP down: exit 0, the reply waits in the outbox; the next run sends it, and a retry of the message runs nothing', async () => {
  const port = await closedPort();
  const config = writeConfig('down.json', (raw) => (raw.smtp = { host: '127.0.0.1', port, timeoutSeconds: 5 }));
  const message = mail('db tables', { 'Message-ID': '<down-1@example.com>' });
  const first = run(['run', '--config', config], message);
  assert.is(first.status, 0, first.stderr);
  assert.match(first.stderr, 'could not send the reply now');
  assert.match(first.stderr, 'waits in the outbox');
  const audit = () => readFileSync(join(dir, 'audit.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.is(audit().filter((a) => a.messageId === '<down-1@example.com>' && a.decision === 'executed').length, 1);
  const state = new SqliteStore(join(dir, 'state.db'));
  try {
    assert.is((await state.get('mid:<down-1@example.com>'))!.state, 'reply-pending');
  } finally {
    await state.close();
  }

  const sink = await startSmtpSink();
  try {
    const up = writeConfig('down.json', (raw) => (raw.smtp = { host: '127.0.0.1', port: sink.port }));
    // Another message: its run sends its own reply and the one left in the outbox.
    const second = await runAsync(['run', '--config', up], mail('db tables', { 'Message-ID': '<down-2@example.com>' }));
    assert.is(second.status, 0, second.stderr);
    assert.is(second.stderr, '');
    const threads = (await Promise.all(sink.received.map((m) => simpleParser(m.raw)))).map((r) => r.inReplyTo).sort();
    assert.equal(threads, ['<down-1@example.com>', '<down-2@example.com>']);
    // The MTA delivers the first message again: already answered, nothing runs, nothing is sent.
    const retry = await runAsync(['run', '--config', up], message);
    assert.is(retry.status, 0, retry.stderr);
    assert.is(sink.received.length, 2);
    assert.equal(audit().filter((a) => a.messageId === '<down-1@example.com>').map((a) => a.decision), ['executed', 'duplicate']);
  } finally {
    await sink.close();
  }
});

test('state store not writable: exit 75, nothing lost', () => {
  // A file where the state folder must be: unwritable even for root.
  writeFileSync(join(dir, 'not-a-dir'), '');
  const config = writeConfig('locked.json', (raw) => {
    raw.state.path = join(dir, 'not-a-dir', 'state.db');
    raw.smtp = { host: '127.0.0.1', port: 1 };
  });
  const r = run(['run', '--config', config], mail('db tables'));
  assert.is(r.status, 75);
  assert.match(r.stderr, 'state store');
});

test('audit log not writable: exit 75', () => {
  writeFileSync(join(dir, 'afile'), '');
  const config = writeConfig('noaudit.json', (raw) => {
    raw.audit.path = join(dir, 'afile', 'audit.jsonl');
    delete raw.smtp;
  });
  const r = run(['run', '--print', '--config', config], mail('db tables'));
  assert.is(r.status, 75);
  assert.match(r.stderr, 'audit log');
});

test('test-service probes the configured adapters: exit 0 when all answer, 69 when one does not', () => {
  const ok = run(['test-service', '--json', '--config', printConfig]);
  assert.is(ok.status, 0, `${ok.stdout}${ok.stderr}`);
  const db = (JSON.parse(ok.stdout.toString()) as { service: string; target: string; ok: boolean; detail: string }[]).find((r) => r.service === 'db')!;
  assert.is(db.target, 'inventory');
  assert.ok(db.ok);
  assert.match(db.detail, /^SQLite [\d.]+, 3 tables, 5 named queries/);
  const missing = writeConfig('missing-db.json', (raw) => (raw.services.db.databases.inventory.sqlite.path = join(dir, 'gone.db')));
  const down = run(['test-service', 'db', '--config', missing]);
  assert.is(down.status, 69);
  assert.match(down.stdout.toString(), /^db +inventory +FAIL +\d+ +.*gone\.db does not exist/m);
  assert.is(run(['test-service', 'nope', '--config', printConfig]).status, 64);
});

test('the binary works alone in an empty directory', () => {
  const { dir: lonely, cleanup: done } = tempDir();
  try {
    const copy = join(lonely, 'mailagent');
    copyFileSync(BINARY, copy);
    chmodSync(copy, 0o755);
    const r = spawnSync(copy, ['run', '--print', '--config', printConfig], { input: mail('db tables'), cwd: lonely, env: { PATH: '/usr/bin:/bin', HOME: lonely } });
    assert.is(r.status, 0, r.stderr.toString());
    assert.match(r.stdout.toString(), 'hosts');
  } finally {
    done();
  }
});

test.after(cleanup);
test.run();
