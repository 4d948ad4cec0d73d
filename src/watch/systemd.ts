import { execFile } from 'node:child_process';
import type { Logger } from '../core/log';

/**
 * systemd's service notification protocol (sd_notify): READY=1 once the agent has synced,
 * WATCHDOG=1 only while its IMAP loop is healthy (so that `WatchdogSec=` restarts an agent that
 * hangs), and a STATUS= line for `systemctl status`. Node cannot send on a unix datagram socket,
 * so each message goes through `systemd-notify`, which waits until systemd has taken it (a
 * barrier) — the unit needs `NotifyAccess=all` because the sender is that helper process.
 */
export class SystemdNotifier {
  private warned = false;

  private constructor(
    private readonly log: Logger,
    /** From WATCHDOG_USEC, when systemd watches this process. */
    readonly watchdogMs: number | undefined,
    private readonly program: string,
  ) {}

  /** A notifier when systemd started us with NOTIFY_SOCKET (Type=notify); undefined otherwise. */
  static fromEnv(env: NodeJS.ProcessEnv, log: Logger, program = 'systemd-notify'): SystemdNotifier | undefined {
    if (!env.NOTIFY_SOCKET) return undefined;
    const usec = Number(env.WATCHDOG_USEC);
    // WATCHDOG_PID names the process systemd watches; another one (a child of ours) must not ping.
    const forUs = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === process.pid;
    return new SystemdNotifier(log, forUs && usec > 0 ? usec / 1000 : undefined, program);
  }

  ready(status: string): Promise<void> {
    return this.send(['READY=1', `STATUS=${status}`]);
  }

  /** WATCHDOG=1 with the current status; call only while healthy. */
  alive(status: string): Promise<void> {
    return this.send(['WATCHDOG=1', `STATUS=${status}`]);
  }

  status(status: string): Promise<void> {
    return this.send([`STATUS=${status}`]);
  }

  stopping(): Promise<void> {
    return this.send(['STOPPING=1', 'STATUS=stopping']);
  }

  private send(assignments: string[]): Promise<void> {
    return new Promise((resolve) => {
      execFile(this.program, assignments, { timeout: 5000, env: process.env }, (err) => {
        if (err && !this.warned) {
          // Without it systemd never hears READY=1: the unit times out, which says enough; say why once.
          this.log.warn('systemd notification failed', { program: this.program, err });
          this.warned = true;
        }
        resolve();
      });
    });
  }
}
