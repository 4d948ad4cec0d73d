import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as openpgp from 'openpgp';
import { dkimKey } from './support/dkim';

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

// Packages only some commands or mails need are bundled apart, as parts loaded on first use
// (build.mjs, SPLIT): these runs take each part through the executable. NODE_DEBUG=mailagent
// reports every part loaded and whether its V8 code cache was accepted.
const PARTS_DEBUG = { NODE_DEBUG: 'mailagent' };

/** The parts a run loaded, from its NODE_DEBUG lines; any other stderr line fails the test. */
function partsLoaded(stderr: string): string[] {
  const lines = stderr.split('\n').filter(Boolean);
  const parts = lines.map((l) => /^MAILAGENT \d+: part (\S+): \d+ kB, code cache (\S+), [\d.]+ ms$/.exec(l));
  assert.ok(parts.every(Boolean), `unexpected stderr:\n${stderr}`);
  for (const m of parts) assert.is(m![2], 'accepted', `code cache of part ${m![1]}`);
  return parts.map((m) => m![1]).sort();
}

function writeConfig(name: string, extra: Record<string, unknown>): string {
  const file = join(dir, name);
  const config: Record<string, unknown> = {
    agent: { address: 'agent@example.com' },
    users: [{ address: 'ops@example.com', roles: ['admin'] }],
    roles: { admin: ['*'] },
    audit: { path: join(dir, `${name}.audit.jsonl`) },
    ...extra,
  };
  if (extra.usersFile) delete config.users; // either users or usersFile
  writeFileSync(file, JSON.stringify(config));
  return file;
}

function runMail(config: string, mail: Buffer, env: Record<string, string> = {}) {
  const r = spawnSync(bin, ['run', '--print', '--config', config], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(dir, 'home'), ...PARTS_DEBUG, ...env },
    input: stamped(mail),
    timeout: 30_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
}

/** The last audit record of a config written by writeConfig(). */
function lastAudit(config: string): { decision?: string; reason?: string; evidence?: string[] } {
  const lines = readFileSync(`${config}.audit.jsonl`, 'utf8').trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n');
let mailCount = 0;
function mailFrom(headers: string, body: string): Buffer {
  mailCount += 1;
  return Buffer.from(
    crlf(`From: Ops <ops@example.com>\nTo: agent@example.com\nSubject: parts ${mailCount}\nDate: now\n` +
      `Message-ID: <binary-parts-${mailCount}@example.com>\n${headers}\n${body}`),
    'utf8',
  );
}

test('parts: help and a plain run load none of them', () => {
  const help = mailagentAt(bin, PARTS_DEBUG, '--help');
  assert.is(help.status, 0, help.stderr);
  assert.equal(partsLoaded(help.stderr), []);
  const config = writeConfig('plain.json', {});
  const r = runMail(config, mailFrom('', 'frobnicate\n'));
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^In-Reply-To: /m);
  assert.equal(partsLoaded(r.stderr), []);
});

test('parts: a GBK, an ISO-2022-JP and an HTML-only mail load the charset and HTML parts they need', () => {
  const config = writeConfig('charsets.json', {});
  const gbk = runMail(config, mailFrom('Content-Type: text/plain; charset=GBK\n', 'frobnicate gbk\n'));
  assert.is(gbk.status, 0, gbk.stderr);
  assert.equal(partsLoaded(gbk.stderr), ['iconv-lite']);
  const japanese = runMail(config, readFileSync(join(MAIL_DIR, '17-iso-2022-jp.eml')));
  assert.is(japanese.status, 0, japanese.stderr);
  assert.match(decodeReply(japanese.stdout).subject, 'Re: 東京のホスト検索');
  assert.equal(partsLoaded(japanese.stderr), ['encoding-japanese', 'iconv-lite']);
  const html = runMail(config, mailFrom('Content-Type: text/html; charset=utf-8\n', '<p>frobnicate <b>html</b></p>\n'));
  assert.is(html.status, 0, html.stderr);
  assert.match(decodeReply(html.stdout).body, '"frobnicate html"');
  assert.equal(partsLoaded(html.stderr), ['html']);
});

test('parts: test-service reaches PostgreSQL (pg) and MariaDB (mysql2) from the executable', () => {
  const config = writeConfig('dbs.json', {
    services: {
      db: {
        default: 'pgdb',
        databases: {
          pgdb: { postgres: { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' } },
          mydb: { mysql: { host: '127.0.0.1', port: 3306, user: 'root', database: 'test' } },
        },
      },
    },
  });
  const r = mailagentAt(bin, PARTS_DEBUG, 'test-service', 'db', '--config', config);
  assert.is(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /^db\s+pgdb\s+ok\s+\d+\s+PostgreSQL \d+/m);
  assert.match(r.stdout, /^db\s+mydb\s+ok\s+\d+\s+MariaDB \d+/m);
  assert.equal(partsLoaded(r.stderr), ['mysql2', 'pg']);
});

test('parts: DKIM (mailauth) — a signed mail altered in transit is dropped in silence, a trusted pass is served', async () => {
  const key = dkimKey('example.com');
  // Altered after signing: the body hash fails before any DNS lookup (no network in tests).
  const signed = await key.sign(mailFrom('', 'frobnicate signed\n'));
  const altered = Buffer.from(signed.toString('latin1').replace('frobnicate signed', 'frobnicate altered'), 'latin1');
  assert.match(altered.toString('latin1'), /^DKIM-Signature: /);
  const verifying = writeConfig('dkim.json', { security: { dkim: {} } });
  const dropped = runMail(verifying, altered);
  assert.is(dropped.status, 0, dropped.stderr);
  assert.is(dropped.stdout, '');
  assert.equal(partsLoaded(dropped.stderr), ['mailauth']);
  assert.is(lastAudit(verifying).decision, 'dropped');
  assert.is(lastAudit(verifying).reason, 'missing dkim evidence');

  // From the trusted Authentication-Results: alignment of mail.example.com with example.com
  // needs mailauth's organizational-domain lookup.
  const trusting = writeConfig('dkim-ar.json', { security: { dkim: { trustedAuthservId: 'mx.example.com' } } });
  const ar = 'Authentication-Results: mx.example.com; dkim=pass header.d=mail.example.com header.s=test\n';
  const served = runMail(trusting, mailFrom(ar, 'frobnicate trusted\n'));
  assert.is(served.status, 0, served.stderr);
  assert.match(decodeReply(served.stdout).body, 'unknown command "frobnicate"');
  assert.equal(partsLoaded(served.stderr), ['mailauth']);
  assert.equal(lastAudit(trusting).evidence, ['allowlist', 'dkim']);
  const foreign = runMail(trusting, mailFrom(ar.replace('mail.example.com', 'example.net'), 'frobnicate foreign\n'));
  assert.is(foreign.stdout, '', 'a pass for another organization is no evidence');
  assert.is(lastAudit(trusting).reason, 'missing dkim evidence');
});

test('parts: PGP (openpgp) — a clearsigned mail from a user with a key is served, an altered one dropped', async () => {
  const { privateKey, publicKey } = await openpgp.generateKey({ type: 'ecc', userIDs: [{ email: 'ops@example.com' }], format: 'armored' });
  const signingKeys = await openpgp.readPrivateKey({ armoredKey: privateKey });
  writeFileSync(join(dir, 'ops.asc'), publicKey);
  const config = writeConfig('pgp.json', { users: [{ address: 'ops@example.com', roles: ['admin'], evidence: 'pgp', pgpKey: 'ops.asc' }] });
  const armored = await openpgp.sign({ message: await openpgp.createCleartextMessage({ text: 'frobnicate pgp' }), signingKeys });
  const served = runMail(config, mailFrom('Content-Type: text/plain; charset=utf-8\n', armored));
  assert.is(served.status, 0, served.stderr);
  assert.match(decodeReply(served.stdout).body, 'unknown command "frobnicate"');
  assert.equal(partsLoaded(served.stderr), ['openpgp']);
  assert.equal(lastAudit(config).evidence, ['allowlist', 'pgp']);
  const dropped = runMail(config, mailFrom('Content-Type: text/plain; charset=utf-8\n', armored.replace('frobnicate pgp', 'frobnicate pgq')));
  assert.is(dropped.stdout, '', dropped.stderr);
  assert.is(lastAudit(config).reason, 'missing pgp evidence');
});

test('parts: a YAML users file (yaml) is read by the executable', () => {
  writeFileSync(join(dir, 'users.yaml'), '# the allow list\nusers:\n  - address: ops@example.com\n    roles: [admin]\n');
  const config = writeConfig('yaml-users.json', { usersFile: 'users.yaml' });
  const served = runMail(config, mailFrom('', 'frobnicate yaml\n'));
  assert.is(served.status, 0, served.stderr);
  assert.match(decodeReply(served.stdout).body, 'unknown command "frobnicate"');
  assert.equal(partsLoaded(served.stderr), ['yaml']);
  const listed = mailagentAt(bin, PARTS_DEBUG, 'users', 'list', '--config', config);
  assert.is(listed.status, 0, listed.stderr);
  assert.match(listed.stdout, 'ops@example.com');
  assert.equal(partsLoaded(listed.stderr), ['yaml']);
});

test('parts: a code cache V8 rejects (other V8 flags) only costs time', () => {
  writeFileSync(join(dir, 'users-jitless.yaml'), 'users:\n  - address: ops@example.com\n    roles: [admin]\n');
  const config = writeConfig('jitless.json', { usersFile: 'users-jitless.yaml' });
  const r = runMail(config, mailFrom('', 'frobnicate jitless\n'), { NODE_OPTIONS: '--jitless' });
  assert.is(r.status, 0, r.stderr);
  assert.match(decodeReply(r.stdout).body, 'unknown command "frobnicate"');
  assert.match(r.stderr, /^MAILAGENT \d+: part yaml: \d+ kB, code cache REJECTED/m);
});

test('watch without a config file is a configuration error (78)', () => {
  const r = mailagent('watch');
  assert.is(r.status, 78, r.stderr);
  assert.match(r.stderr, /config/i);
});

test.run();
