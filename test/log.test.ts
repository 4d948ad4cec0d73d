import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createLogger, REDACTED } from '../src/core/log';

function capture(options: Parameters<typeof createLogger>[0] = {}) {
  const lines: string[] = [];
  const log = createLogger({ now: () => new Date('2026-11-25T10:00:00.123Z'), ...options, write: (l) => lines.push(l) });
  return { log, lines };
}

test('JSON mode writes one object per line: time, level and msg first, then the fields', () => {
  const { log, lines } = capture({ json: true });
  log.info('handled', { key: 'mid:<a@b>', decision: 'executed', ms: 12 });
  log.warn('two\nlines', { n: 1n });
  assert.is(lines.length, 2);
  assert.ok(lines.every((l) => l.endsWith('\n') && l.indexOf('\n') === l.length - 1), 'exactly one line each');
  assert.is(lines[0], '{"time":"2026-11-25T10:00:00.123Z","level":"info","msg":"handled","key":"mid:<a@b>","decision":"executed","ms":12}\n');
  assert.equal(JSON.parse(lines[1]), { time: '2026-11-25T10:00:00.123Z', level: 'warn', msg: 'two\nlines', n: '1' });
});

test('levels below the threshold are dropped', () => {
  const { log, lines } = capture({ json: true, level: 'warn' });
  log.debug('d');
  log.info('i');
  log.warn('w');
  log.error('e');
  assert.equal(lines.map((l) => JSON.parse(l).level), ['warn', 'error']);
  const verbose = capture({ json: true, level: 'debug' });
  verbose.log.debug('d');
  assert.is(verbose.lines.length, 1);
});

test('a field cannot overwrite time, level or msg', () => {
  const { log, lines } = capture({ json: true });
  log.info('real', { msg: 'fake', level: 'error', time: 'never' });
  assert.equal(JSON.parse(lines[0]), { time: '2026-11-25T10:00:00.123Z', level: 'info', msg: 'real' });
});

test('secrets are redacted by field name, at any depth, and inside URLs', () => {
  const { log, lines } = capture({ json: true });
  log.info('connect', {
    password: 'hunter2',
    smtpPassword: 'p1',
    imap: { user: 'agent', pass: 'p2', nested: [{ otp: '123456', apiToken: 't' }] },
    secret: { env: 'X' },
    url: 'postgres://app:s3cret@db.example.com:5432/state',
    note: 'see https://user:pw@example.com/x and http://example.com/ok',
  });
  const text = lines[0];
  for (const leaked of ['hunter2', 'p1', 'p2', '123456', 's3cret', ':pw@', '"t"']) assert.not.ok(text.includes(leaked), `${leaked} leaked: ${text}`);
  const obj = JSON.parse(text);
  assert.is(obj.password, REDACTED);
  assert.is(obj.smtpPassword, REDACTED);
  assert.is(obj.imap.user, 'agent');
  assert.is(obj.imap.pass, REDACTED);
  assert.is(obj.imap.nested[0].otp, REDACTED);
  assert.is(obj.imap.nested[0].apiToken, REDACTED);
  assert.is(obj.secret, REDACTED);
  assert.is(obj.url, 'postgres://app:***@db.example.com:5432/state');
  assert.is(obj.note, 'see https://user:***@example.com/x and http://example.com/ok');
});

test('errors become their message and code; buffers their size', () => {
  const { log, lines } = capture({ json: true });
  const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:25 (postgres://a:b@h)'), { code: 'ECONNREFUSED' });
  log.error('smtp failed', { err, raw: Buffer.alloc(10) });
  const obj = JSON.parse(lines[0]);
  assert.equal(obj.err, { message: 'connect ECONNREFUSED 127.0.0.1:25 (postgres://a:***@h)', code: 'ECONNREFUSED' });
  assert.is(obj.raw, '<10 bytes>');
});

test('terminal mode writes readable lines with the same redaction', () => {
  const { log, lines } = capture({ json: false });
  log.info('ready', { mailbox: 'INBOX', uids: 3, password: 'x', note: 'two words' });
  assert.is(lines[0], `10:00:00.123 INFO  ready  mailbox=INBOX uids=3 password=${REDACTED} note="two words"\n`);
});

test('stderr: lines of one turn go out in one write, and every line is written before an exit', () => {
  // A child process logs a burst, counts its writes to stderr, then exits at once (as watch does on a fatal error).
  const script = `
    const { createLogger } = require('./src/core/log');
    let writes = 0;
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = (chunk) => { writes++; return write(chunk); };
    const log = createLogger({ json: true });
    for (let i = 0; i < 50; i++) log.info('burst', { i });
    setImmediate(() => {
      process.stdout.write(String(writes));
      log.error('fatal', { code: 75 });
      process.exit(75);
    });`;
  const child = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', script], { cwd: `${__dirname}/..`, encoding: 'utf8' });
  assert.is(child.status, 75, child.stderr);
  assert.is(child.stdout, '1', 'fifty lines of one turn in one write');
  const lines = child.stderr.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.map((l) => l.i ?? l.msg), [...Array.from({ length: 50 }, (_, i) => i), 'fatal']);
});

test.run();
