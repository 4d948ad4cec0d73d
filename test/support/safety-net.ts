// One safety net for every private server a test starts (mail stack, sshd): a failing or
// interrupted test never leaves a daemon behind. Each server registers how to kill itself
// synchronously under a key (its temp dir) and unregisters when it stops normally.

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
