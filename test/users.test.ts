import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, lstatSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as openpgp from 'openpgp';
import { generateSync, verifySync } from 'otplib';
import { readUsersFile, UsersFile, writeFileAtomic } from '../src/config/users-file';
import { readTotpSecret, removeTotpSecret, saveTotpSecret } from '../src/auth/secrets-file';
import { verifyPgp } from '../src/auth/pgp';
import { UserError } from '../src/core/errors';
import { ROOT, exampleConfigObject, tempDir } from './support/env';

const { dir: TMP, cleanup } = tempDir('mailagent-users-');
let n = 0;
/** A fresh sub-directory per test. */
function sub(): string {
  const d = join(TMP, `t${++n}`);
  mkdirSync(d);
  return d;
}
const mode = (p: string) => statSync(p).mode & 0o777;
const tempFiles = (d: string) => readdirSync(d).filter((f) => f.endsWith('.tmp'));

function throwsUser(fn: () => unknown, exitCode: number, match: RegExp): UserError {
  try {
    fn();
  } catch (err) {
    assert.instance(err, UserError);
    assert.is((err as UserError).exitCode, exitCode);
    assert.match((err as UserError).message, match);
    return err as UserError;
  }
  throw new assert.Assertion({ message: `expected a UserError matching ${match}` } as never);
}

const SAMPLE_YAML = `# who may send commands
users:
  # the on-call team
  - address: ops@example.com     # bare addr-spec
    name: Operations             # optional
    roles: [admin]               # defined in the config
    evidence: dkim
    pgpKey: keys/ops.asc
  - address: helpdesk@example.com
    roles: [viewer]
# end of list
`;

// ---------------------------------------------------------------------------------------------
// readUsersFile

test('readUsersFile: YAML with comments, pgpKey made absolute relative to the users file', () => {
  const d = sub();
  mkdirSync(join(d, 'keys'));
  writeFileSync(join(d, 'keys', 'ops.asc'), 'key');
  writeFileSync(join(d, 'users.yaml'), SAMPLE_YAML);
  const { users, problems } = readUsersFile(join(d, 'users.yaml'));
  assert.equal(problems, []);
  assert.equal(users, [
    { address: 'ops@example.com', name: 'Operations', roles: ['admin'], evidence: 'dkim', pgpKey: join(d, 'keys', 'ops.asc') },
    { address: 'helpdesk@example.com', roles: ['viewer'] },
  ]);
});

test('readUsersFile: JSON works the same', () => {
  const d = sub();
  writeFileSync(join(d, 'users.json'), JSON.stringify({ users: [{ address: 'a@example.com', roles: ['x'], evidence: 'totp' }] }));
  assert.equal(readUsersFile(join(d, 'users.json')), { users: [{ address: 'a@example.com', roles: ['x'], evidence: 'totp' }], problems: [] });
});

test('readUsersFile: every problem with its JSON path; valid entries are still returned', () => {
  const d = sub();
  writeFileSync(
    join(d, 'users.yml'),
    `users:
  - address: good@example.com
    roles: [a]
  - address: Ops <ops@example.com>
    roles: [a]
  - address: two@@example.com
    roles: admin
  - address: x@example.com
    roles: [a, ""]
    evidence: maybe
    rolez: [b]
  - address: GOOD@example.com
    roles: [a]
  - address: k@example.com
    roles: [a]
    pgpKey: keys/missing.asc
  - roles: [a]
  - just a string
extra: 1
`,
  );
  const { users, problems } = readUsersFile(join(d, 'users.yml'));
  assert.equal(users, [{ address: 'good@example.com', roles: ['a'] }]);
  const byPath = Object.fromEntries(problems.map((p) => [p.path, p.message]));
  assert.equal(Object.keys(byPath).sort(), [
    'extra',
    'users[1].address',
    'users[2].address',
    'users[2].roles',
    'users[3].evidence',
    'users[3].roles[1]',
    'users[3].rolez',
    'users[4].address',
    'users[5].pgpKey',
    'users[6].address',
    'users[7]',
  ].sort());
  assert.match(byPath['users[1].address'], 'not a bare e-mail address');
  assert.match(byPath['users[4].address'], 'duplicate of users[0]');
  assert.match(byPath['users[3].evidence'], 'allowlist, dkim, totp, pgp, confirm, strong');
  assert.match(byPath['users[5].pgpKey'], 'key file not found');
});

test('readUsersFile: a missing or unparsable file is one problem', () => {
  const d = sub();
  const missing = readUsersFile(join(d, 'nope.yaml'));
  assert.is(missing.problems.length, 1);
  assert.match(missing.problems[0].message, 'file not found');
  writeFileSync(join(d, 'bad.yaml'), 'users:\n  - address: [unclosed\n');
  assert.is(readUsersFile(join(d, 'bad.yaml')).problems.length, 1);
  writeFileSync(join(d, 'bad.json'), '{ "users": [ }');
  assert.match(readUsersFile(join(d, 'bad.json')).problems[0].message, 'cannot parse');
  writeFileSync(join(d, 'users.txt'), 'users: []');
  assert.match(readUsersFile(join(d, 'users.txt')).problems[0].message, '.yaml, .yml or .json');
});

// ---------------------------------------------------------------------------------------------
// UsersFile

test('UsersFile (YAML): add, set-roles, set-pgp-key, remove keep comments and order', () => {
  const d = sub();
  const path = join(d, 'users.yaml');
  mkdirSync(join(d, 'keys'));
  writeFileSync(join(d, 'keys', 'ops.asc'), 'key');
  writeFileSync(path, SAMPLE_YAML);
  const file = UsersFile.open(path);
  file.add('new@example.com', ['viewer', 'admin'], 'New One');
  file.setRoles('OPS@example.com', ['admin', 'viewer']);
  writeFileSync(join(d, 'keys', 'help.asc'), 'key');
  file.setPgpKey('helpdesk@example.com', join(d, 'keys', 'help.asc'));
  const text = readFileSync(path, 'utf8');
  for (const comment of ['# who may send commands', '# the on-call team', '# bare addr-spec', '# optional', '# defined in the config', '# end of list']) {
    assert.ok(text.includes(comment), `lost ${comment}:\n${text}`);
  }
  assert.match(text, 'roles: [admin, viewer] # defined in the config');
  assert.match(text, '  - address: new@example.com\n    name: New One\n    roles: [viewer, admin]\n');
  assert.match(text, '    pgpKey: keys/help.asc');
  assert.ok(text.indexOf('ops@example.com') < text.indexOf('helpdesk@') && text.indexOf('helpdesk@') < text.indexOf('new@'));
  file.remove('Helpdesk@Example.com');
  const after = readUsersFile(path);
  assert.equal(after.problems, []);
  assert.equal(after.users.map((u) => u.address), ['ops@example.com', 'new@example.com']);
  assert.ok(readFileSync(path, 'utf8').includes('# end of list'));
  assert.equal(tempFiles(d), []);
});

test('UsersFile: duplicates, unknown users, bad addresses and empty roles are refused', () => {
  const d = sub();
  const path = join(d, 'users.yaml');
  writeFileSync(path, 'users:\n  - address: ops@example.com\n    roles: [admin]\n');
  const file = UsersFile.open(path);
  const before = readFileSync(path, 'utf8');
  throwsUser(() => file.add('OPS@EXAMPLE.COM', ['admin']), 64, /already in/);
  throwsUser(() => file.add('Ops <x@example.com>', ['admin']), 64, /not a bare e-mail address/);
  throwsUser(() => file.add('a@b@example.com', ['admin']), 64, /not a bare e-mail address/);
  throwsUser(() => file.add('x@example.com', []), 64, /at least one role/);
  throwsUser(() => file.add('x@example.com', ['ok', ' ']), 64, /must not be empty/);
  throwsUser(() => file.remove('nobody@example.com'), 64, /not in/);
  throwsUser(() => file.setRoles('nobody@example.com', ['admin']), 64, /not in/);
  throwsUser(() => file.setPgpKey('nobody@example.com', '/tmp/k.asc'), 64, /not in/);
  assert.is(readFileSync(path, 'utf8'), before);
});

test('UsersFile (JSON): 2-space formatting, keys in order', () => {
  const d = sub();
  const path = join(d, 'users.json');
  writeFileSync(path, JSON.stringify({ users: [{ address: 'ops@example.com', roles: ['admin'] }] }));
  const file = UsersFile.open(path);
  file.add('b@example.com', ['viewer'], 'Bee');
  file.setRoles('ops@example.com', ['viewer']);
  assert.is(
    readFileSync(path, 'utf8'),
    '{\n  "users": [\n    {\n      "address": "ops@example.com",\n      "roles": [\n        "viewer"\n      ]\n    },\n' +
      '    {\n      "address": "b@example.com",\n      "name": "Bee",\n      "roles": [\n        "viewer"\n      ]\n    }\n  ]\n}\n',
  );
  file.remove('ops@example.com');
  assert.equal(readUsersFile(path).users, [{ address: 'b@example.com', name: 'Bee', roles: ['viewer'] }]);
});

test('UsersFile: a missing file is created (0644) by the first add; an empty YAML list works', () => {
  const d = sub();
  const path = join(d, 'users.yaml');
  const old = process.umask(0o077);
  try {
    UsersFile.open(path).add('ops@example.com', ['admin']);
  } finally {
    process.umask(old);
  }
  assert.is(mode(path), 0o644);
  assert.equal(readUsersFile(path), { users: [{ address: 'ops@example.com', roles: ['admin'] }], problems: [] });
  assert.match(readFileSync(path, 'utf8'), /^# mailagent allow list/);
  writeFileSync(path, '# nobody yet\nusers: []\n');
  UsersFile.open(path).add('a@example.com', ['admin']);
  assert.is(readFileSync(path, 'utf8'), '# nobody yet\nusers:\n  - address: a@example.com\n    roles: [admin]\n');
  writeFileSync(path, 'users:\n#  - address: old@example.com\n');
  UsersFile.open(path).add('b@example.com', ['admin']);
  assert.equal(readUsersFile(path).users.map((u) => u.address), ['b@example.com']);
});

test('UsersFile: refuses to edit a file it cannot parse', () => {
  const d = sub();
  const path = join(d, 'users.yaml');
  writeFileSync(path, 'users: [\n');
  throwsUser(() => UsersFile.open(path), 78, /cannot parse/);
  writeFileSync(path, 'users: 3\n');
  throwsUser(() => UsersFile.open(path), 78, /must be a list/);
});

test('atomic write: keeps the mode, follows a symlink, leaves no temp file', () => {
  const d = sub();
  const real = join(d, 'real.yaml');
  writeFileSync(real, 'users: []\n');
  chmodSync(real, 0o640);
  symlinkSync('real.yaml', join(d, 'users.yaml'));
  UsersFile.open(join(d, 'users.yaml')).add('ops@example.com', ['admin']);
  assert.ok(lstatSync(join(d, 'users.yaml')).isSymbolicLink());
  assert.is(mode(real), 0o640);
  assert.match(readFileSync(real, 'utf8'), 'ops@example.com');
  writeFileAtomic(join(d, 'other.txt'), 'x', 0o600);
  assert.is(mode(join(d, 'other.txt')), 0o600);
  assert.equal(tempFiles(d), []);
});

// ---------------------------------------------------------------------------------------------
// Secrets file

test('secrets file: created 0600 whatever the umask; case-insensitive; replace and remove', () => {
  const d = sub();
  const path = join(d, 'secrets.json');
  const old = process.umask(0);
  try {
    assert.is(readTotpSecret(path, 'ops@example.com'), undefined);
    assert.equal(saveTotpSecret(path, 'Ops@Example.com', 'JBSWY3DPEHPK3PXPJBSWY3DP', new Date('2026-11-25T10:00:00Z')), { replaced: false });
  } finally {
    process.umask(old);
  }
  assert.is(mode(path), 0o600);
  assert.equal(JSON.parse(readFileSync(path, 'utf8')), {
    totp: { 'ops@example.com': { secret: 'JBSWY3DPEHPK3PXPJBSWY3DP', enrolledAt: '2026-11-25T10:00:00.000Z' } },
  });
  assert.is(readTotpSecret(path, 'OPS@example.com'), 'JBSWY3DPEHPK3PXPJBSWY3DP');
  assert.equal(saveTotpSecret(path, 'ops@example.com', 'KRSXG5CTMVRXEZLUKRSXG5CT', new Date()), { replaced: true });
  assert.is(readTotpSecret(path, 'ops@example.com'), 'KRSXG5CTMVRXEZLUKRSXG5CT');
  assert.is(mode(path), 0o600);
  assert.ok(removeTotpSecret(path, 'ops@example.com'));
  assert.not.ok(removeTotpSecret(path, 'ops@example.com'));
  assert.is(readTotpSecret(path, 'ops@example.com'), undefined);
  assert.equal(tempFiles(d), []);
  throwsUser(() => saveTotpSecret(path, 'ops@example.com', 'not base32!', new Date()), 64, /base32/);
});

test('secrets file: a group/world-readable file is refused with a chmod 600 hint', () => {
  const d = sub();
  const path = join(d, 'secrets.json');
  saveTotpSecret(path, 'ops@example.com', 'JBSWY3DPEHPK3PXPJBSWY3DP', new Date());
  chmodSync(path, 0o644);
  const err = throwsUser(() => readTotpSecret(path, 'ops@example.com'), 78, /accessible to group or others \(mode 0644\)/);
  assert.match(err.hint!, `chmod 600 ${path}`);
  assert.not.match(err.message, 'JBSWY3DP');
  throwsUser(() => saveTotpSecret(path, 'ops@example.com', 'JBSWY3DPEHPK3PXPJBSWY3DP', new Date()), 78, /chmod|accessible/);
  chmodSync(path, 0o640);
  throwsUser(() => readTotpSecret(path, 'ops@example.com'), 78, /accessible/);
  chmodSync(path, 0o600);
  assert.is(readTotpSecret(path, 'ops@example.com'), 'JBSWY3DPEHPK3PXPJBSWY3DP');
});

// ---------------------------------------------------------------------------------------------
// The CLI, end to end: the built binary when it is up to date, else the sources through tsx.

const BINARY = join(ROOT, 'dist', 'mailagent');
const SOURCES = ['src/commands/users.ts', 'src/config/users-file.ts', 'src/auth/secrets-file.ts', 'src/config/load.ts'];
const binaryFresh = existsSync(BINARY) && SOURCES.every((s) => statSync(join(ROOT, s)).mtimeMs <= statSync(BINARY).mtimeMs);
const CLI = binaryFresh ? [BINARY] : [process.execPath, join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(ROOT, 'src', 'cli.ts')];
console.log(`  users CLI tests run ${binaryFresh ? 'dist/mailagent' : 'src/cli.ts through tsx (dist/mailagent missing or older than the sources)'}`);

const CLI_DIR = sub();
const CONFIG = join(CLI_DIR, 'config.json');
const USERS = join(CLI_DIR, 'users.yaml');
const SECRETS = join(CLI_DIR, 'secrets.json');

function writeCliConfig(file: string, tweak: (raw: Record<string, any>) => void = () => {}): void {
  const raw = exampleConfigObject(CLI_DIR);
  delete raw.users;
  raw.usersFile = 'users.yaml';
  raw.secretsFile = 'secrets.json';
  tweak(raw);
  writeFileSync(file, JSON.stringify(raw, null, 2));
}

function cli(...args: string[]) {
  const r = spawnSync(CLI[0], [...CLI.slice(1), 'users', ...args], {
    cwd: CLI_DIR,
    env: { PATH: process.env.PATH!, HOME: CLI_DIR },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

writeCliConfig(CONFIG);
writeFileSync(USERS, '# who may send commands\nusers:\n  - address: ops@example.com   # on call\n    name: Operations\n    roles: [admin]\n');

test('cli: list (table and --json)', () => {
  const r = cli('list', '--config', CONFIG);
  assert.is(r.status, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0], /^ADDRESS\s+NAME\s+ROLES\s+EVIDENCE\s+TOTP\s+PGP$/);
  assert.match(lines[2], /^ops@example\.com\s+Operations\s+admin\s+-\s+no\s+no$/);
  const j = cli('list', '--json', '--config', CONFIG);
  assert.is(j.status, 0, j.stderr);
  assert.equal(JSON.parse(j.stdout), [{ address: 'ops@example.com', name: 'Operations', roles: ['admin'], evidence: null, totp: false, pgp: false }]);
});

test('cli: add, refusals, set-roles, remove', () => {
  let r = cli('add', 'helpdesk@example.com', '--roles', 'viewer', '--config', CONFIG);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, 'added helpdesk@example.com');
  const text = readFileSync(USERS, 'utf8');
  assert.match(text, '# who may send commands');
  assert.match(text, '# on call');
  assert.match(text, '  - address: helpdesk@example.com\n    roles: [viewer]\n');

  r = cli('add', 'HELPDESK@example.com', '--roles', 'viewer', '--config', CONFIG);
  assert.is(r.status, 64);
  assert.match(r.stderr, 'already in');
  r = cli('add', 'x@example.com', '--roles', 'viewer,superuser', '--config', CONFIG);
  assert.is(r.status, 64);
  assert.match(r.stderr, 'role not defined in the config: superuser');
  assert.match(r.stderr, 'admin, viewer');
  r = cli('add', 'x@example.com', '--config', CONFIG);
  assert.is(r.status, 64);
  assert.match(r.stderr, '--roles is required');
  r = cli('add', 'not-an-address', '--roles', 'viewer', '--config', CONFIG);
  assert.is(r.status, 64);
  r = cli('add', '--roles', 'viewer', '--config', CONFIG);
  assert.is(r.status, 64);
  assert.match(r.stderr, 'ADDRESS is required');

  r = cli('set-roles', 'helpdesk@example.com', '--roles', 'admin,viewer', '--config', CONFIG);
  assert.is(r.status, 0, r.stderr);
  assert.match(readFileSync(USERS, 'utf8'), 'roles: [admin, viewer]');
  r = cli('set-roles', 'nobody@example.com', '--roles', 'admin', '--config', CONFIG);
  assert.is(r.status, 64);

  r = cli('remove', 'helpdesk@example.com', '--config', CONFIG);
  assert.is(r.status, 0, r.stderr);
  r = cli('remove', 'helpdesk@example.com', '--config', CONFIG);
  assert.is(r.status, 64);
  assert.match(r.stderr, 'not in');
  assert.equal(readUsersFile(USERS).users.map((u) => u.address), ['ops@example.com']);
});

function otpauthSecret(stdout: string): string {
  const uri = stdout.match(/otpauth:\/\/totp\/\S+/)?.[0];
  assert.ok(uri, stdout);
  assert.match(uri!, /^otpauth:\/\/totp\/mailagent:ops%40example\.com\?secret=[A-Z2-7]+&issuer=mailagent$/);
  const url = new URL(uri!);
  assert.is(url.searchParams.get('issuer'), 'mailagent');
  return url.searchParams.get('secret')!;
}

test('cli: enroll-totp stores the secret 0600, shows the URI and a QR code once; a code from it verifies', () => {
  let r = cli('enroll-totp', 'OPS@example.com', '--config', CONFIG);
  assert.is(r.status, 0, r.stderr);
  const secret = otpauthSecret(r.stdout);
  assert.is(readTotpSecret(SECRETS, 'ops@example.com'), secret);
  assert.is(mode(SECRETS), 0o600);
  assert.match(r.stdout, /[▀▄█]{10}/); // the QR code
  assert.match(r.stdout, `stored in ${SECRETS}`);
  assert.not.match(r.stderr, secret);
  const token = generateSync({ secret });
  assert.ok(verifySync({ secret: readTotpSecret(SECRETS, 'ops@example.com')!, token }).valid);

  r = cli('enroll-totp', 'ops@example.com', '--config', CONFIG);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, 'replaced');
  const second = otpauthSecret(r.stdout);
  assert.is.not(second, secret);
  assert.is(readTotpSecret(SECRETS, 'ops@example.com'), second);

  const j = cli('list', '--json', '--config', CONFIG);
  assert.is(JSON.parse(j.stdout)[0].totp, true);

  r = cli('enroll-totp', 'nobody@example.com', '--config', CONFIG);
  assert.is(r.status, 64);
  assert.match(r.stderr, 'not on the allow list');

  chmodSync(SECRETS, 0o644);
  r = cli('enroll-totp', 'ops@example.com', '--config', CONFIG);
  assert.is(r.status, 78);
  assert.match(r.stderr, 'chmod 600');
  assert.is(readTotpSecret((chmodSync(SECRETS, 0o600), SECRETS), 'ops@example.com'), second);
});

test('cli: set-pgp-key validates the key, copies it to keys/ and the copy verifies signatures', async () => {
  const { privateKey, publicKey } = await openpgp.generateKey({ type: 'ecc', userIDs: [{ email: 'ops@example.com' }], format: 'armored' });
  writeFileSync(join(CLI_DIR, 'ops-public.asc'), publicKey);
  writeFileSync(join(CLI_DIR, 'ops-private.asc'), privateKey);
  writeFileSync(join(CLI_DIR, 'garbage.asc'), 'hello');

  let r = cli('set-pgp-key', 'ops@example.com', '--key-file', 'ops-private.asc', '--config', CONFIG);
  assert.is(r.status, 64);
  assert.match(r.stderr, 'PRIVATE key');
  r = cli('set-pgp-key', 'ops@example.com', '--key-file', 'garbage.asc', '--config', CONFIG);
  assert.is(r.status, 64);
  assert.match(r.stderr, 'not an armored OpenPGP public key');
  r = cli('set-pgp-key', 'ops@example.com', '--key-file', 'missing.asc', '--config', CONFIG);
  assert.is(r.status, 64);
  r = cli('set-pgp-key', 'ops@example.com', '--config', CONFIG);
  assert.is(r.status, 64);
  assert.not.ok(existsSync(join(CLI_DIR, 'keys')));

  r = cli('set-pgp-key', 'ops@example.com', '--key-file', 'ops-public.asc', '--config', CONFIG);
  assert.is(r.status, 0, r.stderr);
  const copy = join(CLI_DIR, 'keys', 'ops@example.com.asc');
  assert.ok(existsSync(copy));
  assert.match(readFileSync(USERS, 'utf8'), 'pgpKey: keys/ops@example.com.asc');
  assert.equal(readUsersFile(USERS).users[0].pgpKey, copy);
  assert.is(JSON.parse(cli('list', '--json', '--config', CONFIG).stdout)[0].pgp, true);

  const key = await openpgp.readPrivateKey({ armoredKey: privateKey });
  const signed = await openpgp.sign({ message: await openpgp.createCleartextMessage({ text: 'db tables' }), signingKeys: key });
  const mail = Buffer.from(`From: ops@example.com\r\nSubject: x\r\n\r\n${signed.replace(/\r?\n/g, '\r\n')}`);
  const v = await verifyPgp(mail, readFileSync(copy, 'utf8'));
  assert.ok(v.ok);
});

test('cli: remove also removes the TOTP secret', () => {
  let r = cli('add', 'temp@example.com', '--roles', 'viewer', '--config', CONFIG);
  assert.is(r.status, 0, r.stderr);
  r = cli('enroll-totp', 'temp@example.com', '--config', CONFIG);
  assert.is(r.status, 0, r.stderr);
  assert.ok(readTotpSecret(SECRETS, 'temp@example.com'));
  r = cli('remove', 'temp@example.com', '--config', CONFIG);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, 'and its TOTP secret');
  assert.is(readTotpSecret(SECRETS, 'temp@example.com'), undefined);
  assert.ok(readTotpSecret(SECRETS, 'ops@example.com'));
});

test('cli: inline users in the config: list works, edits exit 78 saying to move them to a usersFile', () => {
  const inline = join(CLI_DIR, 'inline.json');
  writeFileSync(inline, JSON.stringify({ ...exampleConfigObject(CLI_DIR), secretsFile: 'secrets.json' }, null, 2));
  const l = cli('list', '--json', '--config', inline);
  assert.is(l.status, 0, l.stderr);
  assert.equal(JSON.parse(l.stdout).map((u: { address: string }) => u.address), ['ops@example.com', 'helpdesk@example.com']);
  const r = cli('add', 'x@example.com', '--roles', 'viewer', '--config', inline);
  assert.is(r.status, 78);
  assert.match(r.stderr, 'inline');
  assert.match(r.stderr, 'usersFile');
});

test('cli: a missing users file is created by add; list then works', () => {
  const cfg = join(CLI_DIR, 'fresh.json');
  writeCliConfig(cfg, (raw) => (raw.usersFile = 'fresh/users.yml'));
  mkdirSync(join(CLI_DIR, 'fresh'));
  let r = cli('list', '--config', cfg);
  assert.is(r.status, 78);
  assert.match(r.stderr, 'file not found');
  r = cli('add', 'ops@example.com', '--roles', 'admin', '--config', cfg);
  assert.is(r.status, 0, r.stderr);
  assert.is(mode(join(CLI_DIR, 'fresh', 'users.yml')), 0o644);
  r = cli('list', '--config', cfg);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, 'ops@example.com');
});

test('cli: a users file the agent would refuse (undefined role) can be repaired with users', () => {
  const cfg = join(CLI_DIR, 'repair.json');
  writeCliConfig(cfg, (raw) => (raw.usersFile = 'repair.yaml'));
  writeFileSync(join(CLI_DIR, 'repair.yaml'), 'users:\n  - address: ops@example.com\n    roles: [ghost]\n  - address: old@example.com\n    roles: [ghost]\n');
  let r = cli('list', '--config', cfg);
  assert.is(r.status, 78);
  assert.match(r.stderr, 'role "ghost" is not defined');
  r = cli('set-roles', 'ops@example.com', '--roles', 'admin', '--config', cfg);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, 'still has 1 problem'); // old@example.com
  r = cli('remove', 'old@example.com', '--config', cfg);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, '');
  r = cli('list', '--json', '--config', cfg);
  assert.is(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).map((u: { roles: string[] }) => u.roles), [['admin']]);
});

test('cli: problems elsewhere in the config are not bypassed', () => {
  const cfg = join(CLI_DIR, 'broken.json');
  writeCliConfig(cfg, (raw) => (raw.agent.address = 'Agent <agent@example.com>'));
  const r = cli('add', 'x@example.com', '--roles', 'admin', '--config', cfg);
  assert.is(r.status, 78);
  assert.match(r.stderr, 'agent.address');
});

test('cli: no temp files were left behind', () => {
  assert.equal(tempFiles(CLI_DIR), []);
  if (existsSync(join(CLI_DIR, 'keys'))) assert.equal(tempFiles(join(CLI_DIR, 'keys')), []);
});

test.after(cleanup);
test.run();
