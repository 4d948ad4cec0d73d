/**
 * The allow list in its own file (`usersFile` in the config), YAML or JSON by extension:
 *
 *   users:
 *     - address: ops@example.com   # bare addr-spec, compared case-insensitively
 *       name: Operations           # optional
 *       roles: [admin]             # role names defined in the main config
 *       evidence: dkim             # optional baseline
 *       pgpKey: keys/ops.asc       # optional, relative to this file
 *
 * `readUsersFile` checks it and reports every problem with a JSON-style path; `UsersFile` edits
 * it for `mailagent users`, keeping comments and order in YAML, and writes atomically.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync, fchmodSync, fchownSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync,
  statSync, unlinkSync, writeSync,
} from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { Document, YAMLMap, YAMLSeq } from 'yaml';
import { EXIT, UserError } from '../core/errors';
import type { Problem } from './schema-check';
import type { Evidence, UserConfig } from './types';

export const EVIDENCE_VALUES: readonly Evidence[] = ['allowlist', 'dkim', 'totp', 'pgp', 'confirm', 'strong'];
const USER_KEYS = ['address', 'name', 'roles', 'evidence', 'pgpKey'];
const TOP_LEVEL_KEYS = ['users', '$schema'];
const ADDRESS = /^[^\s@<>",;\x00-\x1f\x7f]+@[^\s@<>",;\x00-\x1f\x7f]+$/;

/** A bare addr-spec with exactly one @: no display name, no angle brackets, no spaces. */
export function isBareAddress(value: unknown): value is string {
  return typeof value === 'string' && ADDRESS.test(value);
}

export type UsersFileFormat = 'yaml' | 'json';

/** `.json` is JSON; `.yaml`/`.yml` are YAML. Anything else is refused. */
export function usersFileFormat(path: string): UsersFileFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  throw new UserError(`${path}: a users file must end in .yaml, .yml or .json`, EXIT.CONFIG);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return JSON.stringify(value);
}

/** Checks the parsed content; keeps only entries without problems (the first of duplicates). */
function checkUsers(data: unknown, file: string): { users: UserConfig[]; problems: Problem[] } {
  const problems: Problem[] = [];
  const users: UserConfig[] = [];
  if (data === null || data === undefined) return { users, problems }; // an empty file: nobody
  if (typeof data !== 'object' || Array.isArray(data)) {
    return { users, problems: [{ path: '(top level)', message: `must be an object with a users list, not ${describe(data)}` }] };
  }
  const top = data as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (!TOP_LEVEL_KEYS.includes(key)) problems.push({ path: key, message: 'unknown key (expected users)' });
  }
  if (!('users' in top)) {
    problems.push({ path: 'users', message: 'is required' });
    return { users, problems };
  }
  if (top.users === null) return { users, problems }; // `users:` with every entry commented out
  if (!Array.isArray(top.users)) {
    problems.push({ path: 'users', message: `must be a list, not ${describe(top.users)}` });
    return { users, problems };
  }
  const seen = new Map<string, number>();
  top.users.forEach((entry: unknown, i: number) => {
    const at = `users[${i}]`;
    const before = problems.length;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      problems.push({ path: at, message: `must be an object with address and roles, not ${describe(entry)}` });
      return;
    }
    const u = entry as Record<string, unknown>;
    for (const key of Object.keys(u)) {
      if (!USER_KEYS.includes(key)) problems.push({ path: `${at}.${key}`, message: `unknown key (expected one of ${USER_KEYS.join(', ')})` });
    }
    if (u.address === undefined) problems.push({ path: `${at}.address`, message: 'is required' });
    else if (!isBareAddress(u.address)) {
      problems.push({ path: `${at}.address`, message: `${describe(u.address)} is not a bare e-mail address (addr-spec), no display name` });
    } else {
      const lower = u.address.toLowerCase();
      if (seen.has(lower)) problems.push({ path: `${at}.address`, message: `duplicate of users[${seen.get(lower)}]` });
      else seen.set(lower, i);
    }
    if (u.name !== undefined && typeof u.name !== 'string') problems.push({ path: `${at}.name`, message: `must be a string, not ${describe(u.name)}` });
    if (u.roles === undefined) problems.push({ path: `${at}.roles`, message: 'is required (a list of role names)' });
    else if (!Array.isArray(u.roles)) problems.push({ path: `${at}.roles`, message: `must be a list of role names, not ${describe(u.roles)}` });
    else {
      u.roles.forEach((role: unknown, j: number) => {
        if (typeof role !== 'string' || role.trim() === '') {
          problems.push({ path: `${at}.roles[${j}]`, message: `must be a non-empty role name, not ${describe(role)}` });
        }
      });
    }
    if (u.evidence !== undefined && !EVIDENCE_VALUES.includes(u.evidence as Evidence)) {
      problems.push({ path: `${at}.evidence`, message: `${describe(u.evidence)} is not one of ${EVIDENCE_VALUES.join(', ')}` });
    }
    let pgpKey: string | undefined;
    if (u.pgpKey !== undefined) {
      if (typeof u.pgpKey !== 'string' || u.pgpKey === '') {
        problems.push({ path: `${at}.pgpKey`, message: `must be the path of an armored public key file, not ${describe(u.pgpKey)}` });
      } else {
        pgpKey = resolve(dirname(file), u.pgpKey);
        let isFile = false;
        try {
          isFile = statSync(pgpKey).isFile();
        } catch { /* reported below */ }
        if (!isFile) problems.push({ path: `${at}.pgpKey`, message: `key file not found: ${pgpKey}` });
      }
    }
    if (problems.length > before) return;
    const user: UserConfig = { address: u.address as string, roles: (u.roles as string[]).slice() };
    if (typeof u.name === 'string') user.name = u.name;
    if (u.evidence !== undefined) user.evidence = u.evidence as Evidence;
    if (pgpKey) user.pgpKey = pgpKey;
    users.push(user);
  });
  return { users, problems };
}

function parseProblem(err: unknown): Problem {
  return { path: '(top level)', message: `cannot parse: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}` };
}

/** Parses `text` as the given format; a parse error is a problem, not an exception. */
function parseText(text: string, format: UsersFileFormat): { data?: unknown; problem?: Problem } {
  if (text.trim() === '') return { data: null };
  if (format === 'json') {
    try {
      return { data: JSON.parse(text) };
    } catch (err) {
      return { problem: parseProblem(err) };
    }
  }
  const YAML = require('yaml') as typeof import('yaml');
  const doc = YAML.parseDocument(text, { prettyErrors: true });
  if (doc.errors.length) return { problem: parseProblem(doc.errors[0]) };
  try {
    return { data: doc.toJS({ maxAliasCount: 100 }) };
  } catch (err) {
    return { problem: parseProblem(err) };
  }
}

/**
 * Reads and checks the users file. Returns the valid users (pgpKey made absolute, relative to
 * the users file) and every problem, each with a JSON-style path such as `users[2].roles`.
 * Roles are not checked against the config here: load.ts does that for inline and file users.
 */
export function readUsersFile(path: string): { users: UserConfig[]; problems: Problem[] } {
  let format: UsersFileFormat;
  try {
    format = usersFileFormat(path);
  } catch (err) {
    return { users: [], problems: [{ path: '(top level)', message: (err as Error).message }] };
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const message = e.code === 'ENOENT' ? `file not found: ${path}` : `cannot read ${path}: ${e.message}`;
    return { users: [], problems: [{ path: '(top level)', message }] };
  }
  const parsed = parseText(text, format);
  if (parsed.problem) return { users: [], problems: [parsed.problem] };
  return checkUsers(parsed.data, path);
}

// ---------------------------------------------------------------------------------------------
// Atomic writes

/**
 * Replaces `path` with `data` so that a reader sees either the old or the new file, never a
 * partial one: a temp file in the same directory, written, fsynced, renamed over the original.
 * The mode is the original's (or `defaultMode`), set explicitly so the umask does not change it;
 * when run as root the original's owner is kept, so that the agent's account can still read it.
 * A symlink is followed: its target is replaced, the link stays.
 */
export function writeFileAtomic(path: string, data: string | Buffer, defaultMode = 0o644): void {
  let target = path;
  try {
    target = realpathSync(path);
  } catch { /* does not exist yet */ }
  let previous: { mode: number; uid: number; gid: number } | undefined;
  try {
    previous = statSync(target);
  } catch { /* new file */ }
  const mode = previous ? previous.mode & 0o7777 : defaultMode;
  const tmp = join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      fchmodSync(fd, mode);
      if (previous && process.getuid?.() === 0 && (previous.uid !== 0 || previous.gid !== 0)) fchownSync(fd, previous.uid, previous.gid);
      const buffer = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      let written = 0;
      while (written < buffer.length) written += writeSync(fd, buffer, written, buffer.length - written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch { /* already gone */ }
    throw err;
  }
  // Make the rename itself durable; not every file system allows fsync on a directory.
  try {
    const dirFd = openSync(dirname(target), 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch { /* best effort */ }
}

// ---------------------------------------------------------------------------------------------
// Editing

function cleanRoles(roles: readonly string[]): string[] {
  const out = roles.map((r) => (typeof r === 'string' ? r.trim() : ''));
  if (out.length === 0) throw new UserError('at least one role is required', EXIT.USAGE);
  const bad = out.findIndex((r) => r === '');
  if (bad >= 0) throw new UserError('role names must not be empty', EXIT.USAGE);
  return [...new Set(out)];
}

function checkAddress(address: string): string {
  const a = typeof address === 'string' ? address.trim() : '';
  if (!isBareAddress(a)) {
    throw new UserError(`"${address}" is not a bare e-mail address (like ops@example.com, no name or <>)`, EXIT.USAGE);
  }
  return a;
}

const YAML_OUTPUT = { lineWidth: 0, flowCollectionPadding: false } as const;
const NEW_YAML_HEADER = ' mailagent allow list: who may send commands (edit by hand or with `mailagent users`)';

/**
 * The users file opened for editing. Every change is checked, then written at once (atomically);
 * YAML keeps its comments and order, JSON is written with 2-space indentation.
 * A missing file is created by the first change (mode 0644).
 */
export class UsersFile {
  private constructor(
    readonly path: string,
    readonly format: UsersFileFormat,
    private yaml: Document | undefined,
    private json: Record<string, unknown> | undefined,
    /** False until the file exists on disk. */
    public exists: boolean,
  ) {}

  /** Opens the file; a missing one is an empty list. Unparsable content is refused (exit 78). */
  static open(path: string): UsersFile {
    const abs = resolve(path);
    const format = usersFileFormat(abs);
    let text = '';
    let exists = true;
    try {
      text = readFileSync(abs, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'ENOENT') throw new UserError(`cannot read ${abs}: ${e.message}`, EXIT.CONFIG);
      exists = false;
    }
    const parsed = parseText(text, format);
    if (parsed.problem) throw new UserError(`${abs}: ${parsed.problem.message}`, EXIT.CONFIG, 'fix the file by hand first');
    const data = parsed.data;
    if (data !== null && (typeof data !== 'object' || Array.isArray(data))) {
      throw new UserError(`${abs}: must be an object with a users list`, EXIT.CONFIG, 'fix the file by hand first');
    }
    const users = (data as Record<string, unknown> | null)?.users;
    if (users !== undefined && users !== null && !Array.isArray(users)) {
      throw new UserError(`${abs}: users must be a list`, EXIT.CONFIG, 'fix the file by hand first');
    }
    if (format === 'json') return new UsersFile(abs, format, undefined, (data as Record<string, unknown>) ?? {}, exists);
    const YAML = require('yaml') as typeof import('yaml');
    const doc = YAML.parseDocument(text);
    if (doc.contents === null) doc.commentBefore = doc.commentBefore ?? NEW_YAML_HEADER;
    return new UsersFile(abs, format, doc, undefined, exists);
  }

  /** The current content as text, exactly what save() writes. */
  toString(): string {
    if (this.yaml) return this.yaml.toString(YAML_OUTPUT);
    return `${JSON.stringify(this.json, null, 2)}\n`;
  }

  /** Users and problems of the current content (as readUsersFile would report them once saved). */
  check(): { users: UserConfig[]; problems: Problem[] } {
    return checkUsers(this.yaml ? this.yaml.toJS() : this.json, this.path);
  }

  /** The valid users, pgpKey absolute. */
  list(): UserConfig[] {
    return this.check().users;
  }

  private entries(): unknown[] {
    if (this.yaml) {
      const seq = this.yaml.get('users') as YAMLSeq | null | undefined;
      return seq && typeof seq === 'object' && 'items' in seq ? seq.items : [];
    }
    const users = this.json!.users;
    return Array.isArray(users) ? users : [];
  }

  /** Index of the entry with this address (case-insensitive), or -1. */
  indexOf(address: string): number {
    const wanted = address.trim().toLowerCase();
    return this.entries().findIndex((entry) => {
      const value = this.yaml
        ? (entry as YAMLMap | null)?.get?.('address')
        : (entry as Record<string, unknown> | null)?.address;
      return typeof value === 'string' && value.toLowerCase() === wanted;
    });
  }

  private mustFind(address: string): number {
    const i = this.indexOf(address);
    if (i < 0) throw new UserError(`${address} is not in ${this.path}`, EXIT.USAGE, "see 'mailagent users list'");
    return i;
  }

  private flowSeq(values: string[]): YAMLSeq {
    const seq = this.yaml!.createNode(values) as YAMLSeq;
    seq.flow = true;
    return seq;
  }

  /** Adds a user at the end of the list. Refuses an invalid address or one already listed. */
  add(address: string, roles: readonly string[], name?: string): UserConfig {
    const addr = checkAddress(address);
    const clean = cleanRoles(roles);
    if (this.indexOf(addr) >= 0) throw new UserError(`${addr} is already in ${this.path}`, EXIT.USAGE, "use 'mailagent users set-roles' to change its roles");
    const trimmedName = name?.trim() || undefined;
    if (this.yaml) {
      const doc = this.yaml;
      const entry = doc.createNode(trimmedName ? { address: addr, name: trimmedName } : { address: addr }) as YAMLMap;
      entry.set('roles', this.flowSeq(clean));
      const seq = doc.get('users') as YAMLSeq | null | undefined;
      if (seq && typeof seq === 'object' && 'items' in seq && seq.items.length > 0) seq.items.push(entry);
      else {
        // Missing, null (`users:`) or an empty `[]`: start a block list.
        const fresh = doc.createNode([]) as YAMLSeq;
        fresh.items.push(entry);
        if (doc.contents === null) doc.set('users', fresh);
        else doc.setIn(['users'], fresh);
      }
    } else {
      const entry: Record<string, unknown> = { address: addr };
      if (trimmedName) entry.name = trimmedName;
      entry.roles = clean;
      if (!Array.isArray(this.json!.users)) this.json!.users = [];
      (this.json!.users as unknown[]).push(entry);
    }
    this.save();
    return { address: addr, ...(trimmedName ? { name: trimmedName } : {}), roles: clean };
  }

  /** Removes the user (comments attached to its entry go with it). */
  remove(address: string): void {
    const i = this.mustFind(address);
    if (this.yaml) this.yaml.deleteIn(['users', i]);
    else (this.json!.users as unknown[]).splice(i, 1);
    this.save();
  }

  /** Replaces the user's roles; a YAML list keeps its style and trailing comment. */
  setRoles(address: string, roles: readonly string[]): void {
    const i = this.mustFind(address);
    const clean = cleanRoles(roles);
    if (this.yaml) {
      const current = this.yaml.getIn(['users', i, 'roles'], true) as YAMLSeq | undefined;
      if (current && typeof current === 'object' && 'items' in current && Array.isArray(current.items)) {
        current.items = (this.yaml.createNode(clean) as YAMLSeq).items;
      } else this.yaml.setIn(['users', i, 'roles'], this.flowSeq(clean));
    } else {
      (this.json!.users as Record<string, unknown>[])[i].roles = clean;
    }
    this.save();
  }

  /**
   * Points the user's pgpKey at `keyPath`: written relative to the users file when the key is in
   * its folder (or below), absolute otherwise. The key file itself is not checked here.
   */
  setPgpKey(address: string, keyPath: string): void {
    const i = this.mustFind(address);
    const abs = resolve(keyPath);
    const rel = relative(dirname(this.path), abs);
    const stored = rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel.split(sep).join('/') : abs;
    if (this.yaml) this.yaml.setIn(['users', i, 'pgpKey'], stored);
    else (this.json!.users as Record<string, unknown>[])[i].pgpKey = stored;
    this.save();
  }

  /** Writes the current content atomically (0644 for a new file, else the file's own mode). */
  save(): void {
    writeFileAtomic(this.path, this.toString(), 0o644);
    this.exists = true;
  }
}
