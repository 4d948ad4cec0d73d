import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';

// One safety net for every private server a test starts (mail stack, sshd): a failing or
// interrupted test never leaves a daemon behind. Each server registers how to kill itself
// synchronously under a key (its temp dir) and unregisters when it stops normally; servers of a
// test process that was killed outright are reaped by the next start.

const live = new Map<string, () => void>();
let installed = false;

function killAll(): void {
  for (const kill of [...live.values()]) {
    try {
      kill();
    } catch {
      /* best effort */
    }
  }
  live.clear();
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Prepended and self-removing; the signal is raised again with its default action once no one
    // else listens, so the exit status stays right.
    const onSignal = () => {
      killAll();
      process.removeListener(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.prependListener(sig, onSignal);
  }
}

export function registerDaemon(key: string, killSync: () => void): void {
  install();
  live.set(key, killSync);
}

export function unregisterDaemon(key: string): void {
  live.delete(key);
}

export function readPid(file: string): number | undefined {
  try {
    const pid = parseInt(readFileSync(file, 'utf8').trim(), 10);
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** True for a running process; a zombie (nobody reaps orphans in some containers) counts as gone. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e: any) {
    return e.code === 'EPERM';
  }
  // A zombie still answers kill(0); treat it as gone.
  try {
    return !/^\S+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * rm -rf that tolerates files vanishing under it (a dying daemon, or another process reaping the
 * same dir), which makes a single rmSync throw ENOENT halfway.
 */
export function removeDir(dir: string): void {
  for (let attempt = 1; ; attempt++) {
    try {
      rmSync(dir, { recursive: true, force: true });
      return;
    } catch (e) {
      if (attempt >= 5) throw e;
    }
  }
}

/**
 * Stops (`kill`) and removes the temp dirs named `prefix…` whose owning test process (its pid in
 * `ownerFile`) is gone: it was SIGKILLed, say, and its own safety net never ran.
 */
export function reapStale(prefix: string, ownerFile: string, kill: (dir: string) => void): void {
  let entries: string[] = [];
  try {
    entries = readdirSync('/tmp');
  } catch {
    return;
  }
  for (const e of entries) {
    if (!e.startsWith(basename(prefix))) continue;
    const dir = join('/tmp', e);
    const owner = readPid(join(dir, ownerFile));
    if (owner === undefined || alive(owner)) continue;
    // Another test process may be reaping the same dir right now: both doing it is harmless.
    try {
      kill(dir);
    } catch {
      /* gone meanwhile */
    }
    removeDir(dir);
  }
}
