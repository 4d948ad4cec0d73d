import type { Config } from '../../config/types';
import { openJobsStore, type JobsStore } from '../../state/jobs-store';
import { convertArgs, ownValue } from '../args';
import { formatTime, nextFiring } from './cron';
import { startJob } from './runner';

type Log = (level: 'debug' | 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

/** Catching up after a long pause runs a job once, not once per missed firing; this bounds the search. */
const MAX_MISSED = 10_000;

export interface Scheduler {
  /** SIGHUP: later checks and firings use this config; running jobs and the store are kept. */
  reload(config: Config): void;
  /** No more firings; waits for running scheduled jobs until `deadline` (epoch ms) at most. */
  stop(deadline?: number): Promise<void>;
}

/**
 * Fires the schedules kept in the jobs store, for `watch`. Every second it looks for firings due
 * since its last look, claims each in the store (so that of several agents exactly one runs it)
 * and starts the job, recorded in the run log with who = "schedule". Firings missed while no
 * agent was running are not made up; several missed during one pause run the job once.
 * It never throws: problems go to `log`, and the next check tries again.
 */
export function startScheduler(opts: {
  config: Config;
  /** Unique per agent process. */
  owner: string;
  /** Injectable clock for tests. */
  now?: () => Date;
  log: Log;
  /** Pause between checks (default 1000 ms). */
  intervalMs?: number;
}): Scheduler {
  const { owner, log } = opts;
  let config = opts.config;
  const now = opts.now ?? (() => new Date());
  const intervalMs = opts.intervalMs ?? 1000;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let checking: Promise<void> = Promise.resolve();
  let store: JobsStore | undefined;
  let lastCheck = now();
  const running = new Map<string, Promise<unknown>>();
  const warned = new Set<string>();

  const warnOnce = (key: string, message: string, fields: Record<string, unknown>) => {
    if (warned.has(key)) return;
    warned.add(key);
    log('warn', message, fields);
  };

  async function fire(store: JobsStore, job: string, scheduledAt: Date): Promise<void> {
    const spec = ownValue(config.services.jobs?.jobs, job);
    if (!spec) {
      log('warn', `schedule of job ${job} ignored: the job is not in the config`, { job });
      return;
    }
    const defaults = convertArgs({}, spec.params ?? {});
    if (!defaults.ok) {
      log('error', `job ${job} cannot run on its schedule: ${defaults.problems.join('; ')}`, { job });
      return;
    }
    const started = await startJob({ config, store, name: job, given: {}, values: defaults.args, who: 'schedule', now });
    log('info', `job ${job} started by its schedule`, { job, runId: started.id, scheduledAt: scheduledAt.toISOString() });
    const done = started.done.then(
      (result) => {
        const level = result.status === 'ok' ? 'info' : 'warn';
        log(level, `job ${job} run ${result.id} ended: ${result.status}`, { job, runId: result.id, exitCode: result.exitCode, signal: result.signal, ms: result.durationMs, ...(result.note && { note: result.note }) });
      },
      // Its end could not be recorded (say the store was closed at shutdown while it ran).
      (err) => log('error', `job ${job} run ${started.id}: its end was not recorded: ${(err as Error).message}`, { job, runId: started.id }),
    );
    running.set(job, done);
    done.finally(() => running.get(job) === done && running.delete(job));
  }

  async function check(): Promise<void> {
    const section = config.services.jobs;
    if (!section) return;
    store ??= await openJobsStore(config);
    const since = lastCheck;
    const schedules = await store.listSchedules();
    // Read after the list: a schedule stored meanwhile has a setAt up to this moment, never after
    // it (on this host's clock), so the bound below holds for it.
    const current = now();
    for (const schedule of schedules) {
      if (stopped) return; // a check that outlived stop(): start nothing more
      if (!ownValue(section.jobs, schedule.job)) {
        warnOnce(`gone:${schedule.job}`, `schedule of job ${schedule.job} ignored: the job is not in the config`, { job: schedule.job });
        continue;
      }
      // Only firings after the schedule was set: the reply to "set" announced the first one after
      // that moment, and a check window that began earlier must not run one before it. A setAt
      // ahead of this clock (another host's clock) cannot be trusted as a bound, so it is ignored.
      const from = schedule.setAt > since.getTime() && schedule.setAt <= current.getTime() ? new Date(schedule.setAt) : since;
      let due: Date | undefined;
      let missed = 0;
      for (let next = nextFiring(schedule.cron, section.timezone, from); next && next <= current && missed < MAX_MISSED; next = nextFiring(schedule.cron, section.timezone, next)) {
        if (due) missed++;
        due = next;
      }
      if (!due) continue;
      if (!(await store.claimFiring(schedule.job, due.getTime(), owner))) {
        log('debug', `firing of job ${schedule.job} at ${formatTime(due)} taken by another agent`, { job: schedule.job });
        continue;
      }
      if (missed) log('warn', `job ${schedule.job}: ${missed} earlier firing(s) were missed; running it once`, { job: schedule.job, missed });
      if (running.has(schedule.job)) {
        log('warn', `job ${schedule.job} is still running from its previous firing: firing at ${formatTime(due)} skipped`, { job: schedule.job });
        continue;
      }
      await fire(store, schedule.job, due);
    }
    lastCheck = current;
  }

  const loop = () => {
    if (stopped) return;
    checking = check()
      .catch((err) => log('error', `schedule check failed: ${(err as Error).message}`))
      .finally(() => {
        if (!stopped) timer = setTimeout(loop, intervalMs);
      });
  };
  timer = setTimeout(loop, intervalMs);

  /** Resolves true when `work` ended before `deadline`, false at the deadline. */
  async function within(work: Promise<unknown>, deadline: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, Math.max(0, Math.min(deadline - Date.now(), 2 ** 31 - 1)), false)));
    try {
      return await Promise.race([work.then(() => true), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    reload(fresh: Config) {
      config = fresh;
    },
    async stop(deadline = Infinity) {
      stopped = true;
      clearTimeout(timer);
      const ended = await within(checking.then(() => Promise.all(running.values())), deadline);
      if (!ended) {
        log('warn', `scheduled jobs still running at shutdown: ${[...running.keys()].join(', ') || '(starting)'}; they go on, but their end is not recorded`, { jobs: [...running.keys()] });
      }
      await store?.close().catch(() => undefined);
      store = undefined;
    },
  };
}
