import { createHash, randomBytes } from 'node:crypto';
import type { Client, SFTPWrapper, Stats } from 'ssh2';
import type { SftpShare } from '../../config/types';
import { resolveSecret } from '../../config/secrets';
import { CommandError } from '../../core/errors';
import type { Entry, ShareAdapter } from './adapter';

/** The fingerprint `ssh-keygen -lf` prints for a host key: SHA256 of the key blob, base64 without padding. */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

const S_IFMT = 0o170000;
const TYPES: Record<number, Entry['type']> = { 0o100000: 'file', 0o040000: 'directory', 0o120000: 'symlink' };

function entryOf(name: string, attrs: Stats): Entry {
  return { name, type: TYPES[attrs.mode & S_IFMT] ?? 'other', size: Number(attrs.size), modified: new Date(attrs.mtime * 1000), mode: attrs.mode & 0o7777 };
}

const shown = (parts: string[]) => `"${parts.join('/') || '.'}"`;

/**
 * A folder on an SFTP host (ssh2). The host key must match the pinned fingerprint, or nothing
 * is sent, not even the user name. Paths are resolved by the server (realpath) and must stay
 * under the share's resolved root; SFTP has no O_NOFOLLOW, so unlike a local share, a symlink
 * the remote side swaps in between that check and the use is not caught: give the account no
 * write access to the share beyond what mail may do.
 */
export class SftpShareAdapter implements ShareAdapter {
  private connection?: Promise<{ client: Client; sftp: SFTPWrapper; root: string }>;

  /** `where` names the share's config section in messages (services.files.shares.<name>.sftp). */
  constructor(private readonly cfg: SftpShare, private readonly configFile: string, private readonly where: string) {}

  private secret(key: 'privateKey' | 'passphrase'): string | undefined {
    const ref = this.cfg[key];
    if (!ref) return undefined;
    try {
      return resolveSecret(ref, this.configFile, `${this.where}.${key}`);
    } catch (err) {
      throw new CommandError((err as Error).message);
    }
  }

  private timeoutMs(): number {
    return (this.cfg.timeoutSeconds ?? 20) * 1000;
  }

  private connect(): Promise<{ client: Client; sftp: SFTPWrapper; root: string }> {
    this.connection ??= this.open().catch((err) => {
      this.connection = undefined;
      throw err;
    });
    return this.connection;
  }

  private async open(): Promise<{ client: Client; sftp: SFTPWrapper; root: string }> {
    const { Client: SshClient } = require('ssh2') as typeof import('ssh2');
    const { host, port = 22, user } = this.cfg;
    const privateKey = this.secret('privateKey');
    const passphrase = this.secret('passphrase');
    const client = new SshClient();
    let offered: string | undefined;
    const sftp = await new Promise<SFTPWrapper>((resolve, reject) => {
      client.on('error', (err) => {
        reject(offered && offered !== this.cfg.hostKey
          ? new CommandError(`the host key of ${host}:${port} is ${offered}, not the pinned ${this.cfg.hostKey}: refused, nothing was sent`)
          : new CommandError(`cannot reach the SFTP server ${host}:${port} (${(err as Error).message})`));
      });
      client.on('ready', () => client.sftp((err, s) => (err ? reject(new CommandError(`SFTP is not available on ${host}:${port} (${err.message})`)) : resolve(s))));
      try {
        client.connect({
          host,
          port,
          username: user,
          privateKey,
          passphrase,
          readyTimeout: this.timeoutMs(),
          hostVerifier: (key: Buffer) => {
            offered = fingerprint(key);
            return offered === this.cfg.hostKey;
          },
        });
      } catch (err) {
        // ssh2 reads the key before it connects: a key it cannot use is a config problem.
        reject(new CommandError(`${this.where}.privateKey cannot be used (${(err as Error).message})`));
      }
    });
    const root = await this.call<string>((done) => sftp.realpath(this.cfg.path, done), `the share's folder ${this.cfg.path}`);
    return { client, sftp, root };
  }

  /** One SFTP request with the timeout; a server error becomes a clear command error. */
  private call<T>(start: (done: (err: Error | null | undefined, value: T) => void) => void, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new CommandError(`${what}: no answer from the SFTP server in ${this.timeoutMs() / 1000} s`)), this.timeoutMs());
      start((err, value) => {
        clearTimeout(timer);
        if (err) reject(new CommandError(`${what}: ${describe(err)}`));
        else resolve(value);
      });
    });
  }

  /** The server-resolved path, which must be the root or below it. */
  private async inside(parts: string[]): Promise<{ sftp: SFTPWrapper; path: string }> {
    const { sftp, root } = await this.connect();
    const path = await this.call<string>((done) => sftp.realpath([root, ...parts].join('/'), done), shown(parts));
    if (path !== root && !path.startsWith(`${root === '/' ? '' : root}/`)) throw new CommandError(`${shown(parts)} leads outside the share (a symbolic link): refused`);
    return { sftp, path };
  }

  async list(parts: string[]): Promise<Entry[]> {
    const { sftp, path } = await this.inside(parts);
    const entries = await this.call<{ filename: string; attrs: Stats }[]>((done) => sftp.readdir(path, done), shown(parts));
    return entries.map((e) => entryOf(e.filename, e.attrs)).sort((a, b) => a.name.localeCompare(b.name));
  }

  async stat(parts: string[]): Promise<Entry> {
    const { sftp, path } = await this.inside(parts.slice(0, -1));
    const name = parts[parts.length - 1] ?? '.';
    return entryOf(name, await this.call<Stats>((done) => sftp.lstat(`${path}/${name}`, done), shown(parts)));
  }

  async read(parts: string[], maxBytes: number, target: string): Promise<Entry> {
    const { sftp, path } = await this.inside(parts.slice(0, -1));
    const file = `${path}/${parts[parts.length - 1]}`;
    const attrs = await this.call<Stats>((done) => sftp.lstat(file, done), shown(parts));
    const entry = entryOf(parts[parts.length - 1], attrs);
    if (entry.type === 'symlink') throw new CommandError(`${shown(parts)} is a symbolic link: not followed`);
    if (entry.type !== 'file') throw new CommandError(`${shown(parts)} is not a file`);
    if (entry.size > maxBytes) throw new CommandError(`${shown(parts)} is ${entry.size} bytes; files up to ${maxBytes} bytes can be sent by mail`);
    await this.call<void>((done) => sftp.fastGet(file, target, (err) => done(err, undefined)), shown(parts));
    return entry;
  }

  async write(parts: string[], source: string, overwrite: boolean): Promise<number> {
    const { sftp, path } = await this.inside(parts.slice(0, -1));
    const name = parts[parts.length - 1];
    const target = `${path}/${name}`;
    const existing = await new Promise<Stats | undefined>((resolve) => sftp.lstat(target, (err, attrs) => resolve(err ? undefined : attrs)));
    if (existing && !overwrite) throw new CommandError(`${shown(parts)} exists already: add overwrite=yes to replace it`);
    if (existing && (existing.mode & S_IFMT) !== 0o100000) throw new CommandError(`${shown(parts)} exists and is not a file: not replaced`);
    const temp = `${path}/.${name.slice(0, 200)}.mailagent-${randomBytes(6).toString('hex')}.tmp`;
    await this.call<void>((done) => sftp.fastPut(source, temp, (err) => done(err, undefined)), shown(parts));
    try {
      // Plain SFTP rename refuses an existing target; OpenSSH's posix-rename replaces it.
      if (overwrite) await this.call<void>((done) => sftp.ext_openssh_rename(temp, target, (err) => done(err, undefined)), shown(parts));
      else await this.call<void>((done) => sftp.rename(temp, target, (err) => done(err, undefined)), shown(parts));
    } catch (err) {
      await new Promise<void>((resolve) => sftp.unlink(temp, () => resolve()));
      throw err;
    }
    const written = await this.call<Stats>((done) => sftp.lstat(target, done), shown(parts));
    return Number(written.size);
  }

  async remove(parts: string[]): Promise<void> {
    const { sftp, path } = await this.inside(parts.slice(0, -1));
    const file = `${path}/${parts[parts.length - 1]}`;
    const attrs = await this.call<Stats>((done) => sftp.lstat(file, done), shown(parts));
    if ((attrs.mode & S_IFMT) !== 0o100000) throw new CommandError(`${shown(parts)} is not a file: only files are removed`);
    await this.call<void>((done) => sftp.unlink(file, (err) => done(err, undefined)), shown(parts));
  }

  async close(): Promise<void> {
    const open = this.connection;
    this.connection = undefined;
    if (open) await open.then(({ client }) => client.end(), () => undefined);
  }
}

/** SFTP status codes as words (ssh2 puts the code on the error). */
function describe(err: Error): string {
  const code = (err as Error & { code?: number }).code;
  const words: Record<number, string> = { 2: 'does not exist', 3: 'permission denied', 4: 'failed on the server' };
  return (code !== undefined && Object.hasOwn(words, code) && words[code]) || err.message;
}
