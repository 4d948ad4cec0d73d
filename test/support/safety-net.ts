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

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends a signal to a process that may already be gone. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

/** The last lines of a daemon's log, for an error message. */
export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return `(no ${file})`;
  }
}

/** Polls `check` (5 ms, doubling to 50 ms) until it holds; past the timeout, throws naming the harness and what it waited for. */
export async function waitFor(harness: string, what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, hint?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${harness}: timed out waiting for ${what}${hint ? `\n${hint()}` : ''}`);
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
}

/**
 * Processes of a test daemon living in `dir`: those whose environment carries `MARK=dir` (set when
 * it was started, inherited by re-exec'd children) or whose command line names the dir, plus all
 * their descendants. `extra` pids (a pid file's) count as roots too.
 */
export function markedProcesses(mark: string, dir: string, extra: (number | undefined)[] = []): number[] {
  const marker = `${mark}=${dir}\0`;
  const roots = new Set<number>(extra.filter((p): p is number => !!p && alive(p)));
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      (children.get(ppid) ?? children.set(ppid, []).get(ppid)!).push(pid);
      if (roots.has(pid)) continue;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      let env = '';
      try {
        env = readFileSync(`/proc/${pid}/environ`, 'utf8');
      } catch {
        // a kernel thread
      }
      if (cmd.includes(`${dir}/`) || env.includes(marker)) roots.add(pid);
    } catch {
      // gone
    }
  }
  const out = new Set<number>();
  const visit = (pid: number) => {
    if (out.has(pid)) return;
    out.add(pid);
    for (const c of children.get(pid) ?? []) visit(c);
  };
  for (const r of roots) visit(r);
  return [...out].filter(alive);
}

/** TERM every marked process of the daemon in `dir`, wait up to 2 s, then KILL what is left. Sync, for exit handlers. */
export function killMarkedSync(mark: string, dir: string, extra: (number | undefined)[]): void {
  const targets = markedProcesses(mark, dir, extra);
  for (const pid of targets) signal(pid, 'SIGTERM');
  const deadline = Date.now() + 2000;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < deadline && targets.some(alive)) Atomics.wait(nap, 0, 0, 20);
  for (const pid of [...targets, ...markedProcesses(mark, dir)]) if (alive(pid)) signal(pid, 'SIGKILL');
}
