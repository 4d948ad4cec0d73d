import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { CommandError } from '../../core/errors';
import type { Entry, ShareAdapter } from './adapter';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

/**
 * A local directory. Every operation opens what it works on and checks the opened descriptor,
 * not the path: /proc/self/fd/N names the very file or folder that was opened, so a symlink
 * swapped in between a check and the use cannot lead outside the share. The last component is
 * opened with O_NOFOLLOW (a symlink is never followed); folders on the way may be symlinks as
 * long as they resolve inside the share. Needs Linux (/proc).
 */
export class LocalShare implements ShareAdapter {
  private realRoot?: string;

  constructor(private readonly root: string) {}

  private rootPath(): string {
    if (!this.realRoot) {
      try {
        this.realRoot = fs.realpathSync(this.root);
      } catch (err) {
        throw new CommandError(`the share's folder is not available (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    }
    return this.realRoot;
  }

  /** Opens a path of the share and proves, on the descriptor, that it is inside the share. */
  private open(parts: string[], flags: number): number {
    const root = this.rootPath();
    let fd: number;
    try {
      fd = fs.openSync([root, ...parts].join('/'), flags | O_NOFOLLOW);
    } catch (err) {
      throw fileError(err, parts);
    }
    try {
      const real = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (real !== root && !real.startsWith(`${root}/`)) throw new CommandError(`${shown(parts)} leads outside the share (a symbolic link): refused`);
      return fd;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  private openDir(parts: string[]): number {
    return this.open(parts, O_RDONLY | O_DIRECTORY);
  }

  async list(parts: string[]): Promise<Entry[]> {
    const dir = this.openDir(parts);
    try {
      const base = `/proc/self/fd/${dir}`;
      return fs
        .readdirSync(base)
        .map((name) => entryOf(name, fs.lstatSync(`${base}/${name}`)))
        .sort((a, b) => a.name.localeCompare(b.name));
    } finally {
      fs.closeSync(dir);
    }
  }

  async stat(parts: string[]): Promise<Entry> {
    if (parts.length === 0) return entryOf('.', fs.statSync(this.rootPath()));
    const dir = this.openDir(parts.slice(0, -1));
    try {
      return entryOf(parts[parts.length - 1], lstatIn(dir, parts));
    } finally {
      fs.closeSync(dir);
    }
  }

  async read(parts: string[], maxBytes: number, target: string): Promise<Entry> {
    const fd = this.open(parts, O_RDONLY | O_NONBLOCK);
    try {
      const stat = fs.fstatSync(fd);
      if (!stat.isFile()) throw new CommandError(`${shown(parts)} is not a file`);
      if (stat.size > maxBytes) throw new CommandError(`${shown(parts)} is ${stat.size} bytes; files up to ${maxBytes} bytes can be sent by mail`);
      // Copied from the checked descriptor, never from the path again.
      copyFd(fd, target, maxBytes);
      return entryOf(parts[parts.length - 1], stat);
    } finally {
      fs.closeSync(fd);
    }
  }

  async write(parts: string[], source: string, overwrite: boolean): Promise<number> {
    const name = parts[parts.length - 1];
    const dir = this.openDir(parts.slice(0, -1));
    // Everything below goes through the opened folder: a folder swapped meanwhile is not written to.
    const inDir = (n: string) => `/proc/self/fd/${dir}/${n}`;
    const temp = `.${name.slice(0, 200)}.mailagent-${randomBytes(6).toString('hex')}.tmp`;
    try {
      try {
        const existing = fs.lstatSync(inDir(name));
        if (!overwrite) throw new CommandError(`${shown(parts)} exists already: add overwrite=yes to replace it`);
        if (!existing.isFile()) throw new CommandError(`${shown(parts)} exists and is not a file: not replaced`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err instanceof CommandError ? err : fileError(err, parts);
      }
      const bytes = copyInto(source, inDir(temp));
      try {
        if (overwrite) fs.renameSync(inDir(temp), inDir(name));
        else {
          // link() fails when the name exists: no file that appeared meanwhile is replaced.
          fs.linkSync(inDir(temp), inDir(name));
          fs.unlinkSync(inDir(temp));
        }
      } catch (err) {
        fs.rmSync(inDir(temp), { force: true });
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new CommandError(`${shown(parts)} exists already: add overwrite=yes to replace it`);
        throw fileError(err, parts);
      }
      fs.fsyncSync(dir);
      return bytes;
    } finally {
      fs.closeSync(dir);
    }
  }

  async remove(parts: string[]): Promise<void> {
    const dir = this.openDir(parts.slice(0, -1));
    try {
      const stat = lstatIn(dir, parts);
      if (stat.isDirectory()) throw new CommandError(`${shown(parts)} is a folder: only files are removed`);
      if (stat.isSymbolicLink()) throw new CommandError(`${shown(parts)} is a symbolic link: only files are removed`);
      fs.unlinkSync(`/proc/self/fd/${dir}/${parts[parts.length - 1]}`);
      fs.fsyncSync(dir);
    } catch (err) {
      throw err instanceof CommandError ? err : fileError(err, parts);
    } finally {
      fs.closeSync(dir);
    }
  }

  async close(): Promise<void> {}
}

function lstatIn(dir: number, parts: string[]): fs.Stats {
  try {
    return fs.lstatSync(`/proc/self/fd/${dir}/${parts[parts.length - 1]}`);
  } catch (err) {
    throw fileError(err, parts);
  }
}

/**
 * Copies an open file to `target` (created new, mode 0644, synced to disk) in 1 MiB slices; a file
 * that grew past `maxBytes` meanwhile is cut off there.
 */
function copyFd(input: number, target: string, maxBytes = Infinity): number {
  const output = fs.openSync(target, 'wx', 0o644);
  try {
    const chunk = Buffer.alloc(1 << 20);
    let total = 0;
    for (let n = fs.readSync(input, chunk); n > 0 && total < maxBytes; n = fs.readSync(input, chunk)) {
      const take = Math.min(n, maxBytes - total);
      fs.writeSync(output, chunk, 0, take);
      total += take;
    }
    fs.fsyncSync(output);
    return total;
  } finally {
    fs.closeSync(output);
  }
}

/** Copies the spooled attachment into the share under `target`. */
function copyInto(source: string, target: string): number {
  const input = fs.openSync(source, 'r');
  try {
    return copyFd(input, target);
  } finally {
    fs.closeSync(input);
  }
}

function entryOf(name: string, stat: fs.Stats): Entry {
  const type = stat.isFile() ? 'file' : stat.isDirectory() ? 'directory' : stat.isSymbolicLink() ? 'symlink' : 'other';
  return { name, type, size: stat.size, modified: stat.mtime, mode: stat.mode & 0o7777 };
}

const shown = (parts: string[]) => `"${parts.join('/') || '.'}"`;

function fileError(err: unknown, parts: string[]): CommandError {
  if (err instanceof CommandError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const what: Record<string, string> = {
    ENOENT: 'does not exist',
    ENOTDIR: 'is not a folder (or a folder on the way is not)',
    ELOOP: 'is a symbolic link: not followed',
    EACCES: 'is not accessible to the agent',
    EPERM: 'is not accessible to the agent',
    EISDIR: 'is a folder',
    ENOSPC: 'cannot be written: the disk is full',
    EROFS: 'cannot be written: read-only file system',
    ENAMETOOLONG: 'has a name that is too long',
  };
  return new CommandError(`${shown(parts)} ${(code && Object.hasOwn(what, code) && what[code]) || `cannot be used (${code ?? (err as Error).message})`}`);
}
