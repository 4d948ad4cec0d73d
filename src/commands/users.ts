/**
 * `mailagent users list|add|remove|set-roles|enroll-totp|set-pgp-key`: manages the allow list in
 * the users file (`usersFile` in the config), TOTP secrets in the secrets file (`secretsFile`,
 * mode 0600) and users' OpenPGP keys (copied to `keys/` beside the users file).
 *
 * A TOTP secret is printed once, to the terminal, by enroll-totp; it never goes to a log, and no
 * command takes a secret as an argument.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, loadConfig, validateConfig } from '../config/load';
import type { Problem } from '../config/schema-check';
import type { Config, UserConfig } from '../config/types';
import { UsersFile, isBareAddress, readUsersFile, writeFileAtomic } from '../config/users-file';
import { readSecretsFile, removeTotpSecret, saveTotpSecret, totpEnrolled } from '../auth/secrets-file';
import { EXIT, UserError } from '../core/errors';
import { renderTable } from '../render/table';

export interface UsersArgs {
  action?: string;
  address?: string;
  roles?: string;
  'key-file'?: string;
  keyFile?: string;
  json?: boolean;
  name?: string;
  config?: string;
}

export interface UsersContext {
  config: Config;
  /** Absolute path of the users file; undefined when the users are inline in the config. */
  usersFile?: string;
  /** Absolute path of the TOTP secrets file. */
  secretsFile: string;
  /** Set when the config only loaded without its users file (missing or broken): what was wrong. */
  usersFileProblems?: Problem[];
}

const ISSUER = 'mailagent';

/** A string-valued key of the config, read defensively (older Config types lack it). */
function configString(config: Config, key: 'usersFile' | 'secretsFile'): string | undefined {
  const value = (config as unknown as Record<string, unknown>)[key];
  return typeof value === 'string' && value !== '' ? resolve(dirname(config.file), value) : undefined;
}

/** The raw object of a config file, read with the same loaders as loadConfig. */
async function rawConfig(file: string): Promise<Record<string, unknown>> {
  const { cosmiconfig } = require('cosmiconfig') as typeof import('cosmiconfig');
  const result = await cosmiconfig('mailagent', { cache: false }).load(file);
  return (result?.config ?? {}) as Record<string, unknown>;
}

/**
 * Finds the config the way every command does (--config, $MAILAGENT_CONFIG, search) and returns
 * where the users and secrets live. When the only problems are in the users file (missing,
 * unreadable, an undefined role, a duplicate…), the rest of the config is still loaded so that
 * `users` can create or repair the file; those problems are returned in usersFileProblems.
 */
export async function usersPaths(configFile?: string): Promise<UsersContext> {
  let config: Config;
  let usersFileProblems: Problem[] | undefined;
  try {
    config = await loadConfig(configFile);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const raw = await rawConfig(err.file).catch(() => undefined);
    const fromUsersFile = (p: Problem) => p.path.startsWith('usersFile (') || p.path.startsWith('users[');
    if (!raw || typeof raw.usersFile !== 'string' || raw.users !== undefined || !err.problems.every(fromUsersFile)) throw err;
    const rest: Record<string, unknown> = { ...raw, users: [] };
    delete rest.usersFile;
    config = validateConfig(rest, err.file); // throws if anything else is wrong after all
    config = { ...config, usersFile: resolve(dirname(err.file), raw.usersFile) } as Config;
    usersFileProblems = err.problems;
  }
  const usersFile = configString(config, 'usersFile');
  const secretsFile = configString(config, 'secretsFile');
  if (!secretsFile) {
    throw new UserError(`${config.file}: no secretsFile configured`, EXIT.CONFIG, 'add "secretsFile": "secrets.json" to the config');
  }
  return { config, usersFile, secretsFile, ...(usersFileProblems ? { usersFileProblems } : {}) };
}

function needAddress(argv: UsersArgs): string {
  const address = argv.address?.trim();
  if (!address) throw new UserError(`users ${argv.action}: an ADDRESS is required`, EXIT.USAGE, `mailagent users ${argv.action} ops@example.com`);
  if (!isBareAddress(address)) throw new UserError(`"${address}" is not a bare e-mail address (like ops@example.com, no name or <>)`, EXIT.USAGE);
  return address;
}

/** --roles a,b → checked against the roles defined in the config. */
function needRoles(argv: UsersArgs, config: Config): string[] {
  const defined = Object.keys(config.roles ?? {});
  const hint = `roles defined in ${config.file}: ${defined.join(', ') || '(none)'}`;
  const roles = (argv.roles ?? '').split(',').map((r) => r.trim()).filter(Boolean);
  if (!roles.length) throw new UserError(`users ${argv.action}: --roles is required (comma-separated)`, EXIT.USAGE, hint);
  const unknown = roles.filter((r) => !defined.includes(r));
  if (unknown.length) {
    throw new UserError(`role${unknown.length > 1 ? 's' : ''} not defined in the config: ${unknown.join(', ')}`, EXIT.USAGE, hint);
  }
  return roles;
}

/** The users file, or exit 78 when the allow list is inline in the config. */
function editableUsersFile(ctx: UsersContext): UsersFile {
  if (!ctx.usersFile) {
    throw new UserError(
      `the allow list is inline in ${ctx.config.file} (users); mailagent users edits a users file only`,
      EXIT.CONFIG,
      'move the users to a file, e.g. users.yaml with "users:" and the same entries, and replace "users" by "usersFile": "users.yaml" in the config',
    );
  }
  return UsersFile.open(ctx.usersFile);
}

/** Every user of the allow list, wherever it lives; exit 78 when the users file has problems. */
function allUsers(ctx: UsersContext): UserConfig[] {
  if (!ctx.usersFile) return ctx.config.users;
  const { users, problems } = readUsersFile(ctx.usersFile);
  if (problems.length) throw new ConfigError(ctx.usersFile, problems);
  if (ctx.usersFileProblems?.length) throw new ConfigError(ctx.config.file, ctx.usersFileProblems);
  return users;
}

function findUser(ctx: UsersContext, address: string): UserConfig {
  const users = ctx.usersFile ? UsersFile.open(ctx.usersFile).list() : ctx.config.users;
  const user = users.find((u) => u.address.toLowerCase() === address.toLowerCase());
  if (!user) throw new UserError(`${address} is not on the allow list`, EXIT.USAGE, "add it first: mailagent users add ADDRESS --roles …");
  return user;
}

/** After a change, what is still wrong with the file (so the agent would refuse the config). */
function warnRemaining(file: UsersFile, config: Config): void {
  const { users, problems } = file.check();
  const roles = config.roles ?? {};
  for (const u of users) {
    for (const r of u.roles) if (!(r in roles)) problems.push({ path: u.address, message: `role "${r}" is not defined in roles` });
  }
  if (!problems.length) return;
  process.stderr.write(
    `mailagent: warning: ${file.path} still has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n` +
      problems.map((p) => `  ${p.path}: ${p.message}\n`).join(''),
  );
}

function list(ctx: UsersContext, json: boolean): number {
  const users = allUsers(ctx);
  const enrolled = totpEnrolled(ctx.secretsFile);
  const rows = users.map((u) => ({
    address: u.address,
    name: u.name ?? null,
    roles: u.roles,
    evidence: u.evidence ?? null,
    totp: enrolled.has(u.address.toLowerCase()),
    pgp: Boolean(u.pgpKey),
  }));
  if (json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return EXIT.OK;
  }
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const table = renderTable(
    ['ADDRESS', 'NAME', 'ROLES', 'EVIDENCE', 'TOTP', 'PGP'],
    rows.map((r) => [r.address, r.name ?? '', r.roles.join(','), r.evidence ?? '-', yes(r.totp), yes(r.pgp)]),
  );
  process.stdout.write(`${table}\n`);
  if (!rows.length) process.stdout.write(`(no users in ${ctx.usersFile ?? ctx.config.file})\n`);
  return EXIT.OK;
}

async function setPgpKey(ctx: UsersContext, argv: UsersArgs, address: string): Promise<number> {
  const file = editableUsersFile(ctx);
  if (file.indexOf(address) < 0) throw new UserError(`${address} is not in ${file.path}`, EXIT.USAGE, "see 'mailagent users list'");
  const keyFile = argv['key-file'] ?? argv.keyFile;
  if (!keyFile) throw new UserError('users set-pgp-key: --key-file is required', EXIT.USAGE, 'export it with: gpg --armor --export ADDRESS > key.asc');
  let armored: string;
  try {
    armored = readFileSync(keyFile, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, EXIT.USAGE);
  }
  const openpgp = require('openpgp') as typeof import('openpgp');
  let key: import('openpgp').Key;
  try {
    key = await openpgp.readKey({ armoredKey: armored });
  } catch {
    throw new UserError(`${keyFile} is not an armored OpenPGP public key`, EXIT.USAGE, 'export it with: gpg --armor --export ADDRESS > key.asc');
  }
  if (key.isPrivate()) {
    throw new UserError(`${keyFile} holds a PRIVATE key; give the public key only`, EXIT.USAGE, 'gpg --armor --export ADDRESS > key.asc');
  }
  try {
    await key.verifyPrimaryKey();
    await key.getSigningKey();
  } catch (err) {
    throw new UserError(`${keyFile}: the key cannot verify signatures (${(err as Error).message})`, EXIT.USAGE, 'is it expired or revoked?');
  }
  const fingerprint = key.getFingerprint().toUpperCase();
  const uids = key.getUserIDs();
  if (!uids.some((uid) => uid.toLowerCase().includes(address.toLowerCase()))) {
    process.stderr.write(`mailagent: warning: no user ID of key ${fingerprint} mentions ${address} (${uids.join('; ') || 'none'})\n`);
  }
  const keysDir = join(dirname(file.path), 'keys');
  mkdirSync(keysDir, { recursive: true, mode: 0o755 });
  const target = join(keysDir, `${address.toLowerCase().replace(/[^a-z0-9@._+-]/g, '_')}.asc`);
  writeFileAtomic(target, key.armor(), 0o644);
  file.setPgpKey(address, target);
  process.stdout.write(`pgp key ${fingerprint} for ${address} stored in ${target}\n`);
  warnRemaining(file, ctx.config);
  return EXIT.OK;
}

function enrollTotp(ctx: UsersContext, address: string): number {
  const user = findUser(ctx, address);
  const { generateSecret, generateURI } = require('otplib') as typeof import('otplib');
  const secret = generateSecret();
  const { replaced } = saveTotpSecret(ctx.secretsFile, user.address, secret, new Date());
  const uri = generateURI({ issuer: ISSUER, label: user.address, secret });
  const qrcode = require('qrcode-terminal') as { generate(text: string, opts: { small: boolean }, cb: (qr: string) => void): void };
  let qr = '';
  qrcode.generate(uri, { small: true }, (out) => (qr = out));
  const out = process.stdout;
  if (replaced) out.write(`TOTP re-enrolment for ${user.address}: the previous secret is replaced and no longer works.\n`);
  out.write(`Scan this with an authenticator app, or enter the URI in it by hand:\n\n${qr}\n${uri}\n\n`);
  out.write(`The secret is stored in ${ctx.secretsFile} (mode 0600); it is shown only this once.\n`);
  return EXIT.OK;
}

export async function handler(argv: UsersArgs): Promise<number> {
  const action = argv.action ?? 'list';
  const ctx = await usersPaths(argv.config);
  switch (action) {
    case 'list':
      return list(ctx, Boolean(argv.json));
    case 'add': {
      const address = needAddress(argv);
      const file = editableUsersFile(ctx);
      const roles = needRoles(argv, ctx.config);
      const user = file.add(address, roles, argv.name);
      process.stdout.write(`added ${user.address} (${user.roles.join(', ')}) to ${file.path}\n`);
      warnRemaining(file, ctx.config);
      return EXIT.OK;
    }
    case 'remove': {
      const address = needAddress(argv);
      const file = editableUsersFile(ctx);
      readSecretsFile(ctx.secretsFile); // refuse before changing anything if it is unusable
      file.remove(address);
      const hadSecret = removeTotpSecret(ctx.secretsFile, address);
      process.stdout.write(`removed ${address} from ${file.path}${hadSecret ? ', and its TOTP secret' : ''}\n`);
      warnRemaining(file, ctx.config);
      return EXIT.OK;
    }
    case 'set-roles': {
      const address = needAddress(argv);
      const file = editableUsersFile(ctx);
      const roles = needRoles(argv, ctx.config);
      file.setRoles(address, roles);
      process.stdout.write(`${address}: roles ${roles.join(', ')}\n`);
      warnRemaining(file, ctx.config);
      return EXIT.OK;
    }
    case 'set-pgp-key':
      return setPgpKey(ctx, argv, needAddress(argv));
    case 'enroll-totp':
      return enrollTotp(ctx, needAddress(argv));
    default:
      throw new UserError(`unknown users action "${action}"`, EXIT.USAGE, 'one of: list, add, remove, set-roles, enroll-totp, set-pgp-key');
  }
}
