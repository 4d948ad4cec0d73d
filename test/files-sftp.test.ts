import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Config } from '../src/config/types';
import { processMessage } from '../src/core/pipeline';
import { demoConfig, mail, tempDir, testDeps } from './support/env';
import { readReply } from './support/reply';
import { startSshServer, type SshServer } from './support/sshd';

// The files service on an SFTP share, against a private real OpenSSH server on loopback: list,
// get, put, rm through the pipeline; a host key other than the pinned one is refused before
// anything is sent; symlinks on the server that lead out of the share are refused.

const test = suite('files over SFTP');
const { dir, cleanup } = tempDir('mailagent-sftp-');
let server: SshServer;
let config: Config;
const outside = join(dir, 'outside');

test.before(async () => {
  server = await startSshServer();
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret.txt'), 'TOP SECRET\n');
  mkdirSync(join(server.root, 'reports'));
  writeFileSync(join(server.root, 'reports', 'today.csv'), 'host,up\nweb-1,yes\n');
  symlinkSync(outside, join(server.root, 'link-out'));
  const sftp = (hostKey: string) => ({ host: server.host, port: server.port, user: server.user, privateKey: { file: server.clientKeyPath }, hostKey, path: server.root, timeoutSeconds: 10 });
  config = demoConfig(dir, (raw) => {
    raw.security = { evidence: { 'files:*': 'allowlist' } };
    raw.services.files = { shares: { remote: { sftp: sftp(server.hostKeyFingerprint) }, impostor: { sftp: sftp(server.otherHostKeyFingerprint) } } };
  });
});

test.after(async () => {
  await server?.stop();
  cleanup();
});

function withAttachment(body: string, name: string, content: Buffer): Buffer {
  const boundary = 'b-sftp-test';
  const head = mail('', { 'MIME-Version': '1.0', 'Content-Type': `multipart/mixed; boundary="${boundary}"` }).toString();
  return Buffer.from(
    `${head}--${boundary}\r\nContent-Type: text/plain\r\n\r\n${body}\r\n--${boundary}\r\nContent-Type: application/octet-stream\r\n` +
      `Content-Disposition: attachment; filename="${name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${content.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n--${boundary}--\r\n`,
  );
}

async function send(raw: Buffer) {
  const deps = testDeps(config);
  const reply = await readReply(await processMessage(raw, deps));
  assert.equal(deps.errors, [], 'no internal errors');
  return { reply, text: reply.text ?? '', subject: reply.subject ?? '' };
}

const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31 + (i >> 10)) & 0xff));

test('list and get over SFTP', async () => {
  const listing = await send(mail('files list share=remote path=reports'));
  assert.match(listing.subject, 'processed (1 ok, 0 failed)', listing.text);
  assert.match(listing.text, /today\.csv\s+file\s+18/);
  const root = await send(mail('files list remote'));
  assert.match(root.text, /link-out\s+symlink/);
  const get = await send(mail('files get share=remote path=reports/today.csv'));
  assert.is(get.reply.attachments[0]?.content.toString(), 'host,up\nweb-1,yes\n');
});

test('put stores the attachment byte for byte under a temporary name first; overwrite and rm', async () => {
  const put = await send(withAttachment('files put share=remote path=reports/data.bin', 'data.bin', data));
  assert.match(put.subject, 'processed (1 ok, 0 failed)', put.text);
  assert.ok(readFileSync(join(server.root, 'reports', 'data.bin')).equals(data));
  assert.equal(readdirSync(join(server.root, 'reports')).filter((n) => n.endsWith('.tmp')), []);
  const again = await send(withAttachment('files put share=remote path=reports/data.bin', 'data.bin', Buffer.from('x')));
  assert.match(again.text, 'exists already: add overwrite=yes to replace it');
  assert.ok(readFileSync(join(server.root, 'reports', 'data.bin')).equals(data));
  const replaced = await send(withAttachment('files put share=remote path=reports/data.bin overwrite=yes', 'data.bin', Buffer.from('x')));
  assert.match(replaced.subject, 'processed (1 ok, 0 failed)', replaced.text);
  assert.is(readFileSync(join(server.root, 'reports', 'data.bin'), 'utf8'), 'x');
  const rm = await send(mail('files rm share=remote path=reports/data.bin'));
  assert.match(rm.subject, 'processed (1 ok, 0 failed)', rm.text);
  assert.not.ok(existsSync(join(server.root, 'reports', 'data.bin')));
});

test('a host key other than the pinned one is refused, and nothing is transferred', async () => {
  const before = readdirSync(server.root).sort();
  const logBefore = readFileSync(server.logFile, 'utf8').length;
  const put = await send(withAttachment('files put share=impostor path=planted.bin', 'planted.bin', data));
  assert.match(put.subject, 'processed (0 ok, 1 failed)');
  assert.match(put.text, `is ${server.hostKeyFingerprint}, not the pinned ${server.otherHostKeyFingerprint}: refused, nothing was sent`);
  const get = await send(mail('files get share=impostor path=reports/today.csv'));
  assert.match(get.text, 'refused, nothing was sent');
  assert.is(get.reply.attachments.length, 0);
  assert.equal(readdirSync(server.root).sort(), before);
  // The client gave up before authenticating: the server logged no login.
  assert.not.match(readFileSync(server.logFile, 'utf8').slice(logBefore), 'Accepted publickey');
});

test('a symlink on the server that leads out of the share is refused', async () => {
  for (const line of ['files get share=remote path=link-out/secret.txt', 'files list share=remote path=link-out']) {
    const { subject, text, reply } = await send(mail(line));
    assert.match(subject, 'processed (0 ok, 1 failed)', line);
    assert.match(text, 'leads outside the share', line);
    assert.not.match(text, 'TOP SECRET');
    assert.is(reply.attachments.length, 0);
  }
  const put = await send(withAttachment('files put share=remote path=link-out/evil.txt', 'evil.txt', Buffer.from('EVIL')));
  assert.match(put.text, 'leads outside the share');
  assert.equal(readdirSync(outside), ['secret.txt']);
});

test.run();
