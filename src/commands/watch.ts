import { dirname, join } from 'node:path';
import { loadConfig } from '../config/load';
import { resolveSecret } from '../config/secrets';
import type { Config } from '../config/types';
import { EXIT, UserError } from '../core/errors';
import { createLogger, LOG_LEVELS, type LogLevel } from '../core/log';
import { closeDatabases } from '../services/db';
import { closeJobsStores } from '../services/jobs/stores';
import { openStateStore } from '../state/open';
import { MemoryStore, type StateStore } from '../state/store';
import { Agent } from '../watch/agent';
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

  const store: StateStore = dryRun ? new MemoryStore() : await openStateStore(config);
  const identity = dryRun ? undefined : new AgentIdentity(join(dirname(config.state.path), 'agents'));
  const agent = new Agent({ config, store, log, identity, once, dryRun, drainMs: once ? 30_000 : 10_000 });

  // Scheduled jobs run in the long-lived agent only; several agents share them through the store.
  let scheduler: { stop(): Promise<void> } | undefined;
  const startJobs = (cfg: Config) => {
    if (once || dryRun || !cfg.services.jobs) return undefined;
    const { startScheduler } = require('../services/jobs/scheduler') as typeof import('../services/jobs/scheduler');
    return startScheduler({ config: cfg, owner: identity!.owner, log: (level, message, fields) => log[level](message, fields) });
  };
  scheduler = startJobs(config);

  let signals = 0;
  const onStop = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      // A second signal: stop now; what was in hand is recovered by the next start.
      log.warn('second signal: exiting at once', { signal });
      process.exit(EXIT.TEMPFAIL);
    }
    log.info('signal received', { signal });
    agent.stop();
  };
  const onReload = () => {
    loadConfig(argv.config)
      .then(async (fresh) => {
        checkSections(fresh, dryRun);
        agent.reload(fresh);
        await scheduler?.stop();
        scheduler = startJobs(fresh);
      })
      .catch((err) => log.error('config not reloaded; the previous one stays in force', { error: (err as Error).message }));
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', onReload);
  try {
    return await agent.run();
  } finally {
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
    process.off('SIGHUP', onReload);
    await scheduler?.stop();
    await closeDatabases();
    await closeJobsStores();
    await store.close();
    identity?.retire();
    log.info('stopped', { handled: agent.status().messagesHandled });
  }
}
