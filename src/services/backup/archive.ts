import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { Pack, Parser } from 'tar';
import type { ReadEntry, WriteEntry } from 'tar';
import { CommandError } from '../../core/errors';

/**
 * The archive layer of the backup service: one gzip-compressed tar file per run, streamed from
 * the source trees to the destination with bounded memory, its SHA-256 in a `sha256sum` sidecar,
 * and retention per target.
 *
 * Layout of a destination directory, for a target "etc":
 *   etc-20261206T045959Z.tar.gz          the archive (final name only once complete and synced)
 *   etc-20261206T045959Z.tar.gz.sha256   "<hex>  etc-20261206T045959Z.tar.gz\n"
 *   etc-20261206T045959Z-1.tar.gz        a second run in the same second
 *   .etc-20261206T045959Z.tar.gz.partial while being written
 */

export interface BackupSpec {
  /** Names the archives: letters, digits, '-' and '_'. */
  target: string;
  /** Absolute paths of files or directories; each is stored under its own name (like `tar -C parent name`). */
  sources: string[];
  /**
   * Glob patterns on the entry name (the path relative to the source's parent, e.g. "etc/ssh/moduli").
   * A pattern without '/' matches the last component at any depth ("*.tmp", ".git"); one with '/'
   * matches the whole name, '**' standing for any number of components ("etc/cache/**", "**\/.git").
   * A trailing '/' limits a pattern to directories. An excluded directory is not descended.
   */
  exclude: string[];
  /** Absolute path of an existing directory. */
  destination: string;
  /** gzip level, 0 (store) to 9. */
  level: number;
}

export interface ArchiveInfo {
  /** UTC time of the run, second precision, plus "-N" for further runs in the same second. Sortable per target. */
  id: string;
  /** Absolute path of the archive. */
  file: string;
  /** The time in the id. */
  createdAt: Date;
  bytes: number;
  /** From the sidecar; undefined when it is missing or unreadable. */
  sha256?: string;
}

export interface BackupResult extends ArchiveInfo {
  sha256: string;
  /** Regular files archived (a hard link to a file already in the archive counts too). */
  files: number;
  /** All entries: files, directories, symbolic links, hard links. */
  entries: number;
  /** Sockets, FIFOs and device nodes met in the trees: never archived. */
  skipped: number;
  durationMs: number;
  /** Ids removed by retention. */
  pruned: string[];
  /** Set when the backup succeeded but retention failed (the archive is complete and kept). */
  pruneError?: string;
}

export interface BackupOptions {
  /** The time the id is made of. */
  now: Date;
  /** Archives of the target to keep after a good run, the new one included (at least 1). */
  keep: number;
  signal?: AbortSignal;
  /**
   * Called synchronously with the absolute path of each file, directory or link right before it
   * is archived (after the exclude rules). For progress reporting; may throw to fail the run.
   */
  onEntry?: (absolutePath: string) => void;
}

export interface ArchiveEntry {
  path: string;
  /** The tar entry type: 'File', 'Directory', 'SymbolicLink', 'Link' (hard link), ... */
  type: string;
  size: number;
  /** Target of a symbolic or hard link. */
  linkpath?: string;
}

export interface VerifyResult {
  ok: boolean;
  entries: number;
  problems: string[];
  /** The digest of the file as it is now. */
  sha256: string;
}

// Read size for source files and write batch for the archive: what bounds memory per run.
const CHUNK = 256 * 1024;
const TARGET = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const ID = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z(?:-([1-9]\d{0,5}))?$/;
const SHA256_LINE = /^([0-9a-f]{64}) [ *](.+)\n?$/;
const MAX_SUFFIX = 999;

const fail = (message: string) => new CommandError(message.replace(/\s*\n\s*/g, ' '));
const codeOf = (err: unknown) => (err as NodeJS.ErrnoException | undefined)?.code;
const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));
const archiveName = (target: string, id: string) => `${target}-${id}.tar.gz`;
const sidecarOf = (file: string) => `${file}.sha256`;
const sidecarTempOf = (file: string) => path.join(path.dirname(file), `.${path.basename(file)}.sha256.partial`);

function checkTarget(target: string): void {
  if (typeof target !== 'string' || !TARGET.test(target)) {
    throw fail(`invalid backup target name ${JSON.stringify(target)} (letters, digits, '-' and '_', at most 64)`);
  }
}

function checkAbsoluteDir(destination: string): void {
  if (typeof destination !== 'string' || !path.isAbsolute(destination)) {
    throw fail(`backup destination must be an absolute path: ${JSON.stringify(destination)}`);
  }
}

/** 2026-12-06T04:59:59.123Z → 20261206T045959Z */
export function formatId(now: Date, suffix = 0): string {
  const base = now.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
  return suffix ? `${base}-${suffix}` : base;
}

function parseId(id: string): { time: Date; suffix: number } | undefined {
  const m = ID.exec(id);
  if (!m) return undefined;
  const time = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
  if (Number.isNaN(time.getTime()) || formatId(time) !== id.replace(/-\d+$/, '')) return undefined;
  return { time, suffix: m[7] ? +m[7] : 0 };
}

/** Newest first; "-N" suffixes are later runs in the same second (compared as numbers, so -10 > -9). */
function compareIdsDesc(a: string, b: string): number {
  const pa = parseId(a)!;
  const pb = parseId(b)!;
  return pb.time.getTime() - pa.time.getTime() || pb.suffix - pa.suffix;
}

// ---------------------------------------------------------------------------------------------
// Exclude patterns

const GLOBSTAR = Symbol('**');
type Segment = RegExp | typeof GLOBSTAR;

function segmentRegex(glob: string, pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < glob.length) re += escapeRegex(glob[++i]);
    else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) throw fail(`invalid exclude pattern ${JSON.stringify(pattern)}: unclosed [`);
      let body = glob.slice(i + 1, close);
      const negate = body[0] === '!' || body[0] === '^';
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = close;
    } else re += escapeRegex(c);
  }
  return new RegExp(`^${re}$`, 's');
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function matchSegments(pattern: Segment[], parts: string[], i = 0, j = 0): boolean {
  while (i < pattern.length) {
    const seg = pattern[i];
    if (seg === GLOBSTAR) {
      if (i === pattern.length - 1) return true;
      for (let k = j; k <= parts.length; k++) if (matchSegments(pattern, parts, i + 1, k)) return true;
      return false;
    }
    if (j >= parts.length || !seg.test(parts[j])) return false;
    i++;
    j++;
  }
  return j === parts.length;
}

/**
 * Compiles exclude patterns (see BackupSpec.exclude) into a test on an entry name
 * ("src/a/b.tmp", no leading "./", no trailing "/"). Own matcher: path.matchesGlob is
 * experimental on Node 20 and prints a warning on first use.
 */
export function excludeMatcher(patterns: string[]): (name: string, isDirectory: boolean) => boolean {
  const compiled = patterns.map((raw) => {
    if (typeof raw !== 'string' || raw.trim() === '' || raw.includes('\0')) throw fail(`invalid exclude pattern ${JSON.stringify(raw)}`);
    let p = raw.replace(/^(\.\/)+/, '');
    const dirOnly = p.endsWith('/');
    p = p.replace(/\/+$/, '');
    if (p === '') throw fail(`invalid exclude pattern ${JSON.stringify(raw)}`);
    const anchored = p.includes('/');
    const segments: Segment[] = p.split(/\/+/).map((s) => (s === '**' ? GLOBSTAR : segmentRegex(s, raw)));
    return { dirOnly, anchored, segments };
  });
  return (name, isDirectory) => {
    const parts = name.split('/');
    return compiled.some(({ dirOnly, anchored, segments }) => {
      if (dirOnly && !isDirectory) return false;
      return anchored ? matchSegments(segments, parts) : matchSegments(segments, parts.slice(-1));
    });
  };
}

// ---------------------------------------------------------------------------------------------
// Error messages

function sourceError(err: unknown): CommandError {
  if (err instanceof CommandError) return err;
  const e = err as NodeJS.ErrnoException;
  const where = e?.path ?? 'a source file';
  switch (e?.code) {
    case 'ENOENT':
      return fail(`source ${where} vanished during the backup`);
    case 'EACCES':
    case 'EPERM':
      return fail(`cannot read ${where}: permission denied`);
    case 'EOF':
      return fail(`source ${where} changed size during the backup`);
    case 'ENOTDIR':
    case 'EISDIR':
      return fail(`source ${where} changed type during the backup`);
    case 'EMFILE':
    case 'ENFILE':
      return fail(`cannot read ${where}: too many open files`);
    case 'EIO':
      return fail(`cannot read ${where}: input/output error (EIO)`);
    default:
      return fail(`cannot read ${where}: ${messageOf(err)}`);
  }
}

function destinationError(err: unknown, destination: string): CommandError {
  if (err instanceof CommandError) return err;
  switch (codeOf(err)) {
    case 'ENOSPC':
      return fail(`destination ${destination} is full (ENOSPC)`);
    case 'EDQUOT':
      return fail(`destination ${destination} is over its disk quota (EDQUOT)`);
    case 'EROFS':
      return fail(`destination ${destination} is read-only (EROFS)`);
    case 'EACCES':
    case 'EPERM':
      return fail(`cannot write to destination ${destination}: permission denied`);
    case 'EIO':
      return fail(`cannot write to destination ${destination}: input/output error (EIO)`);
    default:
      return fail(`cannot write to destination ${destination}: ${messageOf(err)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Creating

interface Source {
  absolute: string;
  /** The entry name: the last component. */
  name: string;
}

function checkSpec(spec: BackupSpec, opts: BackupOptions): Source[] {
  checkTarget(spec.target);
  checkAbsoluteDir(spec.destination);
  if (!Number.isInteger(spec.level) || spec.level < 0 || spec.level > 9) throw fail(`gzip level must be 0 to 9, not ${spec.level}`);
  if (!Number.isInteger(opts.keep) || opts.keep < 1) throw fail(`keep must be a whole number of at least 1, not ${opts.keep}`);
  if (!(opts.now instanceof Date) || Number.isNaN(opts.now.getTime())) throw fail('invalid backup time');
  if (!Array.isArray(spec.sources) || spec.sources.length === 0) throw fail(`backup ${spec.target} has no sources`);
  const sources = spec.sources.map((s): Source => {
    if (typeof s !== 'string' || !path.isAbsolute(s)) throw fail(`backup source must be an absolute path: ${JSON.stringify(s)}`);
    const absolute = path.resolve(s);
    if (absolute === '/') throw fail('the root directory cannot be a backup source; name the directories under it');
    return { absolute, name: path.basename(absolute) };
  });
  // Entries are named by the last component: two sources with the same name, or one inside
  // another, would store the same entries twice.
  for (const a of sources) {
    for (const b of sources) {
      if (a === b) continue;
      if (a.name === b.name) throw fail(`backup sources ${a.absolute} and ${b.absolute} would both be stored as "${a.name}"`);
      if (b.absolute.startsWith(`${a.absolute}/`)) throw fail(`backup source ${b.absolute} is inside ${a.absolute}`);
    }
  }
  excludeMatcher(spec.exclude ?? []); // validates the patterns before anything is written
  return sources;
}

/** Opens the temporary file under the first free id: `now`, then `now-1`, `now-2`, ... */
async function reserveId(destination: string, target: string, now: Date): Promise<{ id: string; partial: string; handle: FileHandle }> {
  for (let suffix = 0; suffix <= MAX_SUFFIX; suffix++) {
    const id = formatId(now, suffix);
    const final = path.join(destination, archiveName(target, id));
    const taken = [final, sidecarOf(final), sidecarTempOf(final)];
    if ((await Promise.all(taken.map(exists))).some(Boolean)) continue;
    const partial = path.join(destination, `.${archiveName(target, id)}.partial`);
    try {
      // 'wx': a concurrent run that picked the same id fails here and moves on to the next.
      return { id, partial, handle: await fsp.open(partial, 'wx', 0o600) };
    } catch (err) {
      if (codeOf(err) === 'EEXIST') continue;
      throw destinationError(err, destination);
    }
  }
  throw fail(`too many backups of ${target} at ${formatId(now)}`);
}

async function exists(file: string): Promise<boolean> {
  try {
    await fsp.lstat(file);
    return true;
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return false;
    throw err;
  }
}

/** Writes everything it is given to the file, in batches (writev), short writes included. */
class FileSink extends Writable {
  constructor(
    private readonly handle: FileHandle,
    private readonly onError: (err: unknown) => Error,
  ) {
    super({ highWaterMark: CHUNK });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writeAll([chunk]).then(() => cb(), (err) => cb(this.onError(err)));
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.writeAll(chunks.map((c) => c.chunk)).then(() => cb(), (err) => cb(this.onError(err)));
  }

  private async writeAll(buffers: Buffer[]): Promise<void> {
    while (buffers.length) {
      const { bytesWritten } = await this.handle.writev(buffers);
      if (bytesWritten === 0) throw Object.assign(new Error('no progress writing the archive'), { code: 'EIO' });
      let left = bytesWritten;
      while (left > 0 && buffers.length) {
        if (buffers[0].length <= left) left -= buffers.shift()!.length;
        else {
          buffers[0] = buffers[0].subarray(left);
          left = 0;
        }
      }
    }
  }
}

/** Hashes and counts what passes through. */
function digestTap(): { tap: Transform; digest: () => string; bytes: () => number } {
  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  return { tap, digest: () => hash.digest('hex'), bytes: () => bytes };
}

/** A stat cache the Pack fills and the entry takes once: nothing kept per file after it is archived. */
class TakeOnceStatCache extends Map<string, Stats> {
  override get(key: string): Stats | undefined {
    const value = super.get(key);
    if (value !== undefined) super.delete(key);
    return value;
  }
}

/** The Pack stores each directory listing here; keep none, only sort it so archives are reproducible. */
class SortingReaddirCache extends Map<string, string[]> {
  override set(_key: string, entries: string[]): this {
    entries.sort();
    return this;
  }
}

const isSpecial = (st: Stats) => st.isSocket() || st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice();

async function removeQuietly(file: string | undefined): Promise<void> {
  if (file) await fsp.rm(file, { force: true }).catch(() => undefined);
}

/** Writes a new small file and fsyncs it before closing. */
async function writeSynced(file: string, text: string): Promise<void> {
  const handle = await fsp.open(file, 'wx', 0o644);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Archives the sources into `<destination>/<target>-<id>.tar.gz`, writes its digest, then applies
 * retention. Rejects with a one-line CommandError on any failure, leaving neither the archive nor
 * its sidecar nor the temporary file behind (and pruning nothing).
 */
export async function createBackup(spec: BackupSpec, opts: BackupOptions): Promise<BackupResult> {
  const started = performance.now();
  const sources = checkSpec(spec, opts);
  const { target, destination } = spec;
  const aborted = () => fail(`backup of ${target} aborted`);
  if (opts.signal?.aborted) throw aborted();

  let destStat: Stats;
  try {
    destStat = await fsp.stat(destination);
  } catch (err) {
    throw codeOf(err) === 'ENOENT' ? fail(`destination ${destination} does not exist`) : destinationError(err, destination);
  }
  if (!destStat.isDirectory()) throw fail(`destination ${destination} is not a directory`);
  for (const source of sources) {
    try {
      await fsp.lstat(source.absolute);
    } catch (err) {
      throw codeOf(err) === 'ENOENT' ? fail(`source ${source.absolute} does not exist`) : sourceError(err);
    }
  }

  const { id, partial, handle } = await reserveId(destination, target, opts.now);
  const file = path.join(destination, archiveName(target, id));
  const sidecar = sidecarOf(file);
  const sidecarTemp = sidecarTempOf(file);
  let open: FileHandle | undefined = handle;
  let renamed = false;
  let sidecarWritten = false;

  // The first failure wins; it stops the stream through this controller.
  let failure: Error | undefined;
  const controller = new AbortController();
  const failWith = (err: Error) => {
    if (!failure) {
      failure = err;
      controller.abort(err);
    }
  };
  const onAbort = () => failWith(aborted());
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  const isExcluded = excludeMatcher(spec.exclude ?? []);
  const statCache = new TakeOnceStatCache();
  // Paths the filter let through whose entry has not been written yet: must be empty at the end.
  const pending = new Set<string>();
  let files = 0;
  let entries = 0;
  let skipped = 0;

  /** The entry name of an absolute path inside one of the sources: "<source name>/rest". */
  const entryName = (absolute: string): string => {
    for (const s of sources) {
      if (absolute === s.absolute) return s.name;
      if (absolute.startsWith(`${s.absolute}/`)) return s.name + absolute.slice(s.absolute.length);
    }
    throw fail(`${absolute} is outside the backup sources`);
  };

  const filter = (relative: string, st: Stats | ReadEntry): boolean => {
    const absolute = path.resolve('/', relative);
    try {
      if (failure) return false;
      const stat = st as Stats;
      if (isSpecial(stat)) {
        skipped++;
        return false;
      }
      // Never archive the destination into itself (a source that contains it).
      if (stat.dev === destStat.dev && stat.ino === destStat.ino) return false;
      if (isExcluded(entryName(absolute), stat.isDirectory())) return false;
      opts.onEntry?.(absolute);
      if (failure) return false;
      pending.add(absolute);
      return true;
    } catch (err) {
      failWith(sourceError(err));
      return false;
    } finally {
      if (!pending.has(absolute)) statCache.delete(absolute);
    }
  };

  // One Pack for all sources, rooted at "/": each entry is renamed to "<source name>/..." as its
  // header is written, which gives every source its own parent directory like `tar -C`.
  const pack = new Pack({
    cwd: '/',
    portable: true,
    // Every warning is an error: nothing may be left out silently.
    strict: true,
    onwarn: (code: string, message: string) => failWith(fail(`backup of ${target} failed: ${code} ${message}`)),
    // One job at a time: at most one source file open, and its read buffer is the only one.
    jobs: 1,
    maxReadSize: CHUNK,
    statCache,
    readdirCache: new SortingReaddirCache(),
    filter,
    onWriteEntry: (entry: WriteEntry) => {
      try {
        pending.delete(entry.absolute);
        const name = entryName(entry.absolute);
        entry.path = entry.type === 'Directory' ? `${name}/` : name;
        // A hard link points at the first name of the file, given relative to "/".
        if (entry.type === 'Link' && entry.linkpath !== undefined) entry.linkpath = entryName(path.resolve('/', entry.linkpath));
        entries++;
        if (entry.type === 'File' || entry.type === 'Link') files++;
      } catch (err) {
        failWith(sourceError(err));
      }
    },
  });
  pack.on('error', (err: unknown) => failWith(sourceError(err)));

  const { tap, digest, bytes } = digestTap();
  try {
    for (const s of sources) pack.add(s.absolute.slice(1));
    pack.end();
    try {
      await pipeline(
        pack[Symbol.asyncIterator](),
        createGzip({ level: spec.level }),
        tap,
        new FileSink(handle, (err) => {
          const e = destinationError(err, destination);
          failWith(e);
          return e;
        }),
        { signal: controller.signal },
      );
    } catch (err) {
      throw failure ?? fail(`backup of ${target} failed: ${messageOf(err)}`);
    }
    if (failure) throw failure;
    const missed = pending.values().next();
    if (!missed.done) throw fail(`source ${missed.value} was not archived`);
    if (entries === 0) throw fail(`backup of ${target} archived nothing: every source is excluded`);

    const sha256 = digest();
    try {
      await handle.sync();
      open = undefined;
      await handle.close();
      // The digest first, so a complete archive never exists without it.
      await writeSynced(sidecarTemp, `${sha256}  ${path.basename(file)}\n`);
      if (opts.signal?.aborted) throw aborted();
      // The id was free when reserved; never replace what another writer put there since.
      if ((await exists(file)) || (await exists(sidecar))) throw fail(`${path.basename(file)} appeared in ${destination} during the backup`);
      await fsp.rename(sidecarTemp, sidecar);
      sidecarWritten = true;
      await fsp.rename(partial, file);
      renamed = true;
      await syncDirectory(destination);
    } catch (err) {
      throw destinationError(err, destination);
    }

    const result: BackupResult = {
      id,
      file,
      createdAt: parseId(id)!.time,
      bytes: bytes(),
      sha256,
      files,
      entries,
      skipped,
      durationMs: 0,
      pruned: [],
    };
    try {
      result.pruned = await prune(destination, target, opts.keep, id);
    } catch (err) {
      result.pruneError = messageOf(err);
    }
    result.durationMs = Math.round(performance.now() - started);
    return result;
  } catch (err) {
    failWith(err instanceof Error ? err : fail(String(err)));
    if (open) await open.close().catch(() => undefined);
    await removeQuietly(partial);
    await removeQuietly(sidecarTemp);
    if (sidecarWritten) await removeQuietly(sidecar);
    if (renamed) await removeQuietly(file);
    // Let the pack run out (the filter now refuses everything) so the file it has open is read
    // to its end and closed; its output goes nowhere.
    pack.on('data', () => undefined);
    pack.resume();
    throw err instanceof CommandError ? err : fail(messageOf(err));
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

// ---------------------------------------------------------------------------------------------
// Listing and retention

async function readSidecar(file: string): Promise<{ sha256?: string; problem?: string }> {
  let text: string;
  try {
    const handle = await fsp.open(sidecarOf(file), 'r');
    try {
      const buf = Buffer.alloc(512);
      const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
      text = buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return { problem: 'no digest recorded' };
    return { problem: `cannot read the digest record: ${messageOf(err)}` };
  }
  const m = SHA256_LINE.exec(text);
  if (!m) return { problem: `digest record ${sidecarOf(file)} is malformed` };
  if (m[2] !== path.basename(file)) return { problem: `digest record ${sidecarOf(file)} names ${m[2]}, not ${path.basename(file)}` };
  return { sha256: m[1] };
}

/**
 * The complete archives of a target, newest first (none when the destination does not exist).
 * Temporary files, other targets and other files are ignored.
 */
export async function listArchives(destination: string, target: string): Promise<ArchiveInfo[]> {
  checkTarget(target);
  checkAbsoluteDir(destination);
  // The id right after "<target>-": "etc-…" never matches "etc2-…" or "etc-old-…".
  const pattern = new RegExp(`^${target}-(\\d{8}T\\d{6}Z(?:-[1-9]\\d{0,5})?)\\.tar\\.gz$`);
  let names: string[];
  try {
    names = await fsp.readdir(destination);
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return []; // no destination yet: no archives
    throw fail(`cannot list destination ${destination}: ${messageOf(err)}`);
  }
  const found: ArchiveInfo[] = [];
  for (const name of names) {
    const m = pattern.exec(name);
    const parsed = m && parseId(m[1]);
    if (!m || !parsed) continue;
    const file = path.join(destination, name);
    let st: Stats;
    try {
      st = await fsp.lstat(file);
    } catch (err) {
      if (codeOf(err) === 'ENOENT') continue; // removed meanwhile
      throw err;
    }
    if (!st.isFile()) continue;
    const { sha256 } = await readSidecar(file);
    found.push({ id: m[1], file, createdAt: parsed.time, bytes: st.size, sha256 });
  }
  return found.sort((a, b) => compareIdsDesc(a.id, b.id));
}

async function prune(destination: string, target: string, keep: number, protect?: string): Promise<string[]> {
  if (!Number.isInteger(keep) || keep < 1) throw fail(`keep must be a whole number of at least 1, not ${keep}`);
  const archives = await listArchives(destination, target);
  // The archive just made stays even if the clock went back and older-looking ids exist.
  const ordered = protect ? [...archives.filter((a) => a.id === protect), ...archives.filter((a) => a.id !== protect)] : archives;
  const pruned: string[] = [];
  for (const archive of ordered.slice(keep)) {
    // The archive first: a sidecar without its archive is ignored by everything.
    await fsp.rm(archive.file, { force: true });
    await fsp.rm(sidecarOf(archive.file), { force: true });
    pruned.push(archive.id);
  }
  if (pruned.length) await syncDirectory(destination);
  return pruned;
}

/** Keeps the newest `keep` archives of the target (with their sidecars) and removes the rest; returns the removed ids. */
export async function pruneArchives(destination: string, target: string, keep: number): Promise<string[]> {
  return prune(destination, target, keep);
}

// ---------------------------------------------------------------------------------------------
// Reading back

/**
 * Reads an archive once from start to end: SHA-256 of the bytes, and gunzip + tar parse of every
 * entry (contents discarded). A damaged stream does not stop the digest, which covers the whole file.
 */
async function readArchive(file: string, onEntry: (entry: ReadEntry) => void): Promise<{ sha256: string; bytes: number; damage?: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  let damage: string | undefined;
  const gunzip = createGunzip();
  // Raw tar goes in (gunzip is ours): the parser's own decompression and its ratio limit, meant for
  // untrusted downloads, stay out of the way of highly compressible backups.
  const parser = new Parser({ strict: true, brotli: false, zstd: false, onReadEntry: (e: ReadEntry) => (onEntry(e), e.resume()) });

  let settle!: () => void;
  const parsed = new Promise<void>((resolve) => (settle = resolve));
  // Wakes the reading loop when it waits for gunzip to drain and the parse has broken off.
  let wake: (() => void) | undefined;
  const broken = (what: string) => (err: unknown) => {
    if (!damage) damage = `${what}: ${messageOf(err)}`;
    settle();
    wake?.();
  };
  gunzip.on('error', broken('gzip'));
  parser.on('error', broken('tar'));
  parser.on('end', () => settle());
  gunzip.on('data', (chunk: Buffer) => {
    if (damage) return;
    if (!parser.write(chunk) && !damage) {
      gunzip.pause();
      parser.once('drain', () => gunzip.resume());
    }
  });
  gunzip.on('end', () => (damage ? settle() : parser.end()));

  const handle = await fsp.open(file, 'r');
  try {
    for await (const chunk of handle.createReadStream({ highWaterMark: CHUNK, autoClose: false }) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      bytes += chunk.length;
      if (damage) continue;
      if (!gunzip.write(chunk)) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          gunzip.once('drain', resolve);
        });
        wake = undefined;
      }
    }
  } finally {
    await handle.close();
  }
  if (!damage) gunzip.end();
  await parsed;
  if (damage) gunzip.destroy();
  return { sha256: hash.digest('hex'), bytes, damage };
}

/** The entries of an archive, in order. Rejects when the archive cannot be read to its end. */
export async function archiveEntries(file: string): Promise<ArchiveEntry[]> {
  const list: ArchiveEntry[] = [];
  let result: Awaited<ReturnType<typeof readArchive>>;
  try {
    result = await readArchive(file, (e) => list.push({ path: e.path, type: e.type, size: e.size ?? 0, ...(e.linkpath ? { linkpath: e.linkpath } : {}) }));
  } catch (err) {
    throw fail(`cannot read archive ${file}: ${messageOf(err)}`);
  }
  if (result.damage) throw fail(`archive ${file} is damaged (${result.damage})`);
  return list;
}

/** Re-reads the whole archive: digest against the sidecar, and a full gunzip + tar listing. */
export async function verifyArchive(info: ArchiveInfo): Promise<VerifyResult> {
  const problems: string[] = [];
  const recorded = await readSidecar(info.file);
  if (recorded.problem) problems.push(recorded.problem);
  let entries = 0;
  let sha256 = '';
  try {
    const read = await readArchive(info.file, () => entries++);
    sha256 = read.sha256;
    if (recorded.sha256 && recorded.sha256 !== sha256) problems.push(`digest mismatch: recorded ${recorded.sha256}, file has ${sha256}`);
    if (read.damage) problems.push(`archive is truncated or damaged (${read.damage})`);
    else if (entries === 0) problems.push('archive has no entries');
  } catch (err) {
    problems.push(codeOf(err) === 'ENOENT' ? `archive ${info.file} is missing` : `cannot read archive ${info.file}: ${messageOf(err)}`);
  }
  return { ok: problems.length === 0, entries, problems, sha256 };
}
