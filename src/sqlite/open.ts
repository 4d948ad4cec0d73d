import type BetterSqlite3 from 'better-sqlite3';
import * as fs from 'node:fs';
import { homedir, tmpdir, userInfo } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { EXIT, UserError } from '../core/errors';

/**
 * The one way to open a SQLite database. better-sqlite3 is loaded on first use (never on the
 * start-up path of `--help`). Inside the single-executable build the native addon is not on disk:
 * it travels as the SEA asset below, is copied once to a private per-user cache file named by its
 * hash, and dlopen()ed from there. Everywhere else (tsx, tests) the package loads it as usual.
 */

/** Asset key; build.mjs uses the same name. */
const SQLITE_ASSET = 'better_sqlite3.node';
/** SHA-256 of that asset, computed by build.mjs (hashing 2 MB at every start would cost ~4 ms). */
declare const __SQLITE_ADDON_SHA256__: string | undefined;

type DatabaseConstructor = typeof BetterSqlite3;

let Database: DatabaseConstructor | undefined;
/** The addon's exports when running as the SEA binary; undefined when the package finds it itself. */
let nativeBinding: object | undefined;
let cachedVersion: string | undefined;

export function openSqlite(file: string, options?: BetterSqlite3.Options): BetterSqlite3.Database {
  if (!Database) {
    const ctor = require('better-sqlite3') as DatabaseConstructor;
    nativeBinding = isSea() ? loadAddonFromSea() : undefined;
    Database = ctor;
  }
  if (nativeBinding === undefined) return new Database(file, options);
  // @types/better-sqlite3 only knows the string form; the package also takes the addon object.
  return new Database(file, { ...options, nativeBinding } as unknown as BetterSqlite3.Options);
}

/**
 * A state file shared by processes (`run` from the MTA, the watch agent): private folder, WAL so
 * readers do not block the writer, waits up to 10 s for a lock, then `prepare` sets up the schema.
 * Any failure is a temporary one (exit 75: the MTA keeps the message).
 */
export function openStateFile(path: string, what: string, prepare: (db: BetterSqlite3.Database) => void): BetterSqlite3.Database {
  const deadline = Date.now() + 10_000;
  for (;;) {
    let db: BetterSqlite3.Database | undefined;
    try {
      fs.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      db = openSqlite(path, { timeout: 10_000 });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      prepare(db);
      return db;
    } catch (err) {
      db?.close();
      // Two processes opening a new file at once: switching it to WAL can fail with SQLITE_BUSY at
      // once, without the busy timeout; the other one finishes within moments.
      if ((err as { code?: string }).code === 'SQLITE_BUSY' && Date.now() < deadline) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
        continue;
      }
      throw new UserError(`${what} ${path} is not usable: ${(err as Error).message}`, EXIT.TEMPFAIL);
    }
  }
}

/** SQLite library version, e.g. "3.50.4". */
export function sqliteVersion(): string {
  if (cachedVersion === undefined) {
    const db = openSqlite(':memory:');
    try {
      cachedVersion = (db.prepare('select sqlite_version() as v').get() as { v: string }).v;
    } finally {
      db.close();
    }
  }
  return cachedVersion;
}

function isSea(): boolean {
  try {
    return (require('node:sea') as typeof import('node:sea')).isSea();
  } catch {
    return false; // node:sea appeared in Node 20.12
  }
}

function loadAddonFromSea(): object {
  const sea = require('node:sea') as typeof import('node:sea');
  // The raw asset is the executable's own mapped memory: read it, never write to it.
  const bytes = Buffer.from(sea.getRawAsset(SQLITE_ASSET) as ArrayBuffer);
  const hash = (typeof __SQLITE_ADDON_SHA256__ === 'string' ? __SQLITE_ADDON_SHA256__ : sha256(bytes)).slice(0, 20);
  const name = `better_sqlite3-${process.platform}-${process.arch}-${hash}.node`;

  const problems: string[] = [];
  for (const dir of cacheDirs()) {
    let file: string;
    try {
      ensurePrivateDir(dir);
      file = materialize(dir, name, bytes);
    } catch (err) {
      problems.push(`${dir}: ${(err as Error).message}`);
      continue;
    }
    const mod = { exports: {} as object };
    try {
      process.dlopen(mod, file);
      return mod.exports;
    } catch (err) {
      // e.g. a cache on a noexec mount: try the next place.
      problems.push(`${file}: ${(err as Error).message}`);
    }
  }
  throw new UserError(
    `cannot load the SQLite engine bundled in this executable:\n  ${problems.join('\n  ')}`,
    EXIT.TEMPFAIL,
    'point XDG_CACHE_HOME at a private directory you own (mode 0700) on a filesystem that allows executables',
  );
}

function sha256(bytes: Buffer): string {
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  return createHash('sha256').update(bytes).digest('hex');
}

/** Where the addon may be unpacked, best first. */
function cacheDirs(): string[] {
  const dirs: string[] = [];
  const xdg = process.env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) dirs.push(join(xdg, 'mailagent'));
  let home = '';
  try {
    home = homedir();
  } catch {
    // no home directory (some service accounts): fall through to tmp
  }
  if (home && isAbsolute(home)) dirs.push(join(home, '.cache', 'mailagent'));
  let who: string | number = process.getuid?.() ?? '';
  if (who === '') {
    try {
      who = userInfo().username;
    } catch {
      who = 'user';
    }
  }
  dirs.push(join(tmpdir(), `mailagent-${who}`));
  return [...new Set(dirs)];
}

/**
 * Creates `dir` (mode 0700) if needed and refuses it unless it is a real directory owned by us and
 * not writable by group or others: in a shared tmp dir somebody else could otherwise pre-create
 * it and plant a library for us to load.
 */
function ensurePrivateDir(dir: string): void {
  makeDirs(dir);
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new Error('not a directory (or a symbolic link)');
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new Error(`owned by uid ${st.uid}, not by us (uid ${uid})`);
  if (process.platform !== 'win32' && (st.mode & 0o022) !== 0) {
    throw new Error(`writable by others (mode ${(st.mode & 0o777).toString(8)})`);
  }
}

/**
 * mkdir -p with mode 0700 for every directory it creates. Not `{ recursive: true }`: Node's loops
 * forever when a parent refuses with ENOENT (e.g. HOME=/proc, seen with some service accounts).
 */
function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    try {
      fs.mkdirSync(d, { mode: 0o700 });
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') break;
      if (code !== 'ENOENT' || dirname(d) === d) throw err;
      missing.push(d);
    }
  }
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

/** Returns the path of a file in `dir` holding exactly `bytes`, writing it atomically if needed. */
function materialize(dir: string, name: string, bytes: Buffer): string {
  const file = join(dir, name);
  try {
    const st = fs.lstatSync(file);
    const uid = process.getuid?.();
    if (st.isFile() && st.size === bytes.length && (uid === undefined || st.uid === uid)) {
      if (fs.readFileSync(file).equals(bytes)) return file;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const { randomBytes } = require('node:crypto') as typeof import('node:crypto');
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    fs.writeFileSync(tmp, bytes, { mode: 0o700, flag: 'wx' });
    fs.renameSync(tmp, file); // atomic: concurrent runs each rename a complete copy
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  return file;
}
