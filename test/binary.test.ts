import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

// The built executable, alone in an empty directory: no node_modules, no sources, no package.json.
const ROOT = resolve(__dirname, '..');
const BUILT = join(ROOT, 'dist', 'mailagent');
const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

let dir = '';
let bin = '';

test.before(() => {
  if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), 'mailagent-bin-'));
  bin = join(dir, 'mailagent');
  copyFileSync(BUILT, bin);
  mkdirSync(join(dir, 'home'));
});

test.after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function mailagent(...args: string[]) {
  return mailagentAt(bin, {}, ...args);
}

function mailagentAt(path: string, env: Record<string, string>, ...args: string[]) {
  const r = spawnSync(path, args, {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(dir, 'home'), ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--version prints the package version', () => {
  const r = mailagent('--version');
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout.trim(), version);
});

test('--help lists the four subcommands with their descriptions', () => {
  const r = mailagent('--help');
  assert.is(r.status, 0, r.stderr);
  for (const name of ['watch', 'run', 'users', 'test-service']) {
    // "  mailagent users <action> [address]  Manage the allow list: ..."
    const line = new RegExp(`^\\s*mailagent ${name}(?=[\\s<\\[]).*?\\s{2,}\\w{3,}`, 'm');
    assert.match(r.stdout, line, `no described "${name}" command in:\n${r.stdout}`);
  }
  assert.not.match(r.stderr, /ExperimentalWarning|single-executable/i, 'SEA warning leaked to stderr');
});

test('an unknown subcommand is a usage error (64)', () => {
  const r = mailagent('frobnicate');
  assert.is(r.status, 64, r.stderr);
  assert.match(r.stderr, /frobnicate/);
});

test('messages never come from translation files beside the executable', () => {
  // yargs would look for <executable>/../../../locales/<LANG>.json: outside the product.
  const deep = join(dir, 'a', 'b', 'c');
  mkdirSync(deep, { recursive: true });
  copyFileSync(bin, join(deep, 'mailagent'));
  mkdirSync(join(dir, 'locales'));
  const planted = JSON.stringify({ 'Commands:': 'PLANTED', 'Unknown argument: %s': 'PLANTED %s' });
  writeFileSync(join(dir, 'locales', 'fr.json'), planted);
  writeFileSync(join(dir, 'locales', 'fr_FR.json'), planted);
  const help = mailagentAt(join(deep, 'mailagent'), { LANG: 'fr_FR.UTF-8', LC_ALL: 'fr_FR.UTF-8' }, '--help');
  assert.is(help.status, 0, help.stderr);
  assert.match(help.stdout, /^Commands:/m);
  const bad = mailagentAt(join(deep, 'mailagent'), { LANG: 'fr_FR.UTF-8', LC_ALL: 'fr_FR.UTF-8' }, 'frobnicate');
  assert.not.match(`${help.stdout}${bad.stderr}`, /PLANTED/);
});

// Charset tables, HTML conversion and the Japanese decoder load on first use inside the bundle:
// these mails take those paths through the executable itself.
const MAIL_DIR = join(ROOT, 'test', 'fixtures', 'mail');

function runConfig(): string {
  const file = join(dir, 'run-config.json');
  const config = {
    agent: { address: 'agent@example.com' },
    users: [{ address: 'ops@example.com', roles: ['admin'] }],
    roles: { admin: ['*'] },
    audit: { path: join(dir, 'audit.jsonl') },
  };
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/** A mail whose Date is now, so that the replay window accepts it. */
function stamped(mail: Buffer): Buffer {
  return Buffer.from(mail.toString('latin1').replace(/^Date: .*$/m, `Date: ${new Date().toUTCString()}`), 'latin1');
}

function runPrint(mail: Buffer, ...args: string[]) {
  const r = spawnSync(bin, args.length ? args : ['run', '--print', '--config', runConfig()], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(dir, 'home') },
    input: stamped(mail),
    timeout: 30_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
}

/** The reply's subject and body as text: encoded words and quoted-printable undone. */
function decodeReply(raw: string): { subject: string; body: string } {
  const split = raw.indexOf('\r\n\r\n');
  assert.ok(split > 0, `not a message:\n${raw}`);
  const header = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const bytes = (qp: string) => Buffer.from(qp.replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
  const subjectLine = /^Subject: (.*)$/m.exec(header)?.[1] ?? '';
  const subject = subjectLine
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?UTF-8\?Q\?([^?]*)\?=/gi, (_, q: string) => bytes(q.replace(/_/g, ' ')));
  assert.match(header, /^Content-Transfer-Encoding: quoted-printable$/m);
  return { subject, body: bytes(raw.slice(split + 4).replace(/=\r\n/g, '')) };
}

test('run --print decodes a GBK mail (subject and body) in the executable', () => {
  // GBK bytes: 查询机房 in the subject (base64), 北京朝阳 in the body.
  const head =
    'From: Ops <ops@example.com>\r\nTo: agent@example.com\r\nSubject: =?GBK?B?sunRr7v6t78=?=\r\n' +
    'Date: now\r\nMessage-ID: <binary-gbk@example.com>\r\nMIME-Version: 1.0\r\n' +
    'Content-Type: text/plain; charset=GBK\r\nContent-Transfer-Encoding: 8bit\r\n\r\n';
  const mail = Buffer.concat([
    Buffer.from(`${head}frobnicate site="`, 'latin1'),
    Buffer.from('b1b1bea9b3afd1f4', 'hex'),
    Buffer.from('"\r\n', 'latin1'),
  ]);
  const r = runPrint(mail);
  assert.is(r.status, 0, r.stderr);
  const reply = decodeReply(r.stdout);
  assert.match(reply.subject, 'Re: 查询机房');
  assert.match(reply.body, 'frobnicate site="北京朝阳"');
  assert.match(reply.body, 'unknown command "frobnicate"');
});

test('run --print decodes an ISO-2022-JP mail in the executable', () => {
  const r = runPrint(readFileSync(join(MAIL_DIR, '17-iso-2022-jp.eml')));
  assert.is(r.status, 0, r.stderr);
  const reply = decodeReply(r.stdout);
  assert.match(reply.subject, 'Re: 東京のホスト検索');
  assert.match(reply.body, 'db query name=find_host location="東京データセンター"');
  assert.match(reply.body, 'よろしくお願いします');
});

test('run --print reads the commands of an HTML-only mail in the executable, not its hidden text', () => {
  const mail = Buffer.from(
    'From: Ops <ops@example.com>\r\nTo: agent@example.com\r\nSubject: html\r\nDate: now\r\n' +
      'Message-ID: <binary-html@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n' +
      '<html><head><style>.x { display: none }</style></head><body><p>frobnicate caf&eacute;</p>' +
      '<p class="x">smuggled one</p><div style="display:none">smuggled two</div></body></html>\r\n',
  );
  const r = runPrint(mail);
  assert.is(r.status, 0, r.stderr);
  const reply = decodeReply(r.stdout);
  assert.match(reply.body, '"frobnicate café"');
  assert.not.match(reply.body, 'smuggled');
});

test('run flags give the same reply whether or not they take the path without yargs', () => {
  const config = runConfig();
  const mail = readFileSync(join(MAIL_DIR, '14-iso-8859-1.eml'));
  const withoutIds = (raw: string) => raw.replace(/^(Message-ID|Date): .*$/gm, '$1: -');
  const plain = runPrint(mail, 'run', '--print', '--config', config, '--sender', 'ops@example.com');
  const viaYargs = runPrint(mail, 'run', `--config=${config}`, '--print', '--sender=ops@example.com');
  assert.is(plain.status, 0, plain.stderr);
  assert.is(viaYargs.status, 0, viaYargs.stderr);
  assert.match(decodeReply(plain.stdout).body, 'host="Müller"');
  assert.is(withoutIds(plain.stdout), withoutIds(viaYargs.stdout));
  const unknown = runPrint(mail, 'run', '--print', '--config', config, '--frobnicate');
  assert.is(unknown.status, 64, unknown.stderr);
  assert.match(unknown.stderr, /frobnicate/);
});

test('watch without a config file is a configuration error (78)', () => {
  const r = mailagent('watch');
  assert.is(r.status, 78, r.stderr);
  assert.match(r.stderr, /config/i);
});

test.run();
