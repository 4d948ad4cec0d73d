import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generateSync } from 'otplib';
import { dkimVerified } from '../src/auth/dkim';
import { saveTotpSecret } from '../src/auth/secrets-file';
import { processMessage, type PipelineDeps } from '../src/core/pipeline';
import { fileAudit } from '../src/state/audit';
import { MemoryStore } from '../src/state/store';
import { services } from '../src/services/registry';
import type { Service } from '../src/services/types';
import { demoConfig, mail, tempDir, testDeps } from './support/env';
import { dkimKey } from './support/dkim';
import { readReply } from './support/reply';

const { dir, cleanup } = tempDir();
const TOTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

/** A registry with one mutating action whose runs are counted. */
function withChange(ran: string[]): Record<string, Service> {
  return {
    ...services,
    db: {
      ...services.db,
      actions: {
        ...services.db.actions,
        touch: { summary: 'a change (test)', args: {}, mutates: true, run: async () => (ran.push('db touch'), { kind: 'text', text: 'touched' }) },
        tables: { ...services.db.actions.tables, run: async (a, c) => (ran.push('db tables'), services.db.actions.tables.run(a, c)) },
      },
    },
  };
}

const key = dkimKey('example.com');
const foreignKey = dkimKey('evil.example.net');
const dkimConfig = demoConfig(dir, (raw) => {
  raw.security = { dkim: {} };
  raw.secretsFile = join(dir, 'secrets.json');
});
const arConfig = demoConfig(dir, (raw) => (raw.security = { dkim: { trustedAuthservId: 'mx.example.com' } }));
saveTotpSecret(join(dir, 'secrets.json'), 'ops@example.com', TOTP_SECRET, new Date());

function deps(config = dkimConfig, extra: Partial<PipelineDeps> = {}) {
  return testDeps(config, { dnsResolver: key.resolver, ...extra });
}

test('real DKIM: a freshly signed mail verifies; one altered body byte fails it', async () => {
  const signed = await key.sign(mail('db tables\n'));
  assert.ok(await dkimVerified(signed, 'example.com', key.resolver));
  const text = signed.toString('latin1');
  const at = text.indexOf('db tables');
  const altered = Buffer.from(`${text.slice(0, at)}db tablez${text.slice(at + 9)}`, 'latin1');
  assert.not.ok(await dkimVerified(altered, 'example.com', key.resolver));
});

test('with dkim required, a signed mail runs and an unsigned one is dropped in silence', async () => {
  const ran: string[] = [];
  const ok = await processMessage(await key.sign(mail('db tables')), deps(dkimConfig, { services: withChange(ran) }));
  assert.is(ok.kind, 'reply');
  const unsigned = deps(dkimConfig, { services: withChange(ran) });
  assert.equal(await processMessage(mail('db tables'), unsigned), { kind: 'silent', reason: 'missing dkim evidence' });
  assert.equal(ran, ['db tables']);
});

test('a signature by another domain does not vouch for ops@example.com', async () => {
  const d = deps(dkimConfig, { dnsResolver: foreignKey.resolver });
  assert.is((await processMessage(await foreignKey.sign(mail('db tables')), d)).kind, 'silent');
});

test('trusted Authentication-Results: only the topmost header with our authserv-id counts', async () => {
  const pass = 'mx.example.com; dkim=pass header.d=example.com header.s=sel; spf=pass smtp.mailfrom=example.com';
  assert.is((await processMessage(mail('status', { 'Authentication-Results': pass }), deps(arConfig))).kind, 'reply');
  const foreign = 'evil.example.net; dkim=pass header.d=example.com';
  assert.is((await processMessage(mail('status', { 'Authentication-Results': foreign }), deps(arConfig))).kind, 'silent');
  const misaligned = 'mx.example.com; dkim=pass header.d=evil.example.net';
  assert.is((await processMessage(mail('status', { 'Authentication-Results': misaligned }), deps(arConfig))).kind, 'silent');
  const commented = 'mx.example.com; dkim=fail (dkim=pass header.d=example.com) header.d=example.com';
  assert.is((await processMessage(mail('status', { 'Authentication-Results': commented }), deps(arConfig))).kind, 'silent');
});

test('a mutating command needs strong evidence: a valid TOTP runs it, the same code again is refused', async () => {
  const ran: string[] = [];
  const store = new MemoryStore();
  const code = generateSync({ secret: TOTP_SECRET });
  const first = await processMessage(await key.sign(mail(`db touch\notp=${code}`)), deps(dkimConfig, { services: withChange(ran), store }));
  assert.match((await readReply(first)).text!, '> db touch\ntouched');
  const again = await processMessage(await key.sign(mail(`db touch\notp=${code}`)), deps(dkimConfig, { services: withChange(ran), store }));
  const reply = await readReply(again);
  assert.is(reply.subject, 'Re: test — not processed (one-time code)');
  assert.match(reply.text!, 'Nothing was run: the one-time code was not accepted (wrong, expired or already used).');
  assert.equal(ran, ['db touch']);
});

test('a wrong TOTP is refused and nothing runs', async () => {
  const ran: string[] = [];
  const reply = await readReply(await processMessage(await key.sign(mail('db touch\notp=000000')), deps(dkimConfig, { services: withChange(ran) })));
  assert.match(reply.text!, 'one-time code was not accepted');
  assert.equal(ran, []);
});

test('without strong evidence, a change gets a confirmation request; the reply with the token runs it once', async () => {
  const ran: string[] = [];
  const store = new MemoryStore();
  const d = () => deps(dkimConfig, { services: withChange(ran), store });
  const challenge = await readReply(await processMessage(await key.sign(mail('db tables\ndb touch', { Subject: 'fix' })), d()));
  assert.is(challenge.subject, 'Re: fix — confirmation needed');
  assert.match(challenge.text!, /^confirm=[0-9a-f]{32}$/m);
  assert.equal(ran, []);
  const token = /^confirm=[0-9a-f]{32}$/m.exec(challenge.text!)![0];
  const quoted = `Yes please.\n${token}\n\nOn Wed, mailagent wrote:\n${challenge.text!.split('\n').map((l) => `> ${l}`).join('\n')}`;
  const done = await readReply(await processMessage(await key.sign(mail(quoted, { Subject: 'Re: fix' })), d()));
  assert.is(done.subject, 'Re: fix — processed (2 ok, 0 failed)', done.text);
  assert.equal(ran, ['db tables', 'db touch']);
  const reused = await readReply(await processMessage(await key.sign(mail(quoted, { Subject: 'Re: fix' })), d()));
  assert.match(reused.text!, 'Nothing was run: the confirmation token is unknown, expired or already used.');
  assert.equal(ran, ['db tables', 'db touch']);
});

async function challengeToken(d: PipelineDeps, body = 'db touch'): Promise<string> {
  const challenge = await readReply(await processMessage(await key.sign(mail(body)), d));
  return /confirm=([0-9a-f]{32})/.exec(challenge.text!)![1];
}

test('a token is bound to its command list', async () => {
  const ran: string[] = [];
  const d = deps(dkimConfig, { services: withChange(ran), store: new MemoryStore() });
  const token = await challengeToken(d);
  const reply = await readReply(await processMessage(await key.sign(mail(`db touch\ndb touch\nconfirm=${token}`)), d));
  assert.match(reply.text!, 'Nothing was run: the confirmation token was issued for a different list of commands.');
  assert.equal(ran, []);
});

test('a token expires after confirmMinutes', async () => {
  const ran: string[] = [];
  const store = new MemoryStore();
  const token = await challengeToken(deps(dkimConfig, { services: withChange(ran), store }));
  const later = new Date(Date.now() + 11 * 60_000);
  const late = mail(`confirm=${token}`, { Date: later.toUTCString() });
  const reply = await readReply(await processMessage(await key.sign(late), deps(dkimConfig, { services: withChange(ran), store, now: () => later })));
  assert.match(reply.text!, 'unknown, expired or already used');
  assert.equal(ran, []);
});

test('a token issued to one user does nothing for another', async () => {
  const ran: string[] = [];
  const store = new MemoryStore();
  const config = demoConfig(dir, (raw) => (raw.roles.viewer = ['*']));
  const token = await challengeToken(testDeps(config, { services: withChange(ran), store }));
  const reply = await readReply(await processMessage(mail(`confirm=${token}`, { From: 'helpdesk@example.com' }), testDeps(config, { services: withChange(ran), store })));
  assert.match(reply.text!, 'unknown, expired or already used');
  assert.equal(ran, []);
});

test('an explicit evidence rule names what is missing', async () => {
  const config = demoConfig(dir, (raw) => (raw.security = { evidence: { 'db:query': 'pgp' } }));
  const reply = await readReply(await processMessage(mail('db tables\ndb query name=all_tickets'), testDeps(config)));
  assert.is(reply.subject, 'Re: test — not processed (more proof needed)');
  assert.match(reply.text!, 'These commands need an OpenPGP signature with your registered key (PGP/MIME or clearsigned):\n\n  db query name=all_tickets');
});

test('Date outside the window: too old or too far ahead is dropped', async () => {
  const old = mail('status', { Date: new Date(Date.now() - 25 * 3_600_000).toUTCString() });
  assert.equal(await processMessage(old, testDeps(demoConfig(dir))), { kind: 'silent', reason: 'Date is older than 24 h (possible replay)' });
  const future = mail('status', { Date: new Date(Date.now() + 11 * 60_000).toUTCString() });
  assert.equal(await processMessage(future, testDeps(demoConfig(dir))), { kind: 'silent', reason: 'Date is more than 10 min in the future' });
  assert.is((await processMessage(mail('status', { Date: null }), testDeps(demoConfig(dir)))).kind, 'silent');
});

test('the same Message-ID with another body is a replay and is dropped', async () => {
  const d = testDeps(demoConfig(dir));
  await processMessage(mail('status', { 'Message-ID': '<same@example.com>' }), d);
  assert.equal(await processMessage(mail('db tables', { 'Message-ID': '<same@example.com>' }), d), {
    kind: 'silent',
    reason: 'Message-ID reused with different content (possible replay)',
  });
});

test('rate limits: per user per hour, and a global reply cap, then silence', async () => {
  const config = demoConfig(dir, (raw) => (raw.security = { messagesPerUserPerHour: 2, repliesPerHour: 3 }));
  const d = testDeps(config);
  const kinds = [];
  for (let i = 0; i < 3; i++) kinds.push((await processMessage(mail('status'), d)).kind);
  assert.equal(kinds, ['reply', 'reply', 'silent']);
  assert.match(d.audits.at(-1)!.reason!, 'rate limit');
  const other = { ...d, config: demoConfig(dir, (raw) => (raw.security = { repliesPerHour: 3 })) };
  const more = [];
  for (let i = 0; i < 2; i++) more.push((await processMessage(mail('status', { From: 'helpdesk@example.com' }), other)).kind);
  assert.equal(more, ['reply', 'silent']);
  assert.match(d.audits.at(-1)!.reason!, 'global reply cap');
});

test('audit: one-time codes and tokens are redacted; the file rotates by size', async () => {
  const path = join(dir, 'rot', 'audit.jsonl');
  const sink = fileAudit(path, { maxBytes: 1024, keep: 2 });
  for (let i = 0; i < 40; i++) sink({ time: new Date().toISOString(), decision: 'rejected', reason: `bad line otp=123456 confirm=${'a'.repeat(32)} #${i}` });
  const files = readdirSync(join(dir, 'rot')).sort();
  assert.equal(files, ['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2']);
  const all = files.map((f) => readFileSync(join(dir, 'rot', f), 'utf8')).join('');
  assert.not.match(all, '123456');
  assert.not.match(all, 'a'.repeat(32));
  for (const line of readFileSync(path, 'utf8').trimEnd().split('\n')) assert.match(JSON.parse(line).reason, 'otp=[redacted] confirm=[redacted]');
  writeFileSync(join(dir, 'unused'), '');
});

test.after(cleanup);
test.run();
