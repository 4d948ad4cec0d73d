import * as fs from 'node:fs';
import { dirname } from 'node:path';

/**
 * Durable commits that neither block the event loop nor cost an fsync each. A store commits with
 * synchronous = NORMAL (WAL: atomic and visible to every process at once, but not yet on disk);
 * a commit that must survive a power loss then awaits flush(), which fsyncs the WAL file on
 * libuv's thread pool. Every commit that finished before an fsync began is on disk when it ends,
 * so the commits that arrive while one runs share the next one (group commit). A checkpoint that
 * copies the WAL into the database meanwhile syncs both files itself, so nothing slips between.
 */
export class WalFsync {
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  /** A WAL file created by this process needs its directory entry on disk once. */
  private directorySynced = false;

  constructor(
    private readonly databasePath: string,
    private readonly fsync: (path: string) => Promise<void> = fsyncPath,
  ) {}

  /** Resolves once every commit made before the call is on disk. */
  flush(): Promise<void> {
    if (this.next) return this.next;
    if (!this.running) return (this.running = this.fsyncWal());
    // The running fsync may have started before this commit: it needs the one after.
    this.next = this.running
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return (this.running = this.fsyncWal());
      });
    return this.next;
  }

  private async fsyncWal(): Promise<void> {
    try {
      await this.fsync(`${this.databasePath}-wal`);
      if (!this.directorySynced) {
        await this.fsync(dirname(this.databasePath));
        this.directorySynced = true;
      }
    } finally {
      this.running = undefined;
    }
  }
}

export function fsyncPath(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.open(path, 'r', (openErr, fd) => {
      if (openErr) return reject(openErr);
      fs.fsync(fd, (syncErr) => fs.close(fd, () => (syncErr ? reject(syncErr) : resolve())));
    });
  });
}
