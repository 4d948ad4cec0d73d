import type { Config } from '../config/types';
import { openServiceStore, type ServiceStore } from '../state/service-store';
import { formatTime, nextFiring } from './jobs/cron';
import { services as builtinServices } from './registry';
import type { SchedulerLog, Service, TimedContext, TimedTask } from './types';

/** Catching up after a long pause fires a task once, not once per missed firing; this bounds the search. */
const MAX_MISSED = 10_000;

export interface Scheduler {
  /** SIGHUP: later checks and firings use this config; running work and the store are kept. */
  reload(config: Config): void;
  /** No more firings; waits for running work until `deadline` (epoch ms) at most. */
  stop(deadline?: number): Promise<void>;
}

/** The first firing of `when` strictly after `after`. */
function next(when: TimedTask['when'], after: Date): Date | undefined {
  if ('everyMs' in when) return new Date((Math.floor(after.getTime() / when.everyMs) + 1) * when.everyMs);
  return nextFiring(when.cron, when.timezone, after);
}

/** Whether `config` has a section for the service, so that its timed work is looked at. */
const configured = (config: Config, service: Service): boolean => Object.hasOwn(config.services, service.name) && config.services[service.name as keyof Config['services']] !== undefined;

/**
 * The one scheduler of `watch`: scheduled jobs and backups, alert rules and device polls, whatever
 * the services' `timed` lists hold. Every second it looks for firings due since its last look,
 * claims each in the service store (so that of several agents exactly one fires it) and starts
 * it. Firings missed while no agent was running are not made up; several missed during one pause
 * fire once. A task still running from its previous firing skips the next one. It never throws:
 * problems go to `log`, and the next check tries again.
 */
export function startScheduler(opts: {
  config: Config;
  /** Unique per agent process. */
  owner: string;
  /** Injectable clock for tests. */
  now?: () => Date;
  log: SchedulerLog;
  /** Pause between checks (default 1000 ms). */
  intervalMs?: number;
  /** Queues notices (scheduled results, alerts) in the outbox; without it they only reach the log. */
  notify?: TimedContext['notify'];
  /** The service registry; tests may pass their own. */
  services?: Record<string, Service>;
}): Scheduler {
  const { owner, log } = opts;
  let config = opts.config;
  const registry = opts.services ?? builtinServices;
  const now = opts.now ?? (() => new Date());
  const intervalMs = opts.intervalMs ?? 1000;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let checking: Promise<void> = Promise.resolve();
  let store: ServiceStore | undefined;
  let lastCheck = now();
  const running = new Map<string, { title: string; done: Promise<void> }>();
  const warned = new Set<string>();

  const warnOnce = (key: string, message: string, fields?: Record<string, unknown>) => {
    if (warned.has(key)) return;
    warned.add(key);
    log('warn', message, fields);
  };

  function fire(store: ServiceStore, task: TimedTask, scheduledAt: Date): void {
    const context: TimedContext = { config, store, now, log, scheduledAt, ...(opts.notify && { notify: opts.notify }) };
    const done = Promise.resolve()
      .then(() => task.fire(context))
      .catch((err) => log('error', `${task.title}: its firing at ${formatTime(scheduledAt)} failed: ${(err as Error).message}`, { task: task.key }));
    running.set(task.key, { title: task.title, done });
    done.finally(() => running.get(task.key)?.done === done && running.delete(task.key));
  }

  async function tasks(store: ServiceStore): Promise<TimedTask[]> {
    const all: TimedTask[] = [];
    for (const service of Object.values(registry)) {
      if (!service.timed || !configured(config, service)) continue;
      try {
        const list = await service.timed(config, store);
        for (const ignored of list.ignored ?? []) warnOnce(`ignored:${ignored.key}`, ignored.message, ignored.fields);
        all.push(...list.tasks);
      } catch (err) {
        log('error', `${service.name}: its scheduled work could not be listed: ${(err as Error).message}`);
      }
    }
    return all;
  }

  async function check(): Promise<void> {
    store ??= await openServiceStore(config);
    const since = lastCheck;
    const due = await tasks(store);
    // Read after the list: a schedule stored meanwhile has a setAt up to this moment, never after
    // it (on this host's clock), so the bound below holds for it.
    const current = now();
    for (const task of due) {
      if (stopped) return; // a check that outlived stop(): start nothing more
      // Only firings after the task was set: the reply to "set" announced the first one after that
      // moment, and a check window that began earlier must not fire one before it. A setAt ahead
      // of this clock (another host's clock) cannot be trusted as a bound, so it is ignored.
      const setAt = task.setAt;
      const from = setAt !== undefined && setAt > since.getTime() && setAt <= current.getTime() ? new Date(setAt) : since;
      let at: Date | undefined;
      let missed = 0;
      for (let n = next(task.when, from); n && n <= current && missed < MAX_MISSED; n = next(task.when, n)) {
        if (at) missed++;
        at = n;
      }
      if (!at) continue;
      if (!(await store.claimFiring(task.key, at.getTime(), owner))) {
        log('debug', `firing of ${task.title} at ${formatTime(at)} taken by another agent`, { task: task.key });
        continue;
      }
      if (missed && !task.quietMisses) log('warn', `${task.title}: ${missed} earlier firing(s) were missed; running it once`, { task: task.key, missed });
      if (running.has(task.key)) {
        log('warn', `${task.title} is still running from its previous firing: firing at ${formatTime(at)} skipped`, { task: task.key });
        continue;
      }
      fire(store, task, at);
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
      const ended = await within(checking.then(() => Promise.all([...running.values()].map((r) => r.done))), deadline);
      if (!ended) {
        const titles = [...running.values()].map((r) => r.title);
        log('warn', `scheduled work still running at shutdown: ${titles.join(', ') || '(starting)'}; it goes on, but its end is not recorded`, { tasks: titles });
      }
      await store?.close().catch(() => undefined);
      store = undefined;
    },
  };
}

/** Whether any configured service has work for the scheduler (else `watch` starts none). */
export function hasTimedWork(config: Config, registry: Record<string, Service> = builtinServices): boolean {
  return Object.values(registry).some((service) => service.timed && configured(config, service));
}
