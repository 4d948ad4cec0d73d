import { dirname, join } from 'node:path';
import { loadConfig } from '../config/load';
import { resolveSecret } from '../config/secrets';
import type { Config } from '../config/types';
import { EXIT, UserError } from '../core/errors';
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from '../core/log';
import { closeDatabases } from '../services/db';
import type { Scheduler } from '../services/scheduler';
import { closeServiceStores } from '../services/stores';
import { openStateStore } from '../state/open';
import { MemoryStore, type StateStore } from '../state/store';
import { sweepSpool } from '../mail/spool';
import { Agent } from '../watch/agent';
import { limitOldGenerationGrowth } from '../watch/heap';
import { AgentIdentity } from '../watch/leases';

interface WatchArgs {
  config?: string;
  once?: boolean;
  dryRun?: boolean;
  debug?: boolean;
}

/** What watch needs from the config, secrets included, checked before anything starts. */
function checkSections(config: Config, dryRun: boolean): void {
  if (!config.imap) throw new UserError('imap is not configured, so there is no mailbox to watch', EXIT.CONFIG, 'add an "imap" section');
  if (!dryRun && !config.smtp) throw new UserError('smtp is not configured, so replies cannot be sent', EXIT.CONFIG, 'add an "smtp" section, or use --dry-run');
  if (config.imap.password) resolveSecret(config.imap.password, config.file, 'imap.password');
  if (!dryRun && config.smtp?.password) resolveSecret(config.smtp.password, config.file, 'smtp.password');
}

/**
 * `mailagent watch`: the mailbox agent. Runs until SIGTERM/SIGINT (then finishes the messages in
 * hand, sends the outbox for up to 10 s and exits 0); SIGHUP reloads the config. `--once` handles
 * what is waiting and exits (for cron); `--dry-run` shows what it would answer and changes nothing.
 */
export async function handler(argv: WatchArgs): Promise<number> {
  const dryRun = Boolean(argv.dryRun);
  const once = Boolean(argv.once);
  const config = await loadConfig(argv.config);
  checkSections(config, dryRun);
  const format = process.env.MAILAGENT_LOG_FORMAT;
  const level = (process.env.MAILAGENT_LOG_LEVEL || 'info') as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw new UserError(`MAILAGENT_LOG_LEVEL=${level}: expected one of ${LOG_LEVELS.join(', ')}`, EXIT.USAGE);
  if (format && format !== 'json' && format !== 'text') throw new UserError(`MAILAGENT_LOG_FORMAT=${format}: expected json or text`, EXIT.USAGE);
  const log = createLogger({ level: argv.debug ? 'debug' : level, json: format ? format === 'json' : undefined });

  limitOldGenerationGrowth();
  const store: StateStore = dryRun ? new MemoryStore() : await openStateStore(config);
  // Attachments a crashed run or watch left behind; those of running processes are theirs.
  if (!dryRun) sweepSpool(config.state.path);
  const identity = dryRun ? undefined : new AgentIdentity(join(dirname(config.state.path), 'agents'));
  const agent = new Agent({ config, store, log, identity, once, dryRun, drainMs: once ? 30_000 : 10_000 });

  // Scheduled work (jobs, backups, alert rules, device polls) runs in the long-lived agent only;
  // several agents share it through the store.
  let scheduler: Scheduler | undefined;
  const startTimedWork = (cfg: Config) => {
    if (once || dryRun) return undefined;
    const { startScheduler, hasTimedWork } = require('../services/scheduler') as typeof import('../services/scheduler');
    if (!hasTimedWork(cfg)) return undefined;
    return startScheduler({
      config: cfg,
      owner: identity!.owner,
      log: (level, message, fields) => log[level](message, fields),
      notify: (key, notice) => agent.queueNotice(key, notice),
    });
  };
  scheduler = startTimedWork(config);

  let signals = 0;
  let stopping = false;
  const onStop = (signal: NodeJS.Signals) => {
    stopping = true;
    if (++signals > 1) {
      // A second signal: stop now; what was in hand is recovered by the next start.
      log.warn('second signal: exiting at once', { signal });
      process.exit(EXIT.TEMPFAIL);
    }
    log.info('signal received', { signal });
    agent.stop();
  };
  // One reload at a time, none once stopping (it would start a scheduler nobody stops). The
  // scheduler keeps running through a reload: a long job does not hold up the next firings.
  let reloads: Promise<void> = Promise.resolve();
  const reload = async () => {
    if (stopping) return;
    try {
      const fresh = await loadConfig(argv.config);
      checkSections(fresh, dryRun);
      if (stopping) return;
      agent.reload(fresh);
      if (scheduler) scheduler.reload(fresh);
      else scheduler = startTimedWork(fresh);
    } catch (err) {
      log.error('config not reloaded; the previous one stays in force', { error: (err as Error).message });
    }
  };
  const onReload = () => {
    reloads = reloads.then(reload);
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', onReload);
  let code: number | undefined;
  try {
    code = await agent.run();
    return code;
  } finally {
    stopping = true;
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
    process.off('SIGHUP', onReload);
    await reloads;
    // The agent's shutdown already gave running jobs the drain time.
    await scheduler?.stop(Date.now() + SCHEDULER_STOP_MS);
    await closeDatabases();
    await closeServiceStores();
    await store.close();
    identity?.retire();
    log.info('stopped', { handled: agent.status().messagesHandled });
    exitSoon(log, () => code ?? EXIT.TEMPFAIL);
  }
}

/** How long the scheduler may still wait for its jobs once the agent has drained. */
const SCHEDULER_STOP_MS = 1000;
/** How long after the cleanup the process may take to end by itself. */
const EXIT_GRACE_MS = 2000;

/**
 * Everything is closed, but a job still running (its output pipes) or a library's handle could
 * keep the process alive: it ends after a short grace all the same, saying what was left.
 */
function exitSoon(log: Logger, code: () => number): void {
  const timer = setTimeout(() => {
    const left = process.getActiveResourcesInfo().filter((what) => what !== 'Timeout');
    log.warn('still busy after shutdown: exiting anyway', { left });
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : code());
  }, EXIT_GRACE_MS);
  timer.unref();
}
