import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { processMessage } from '../src/core/pipeline';
import { Spool, sweepSpool } from '../src/mail/spool';
import { LocalShare } from '../src/services/files/local';
import { checkPath } from '../src/services/files/paths';
import { demoConfig, mail, tempDir, testDeps } from './support/env';
import { readReply } from './support/reply';

// The files service on local shares, through the pipeline with real request attachments: list,
// stat, get, put, rm; read-only shares; caps; and a traversal corpus that must neither read nor
// write anything outside the share.

const { dir, cleanup } = tempDir('mailagent-files-');
const share = join(dir, 'share');
const outside = join(dir, 'outside');
const readonlyShare = join(dir, 'readonly');

function resetTree() {
  for (const d of [share, outside, readonlyShare]) rmSync(d, { recursive: true, force: true });
  mkdirSync(join(share, 'logs', '2026'), { recursive: true });
  mkdirSync(outside);
  mkdirSync(readonlyShare);
  writeFileSync(join(share, 'logs', '2026', 'app.log'), 'line 1\nline 2\n');
  writeFileSync(join(share, 'hello.txt'), 'hello\n');
  writeFileSync(join(outside, 'secret.txt'), 'TOP SECRET\n');
  writeFileSync(join(readonlyShare, 'report.csv'), 'a,b\n1,2\n');
  // Symlinks that lead out: a folder, a file, and one that stays inside (allowed).
  symlinkSync(outside, join(share, 'link-out'));
  symlinkSync(join(outside, 'secret.txt'), join(share, 'link-file'));
  symlinkSync(join(share, 'logs'), join(share, 'link-in'));
}
resetTree();

const config = demoConfig(dir, (raw) => {
  raw.limits = { maxAttachmentBytes: 64 * 1024 };
  raw.services.files = { maxFileBytes: 100_000, shares: { drop: { path: share }, docs: { path: readonlyShare, readOnly: true } } };
  // The test sends changes without a one-time code: allow-list evidence is enough here.
  raw.security = { evidence: { 'files:*': 'allowlist' } };
});

/** A request with optional attachments (base64, in a multipart/mixed message). */
function request(body: string, attachments: { name: string; content: Buffer; type?: string }[] = []): Buffer {
  if (!attachments.length) return mail(body);
  const boundary = 'b-files-test';
  const parts = [
    `--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${body.replace(/\r?\n/g, '\r\n')}\r\n`,
    ...attachments.map(
      (a) =>
        `--${boundary}\r\nContent-Type: ${a.type ?? 'application/octet-stream'}; name="${a.name}"\r\nContent-Disposition: attachment; filename="${a.name}"\r\n` +
        `Content-Transfer-Encoding: base64\r\n\r\n${a.content.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`,
    ),
    `--${boundary}--\r\n`,
  ].join('');
  const head = mail('', { 'MIME-Version': '1.0', 'Content-Type': `multipart/mixed; boundary="${boundary}"` }).toString();
  return Buffer.concat([Buffer.from(head), Buffer.from(parts)]);
}

async function send(body: string, attachments: { name: string; content: Buffer }[] = []) {
  const deps = testDeps(config);
  const outcome = await processMessage(request(body, attachments), deps);
  assert.equal(deps.errors, [], 'no internal errors');
  const reply = await readReply(outcome);
  return { reply, text: reply.text ?? '', subject: reply.subject ?? '' };
}

/** Every file under a folder with a hash of its content, symlinks as their target. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else out[p] = st.isSymbolicLink() ? `link ${p}` : `${createHash('sha256').update(readFileSync(p)).digest('hex')} ${st.mtimeMs}`;
    }
  };
  walk(root);
  return out;
}

const binary = Buffer.from(Array.from({ length: 40_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));

test('list, stat and get a file of a share', async () => {
  const listing = await send('files list drop logs/2026');
  assert.match(listing.subject, 'processed (1 ok, 0 failed)');
  assert.match(listing.text, /app\.log\s+file\s+14/);
  const root = await send('files list share=drop');
  for (const name of ['hello.txt', 'link-out', 'logs']) assert.match(root.text, name);
  assert.match(root.text, /link-out\s+symlink/);
  const stat = await send('files stat share=drop path=hello.txt');
  assert.match(stat.text, /hello\.txt\s+file\s+6\s+\S+\s+0644/);
  const get = await send('files get share=drop path=logs/2026/app.log');
  assert.is(get.reply.attachments.length, 1);
  assert.is(get.reply.attachments[0].filename, 'app.log');
  assert.is(get.reply.attachments[0].content.toString(), 'line 1\nline 2\n');
});

test('put stores the attachment byte for byte, refuses to overwrite unless asked, and rm removes it', async () => {
  const first = await send('files put share=drop path=incoming.bin attach=data.bin', [{ name: 'data.bin', content: binary }]);
  assert.match(first.subject, 'processed (1 ok, 0 failed)', first.text);
  assert.ok(readFileSync(join(share, 'incoming.bin')).equals(binary));
  assert.equal(readdirSync(share).filter((n) => n.includes('.tmp')), [], 'no temporary file left');
  const again = await send('files put share=drop path=incoming.bin', [{ name: 'data.bin', content: Buffer.from('other') }]);
  assert.match(again.subject, 'processed (0 ok, 1 failed)');
  assert.match(again.text, 'exists already: add overwrite=yes to replace it');
  assert.ok(readFileSync(join(share, 'incoming.bin')).equals(binary), 'unchanged');
  const replaced = await send('files put share=drop path=incoming.bin overwrite=yes', [{ name: 'data.bin', content: Buffer.from('other') }]);
  assert.match(replaced.subject, 'processed (1 ok, 0 failed)');
  assert.is(readFileSync(join(share, 'incoming.bin'), 'utf8'), 'other');
  const removed = await send('files rm share=drop path=incoming.bin');
  assert.match(removed.subject, 'processed (1 ok, 0 failed)');
  assert.not.ok(existsSync(join(share, 'incoming.bin')));
  const folder = await send('files rm share=drop path=logs');
  assert.match(folder.text, 'is a folder: only files are removed');
});

test('the whole request is refused before anything runs: unknown attachment, several, none, too large, read-only share', async () => {
  const cases: [string, { name: string; content: Buffer }[], string][] = [
    ['files put share=drop path=x.bin attach=missing.bin', [{ name: 'data.bin', content: binary }], 'no attachment named "missing.bin" (attachments: data.bin)'],
    ['files put share=drop path=x.bin', [], 'attach=… must name the attachment to store (the message has none)'],
    ['files put share=drop path=x.bin', [{ name: 'a.bin', content: binary }, { name: 'b.bin', content: binary }], 'the message has 2: a.bin, b.bin'],
    ['files put share=drop path=x.bin', [{ name: 'big.bin', content: Buffer.alloc(70 * 1024, 1) }], 'is 71680 bytes, over the size limit for attachments'],
    ['files put share=docs path=x.bin', [{ name: 'a.bin', content: binary }], 'share docs is read-only'],
    ['files rm share=docs path=report.csv', [], 'share docs is read-only'],
    ['files list share=nowhere', [], 'no share named "nowhere" (shares: drop, docs)'],
  ];
  for (const [line, attachments, expected] of cases) {
    const { subject, text } = await send(`db tables\n${line}`, attachments);
    assert.match(subject, 'not processed (1 problem)', line);
    assert.match(text, expected, line);
  }
  assert.not.ok(existsSync(join(share, 'x.bin')));
  assert.ok(existsSync(join(readonlyShare, 'report.csv')));
});

test('get refuses a file over maxFileBytes; attachment names are never paths', async () => {
  writeFileSync(join(share, 'big.bin'), Buffer.alloc(100_001));
  const big = await send('files get share=drop path=big.bin');
  assert.match(big.text, '"big.bin" is 100001 bytes; files up to 100000 bytes can be sent by mail');
  assert.is(big.reply.attachments.length, 0);
  // A hostile attachment name is reduced to its base name and only ever used to look it up.
  const named = await send('files put share=drop path=named.bin attach=passwd', [{ name: '../../etc/passwd', content: Buffer.from('x') }]);
  assert.match(named.subject, 'processed (1 ok, 0 failed)', named.text);
  assert.is(readFileSync(join(share, 'named.bin'), 'utf8'), 'x');
});

/** Paths a mail may try; every one must be refused, on every action. */
const TRAVERSAL: [string, string][] = [
  ['../outside/secret.txt', 'parent'],
  ['logs/../../outside/secret.txt', 'parent inside a path'],
  ['/etc/passwd', 'absolute'],
  ['%2e%2e/outside/secret.txt', 'percent-encoded dots'],
  ['..%2foutside%2fsecret.txt', 'percent-encoded slash'],
  ['%252e%252e/outside', 'double percent-encoding'],
  ['．．／outside／secret.txt', 'fullwidth dots and slash'],
  ['..∕outside∕secret.txt', 'division slash'],
  ['..\\outside\\secret.txt', 'Windows separators'],
  ['C:\\Windows\\win.ini', 'drive letter'],
  ['~/.ssh/id_rsa', 'home folder'],
  ['hello.txt\u0000.png', 'NUL byte'],
  [`${'a'.repeat(300)}.txt`, 'name over 255 bytes'],
  [`${'a/'.repeat(600)}x`, 'path over 1024 characters'],
  ['link-out/secret.txt', 'symlinked folder leading out'],
  ['link-file', 'symlink to a file outside'],
  ['link-out', 'symlink itself, outside'],
];

test(`traversal corpus (${TRAVERSAL.length} paths): refused on list, stat, get, put and rm; nothing outside is read or written`, async () => {
  resetTree();
  const before = snapshot(outside);
  const beforeShare = snapshot(share);
  for (const [path, what] of TRAVERSAL) {
    for (const action of ['list', 'stat', 'get', 'put', 'rm']) {
      const line = `files ${action} share=drop path="${path.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
      const { subject, text, reply } = await send(line, action === 'put' ? [{ name: 'evil.txt', content: Buffer.from('EVIL') }] : []);
      if (action === 'stat' && (path === 'link-file' || path === 'link-out')) {
        // stat describes the link itself, which is inside the share; it does not follow it.
        assert.match(text, /link-\w+\s+symlink/, `${what} (stat)`);
        continue;
      }
      const refused = /not processed \(1 problem\)|processed \(0 ok, 1 failed\)/.test(subject);
      assert.ok(refused, `${what} (${action}): ${subject}\n${text}`);
      assert.not.match(text, 'TOP SECRET', `${what} (${action})`);
      assert.not.ok(reply.attachments.some((a) => a.content.toString().includes('TOP SECRET')), `${what} (${action}) sent the secret`);
      assert.not.match(text, 'internal error', `${what} (${action})`);
    }
  }
  assert.equal(snapshot(outside), before, 'nothing outside the share changed');
  assert.equal(snapshot(share), beforeShare, 'nothing inside the share changed either');
  // A symlink that stays inside the share is an ordinary folder on the way.
  const inside = await send('files get share=drop path=link-in/2026/app.log');
  assert.is(inside.reply.attachments[0]?.content.toString(), 'line 1\nline 2\n');
});

test('the text check refuses each traversal path before any file system call', () => {
  for (const [path, what] of TRAVERSAL.filter(([, w]) => !w.startsWith('symlink'))) assert.not.ok(checkPath(path).ok, what);
  assert.equal(checkPath('logs/./2026//app.log'), { ok: true, parts: ['logs', '2026', 'app.log'] });
});

test('a folder swapped for a symlink while files are read never yields a file outside the share', async () => {
  resetTree();
  mkdirSync(join(share, 'swap'));
  writeFileSync(join(share, 'swap', 'secret.txt'), 'inside\n');
  // Another process swaps share/swap between the real folder and a symlink to outside, as fast as it can.
  const swapper = spawn(process.execPath, ['-e', `
    const fs = require('fs');
    const dir = ${JSON.stringify(join(share, 'swap'))}, keep = ${JSON.stringify(join(share, 'swap-real'))}, out = ${JSON.stringify(outside)};
    const stopAt = Date.now() + 1500;
    while (Date.now() < stopAt) {
      try { fs.renameSync(dir, keep); fs.symlinkSync(out, dir); fs.unlinkSync(dir); fs.renameSync(keep, dir); } catch {}
    }`]);
  const adapter = new LocalShare(share);
  const target = join(dir, 'race-copy');
  let inside = 0;
  let refused = 0;
  const until = Date.now() + 1200;
  while (Date.now() < until) {
    try {
      rmSync(target, { force: true });
      await adapter.read(['swap', 'secret.txt'], 1000, target);
      assert.is(readFileSync(target, 'utf8'), 'inside\n', 'read a file outside the share');
      inside++;
    } catch (err) {
      assert.not.match((err as Error).message, 'TOP SECRET');
      refused++;
    }
  }
  await new Promise((resolve) => swapper.on('exit', resolve));
  assert.ok(inside + refused > 100, `${inside} reads, ${refused} refused`);
  console.log(`    swap race: ${inside} reads inside, ${refused} refused`);
});

test('attachments live in the spool only while the request is handled; a dead process\'s spool is swept', async () => {
  const spoolRoot = join(dir, 'spool');
  await send('files put share=drop path=spooled.bin', [{ name: 'data.bin', content: binary }]);
  assert.equal(existsSync(spoolRoot) ? readdirSync(spoolRoot) : [], [], 'removed after the request');
  // A folder left by a process that no longer exists, and one of a live process.
  mkdirSync(join(spoolRoot, '999999-deadbeef'), { recursive: true });
  writeFileSync(join(spoolRoot, '999999-deadbeef', 'attachment-1'), 'left over');
  const live = new Spool(spoolRoot);
  const kept = live.nextFile();
  writeFileSync(kept, 'in use');
  sweepSpool(config.state.path);
  assert.not.ok(existsSync(join(spoolRoot, '999999-deadbeef')));
  assert.is(readFileSync(kept, 'utf8'), 'in use', 'the folder of a live process is left alone');
  live.remove();
  assert.not.ok(existsSync(kept));
  assert.ok(statSync(spoolRoot).isDirectory());
});

test('a change that uses attachments is not offered a confirmation by reply (the reply would not carry them)', async () => {
  const strict = demoConfig(dir, (raw) => {
    raw.services.files = { shares: { drop: { path: share } } };
  });
  const deps = testDeps(strict);
  const reply = await readReply(await processMessage(request('files put share=drop path=strict.bin', [{ name: 'data.bin', content: binary }]), deps));
  assert.is(reply.subject, 'Re: test — not processed (more proof needed)');
  assert.match(reply.text ?? '', 'These commands use files attached to your message, which a confirmation reply cannot carry');
  assert.not.match(reply.text ?? '', 'confirm=');
  assert.not.ok(existsSync(join(share, 'strict.bin')));
  // Without attachments, the same kind of change gets the usual confirmation request.
  const rm = await readReply(await processMessage(request('files rm share=drop path=hello.txt'), testDeps(strict)));
  assert.is(rm.subject, 'Re: test — confirmation needed');
});

test('an attachment that cannot be stored (the spool is not writable) refuses the command that needs it, clearly', async () => {
  const stateDir = join(dir, 'broken-state');
  mkdirSync(stateDir);
  writeFileSync(join(stateDir, 'spool'), 'a file where the spool folder should be');
  const broken = demoConfig(dir, (raw) => {
    raw.state = { path: join(stateDir, 'state.db') };
    raw.services.files = { shares: { drop: { path: share } } };
    raw.security = { evidence: { 'files:*': 'allowlist' } };
  });
  const deps = testDeps(broken);
  const reply = await readReply(await processMessage(request('files put share=drop path=nospool.bin', [{ name: 'data.bin', content: binary }]), deps));
  assert.equal(deps.errors, []);
  assert.is(reply.subject, 'Re: test — not processed (1 problem)');
  assert.match(reply.text ?? '', /the attachment "data\.bin" could not be stored for this request \((EEXIST|ENOTDIR)\)/);
  assert.not.ok(existsSync(join(share, 'nospool.bin')));
});

test.after(cleanup);
test.run();
