import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { processAlive } from '../core/processes';

/**
 * Where the attachments of one request are kept while it is handled: a private folder under the
 * state directory, named after the process that owns it. It is removed when the request is done
 * (also on error); folders of processes that no longer exist (a crash, kill -9) are removed by
 * the next `run` or `watch` that starts.
 */
export class Spool {
  private dir?: string;
  private files = 0;

  constructor(private readonly root: string) {}

  /** The spool of a config: `spool/` beside the state store's file. */
  static forState(statePath: string): Spool {
    return new Spool(join(dirname(statePath), 'spool'));
  }

  /** A new file name in this request's folder (created on first use, mode 0700). */
  nextFile(): string {
    if (!this.dir) {
      mkdirSync(this.root, { recursive: true, mode: 0o700 });
      this.dir = join(this.root, `${process.pid}-${randomBytes(6).toString('hex')}`);
      mkdirSync(this.dir, { mode: 0o700 });
    }
    return join(this.dir, `file-${++this.files}`);
  }

  remove(): void {
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}

/** Removes what crashed processes left in the spool; folders of live processes are theirs. */
export function sweepSpool(statePath: string): void {
  const root = join(dirname(statePath), 'spool');
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = Number(/^(\d+)-/.exec(entry)?.[1]);
    if (!pid || !processAlive(pid)) rmSync(join(root, entry), { recursive: true, force: true });
  }
}
