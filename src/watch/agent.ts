import type { Config } from '../config/types';
import { EXIT, UserError } from '../core/errors';
import type { Logger } from '../core/log';
import { queueNotice } from '../core/notices';
import type { PipelineDeps } from '../core/pipeline';
import type { AgentStatus } from '../core/status';
import { authenticationFailed, ImapSource } from '../mail/imap-source';
import { Outbox, outboxLeaseMs } from '../mail/outbox';
import { createSmtpSender, type SmtpSender } from '../mail/smtp';
import { drainWork } from '../services/follow-up';
import { serviceStoreFor } from '../services/stores';
import type { Notice } from '../services/types';
import { fileAudit, type AuditSink } from '../state/audit';
import type { StateStore } from '../state/store';
import { MessageBatches } from './batches';
import { HealthRecorder } from './health-record';
import { Heartbeat } from './heartbeat';
import { SystemdNotifier } from './systemd';
import { envelopeSenderOf } from './headers';
import type { AgentIdentity } from './leases';

export type ConnectionState = 'disconnected' | 'connecting' | 'syncing' | 'idle' | 'stopping';

export interface AgentOptions {
  config: Config;
  store: StateStore;
  log: Logger;
  /** Needed for leases; a dry run takes none. */
  identity?: AgentIdentity;
  /** Process what is there, drain the outbox, return. */
  once?: boolean;
  /**
   * Parse and authorize only: no claims, no moves, no sending, nothing executed. The mailbox is
   * only read (EXAMINE, BODY.PEEK): no folder created, no flag set, nothing moved or expunged.
   */
  dryRun?: boolean;
  /** How long shutdown may spend sending the outbox (default 10 s). */
  drainMs?: number;
}

/** NOOP while idle at least this often (health.imapCheckSeconds may ask for more), so that a dead connection is noticed and middleboxes keep it open. */
const KEEPALIVE_MS = 2 * 60_000;

/** Reconnect delay after n failed attempts: 250 ms · 1.6ⁿ, at most 30 s, ± 20 %. */
export function reconnectDelay(n: number): number {
  const plain = Math.min(30_000, 250 * 1.6 ** Math.min(n, 20));
  return Math.round(plain * (0.8 + Math.random() * 0.4));
}

/**
 * The mailbox agent: one small state machine (disconnected → connecting → syncing → idle) around
 * one IMAP connection. After every (re)connect it catches up — first the processing folder
 * (messages a crashed agent left), then every message in the inbox — and then waits for the
 * server's EXISTS (IDLE) or its own poll timer. The work on the messages themselves (lease, MOVE,
 * pipeline, filing) is in batches.ts; this class owns the connection, the timers, reload and shutdown.
 */
export class Agent {
  private config: Config;
  private readonly store: StateStore;
  private readonly log: Logger;
  private readonly identity: AgentIdentity | undefined;
  private readonly once: boolean;
  private readonly dryRun: boolean;
  private readonly drainMs: number;
  private readonly startedAt = new Date();
  private audit: AuditSink;
  private state: ConnectionState = 'disconnected';
  private source: ImapSource | undefined;
  private lastEvent: { what: string; at: Date } | undefined;
  private failures = 0;
  private everConnected = false;
  private ready = false;
  private stopping = false;
  private reconnectRequested = false;
  /** The last IMAP round trip that completed (login, sync, NOOP): what health and the watchdog judge. */
  private lastImapOkAt: number | undefined;
  private lastSyncAt: number | undefined;
  private readonly health: HealthRecorder | undefined;
  /** End-to-end probes through SMTP and back over IMAP, when configured. */
  private readonly heartbeat: Heartbeat | undefined;
  /** Set when systemd started the agent as Type=notify. */
  private readonly systemd: SystemdNotifier | undefined;
  private wakeUp: (() => void) | undefined;
  private smtp: { sender: SmtpSender; key: string } | undefined;
  readonly outbox: Outbox | undefined;
  /** dry-run: folders already logged as missing (once per run, not per reconnect). */
  private readonly reportedMissing = new Set<string>();
  private readonly batches: MessageBatches;

  constructor(options: AgentOptions) {
    this.config = options.config;
    this.store = options.store;
    this.log = options.log;
    this.identity = options.identity;
    this.once = options.once ?? false;
    this.dryRun = options.dryRun ?? false;
    this.drainMs = options.drainMs ?? 10_000;
    this.audit = this.auditSink(this.config);
    if (!this.dryRun) {
      this.outbox = new Outbox({ store: this.store, sender: () => this.smtpSender(), log: this.log, leaseMs: outboxLeaseMs(this.config) });
    }
    if (this.identity && !this.dryRun) {
      // Created without a heartbeat section too: probes still in flight after a reload are filed, not answered.
      this.heartbeat = new Heartbeat({
        config: () => this.config,
        owner: this.identity.owner,
        log: this.log,
        store: () => serviceStoreFor(this.config),
        // The real SMTP path the replies take: that is what the probe tests.
        send: (envelope, raw) => this.smtpSender().send(envelope, raw),
      });
    }
    // The batches see the agent through this view: always the config in force and the open connection.
    const agent = this;
    this.batches = new MessageBatches({
      get config() {
        return agent.config;
      },
      store: this.store,
      log: this.log,
      identity: this.identity,
      dryRun: this.dryRun,
      once: this.once,
      get source() {
        return agent.source!;
      },
      get stopping() {
        return agent.stopping;
      },
      deps: (raw) => this.deps(raw),
      heartbeat: this.heartbeat,
      replyQueued: () => this.outbox?.kick(),
      synced: () => {
        this.lastEvent = { what: 'synced', at: new Date() };
        this.lastSyncAt = this.lastImapOkAt = Date.now();
      },
    });
    this.systemd = this.once || this.dryRun ? undefined : SystemdNotifier.fromEnv(process.env, this.log);
    // Only a long-lived agent reports its health (a dry run or --once is not watching).
    if (this.identity && !this.once && !this.dryRun) {
      this.health = new HealthRecorder(() => this.config, this.identity.owner, () => this.facts(), this.log);
    }
  }

  /** The agent's current facts for its health record. */
  private facts() {
    return {
      connection: this.state,
      ...(this.lastImapOkAt !== undefined && { lastImapOkAt: this.lastImapOkAt }),
      ...(this.lastSyncAt !== undefined && { lastSyncAt: this.lastSyncAt }),
      ...(this.batches.lastHandledAt !== undefined && { lastHandledAt: this.batches.lastHandledAt }),
      handled: this.batches.handled,
      waitingOnOtherAgents: this.batches.leasedElsewhere.size,
    };
  }

  status(): AgentStatus {
    return {
      startedAt: this.startedAt,
      connection: this.state,
      lastImapEvent: this.lastEvent,
      messagesHandled: this.batches.handled,
      waitingOnOtherAgents: this.batches.leasedElsewhere.size,
      mode: this.dryRun ? 'dry run' : this.once ? 'once' : undefined,
    };
  }

  /** A mail of the agent's own (a scheduled result, an alert), queued in the outbox and sent at once. */
  async queueNotice(key: string, notice: Notice): Promise<void> {
    if (this.dryRun) return;
    await queueNotice({ config: this.config, store: this.store, audit: this.audit, now: () => new Date() }, key, notice);
    this.outbox?.kick();
  }

  /** SIGTERM/SIGINT: take no new mail, finish what is in hand, then run() returns. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info('stopping', { state: this.state });
    this.wake();
  }

  /** SIGHUP: new messages get the new config; a changed `imap` section reconnects. */
  reload(config: Config): void {
    const imapChanged = JSON.stringify(config.imap) !== JSON.stringify(this.config.imap);
    this.config = config;
    this.audit = this.auditSink(config);
    if (this.smtp && this.smtp.key !== JSON.stringify(config.smtp)) {
      this.smtp.sender.close();
      this.smtp = undefined;
    }
    this.log.info('config reloaded', { file: config.file, reconnect: imapChanged });
    if (imapChanged) {
      this.reconnectRequested = true;
      this.wake();
    }
  }

  /** Runs until stop() (or, with `once`, until everything waiting is handled). Returns the exit code. */
  async run(): Promise<number> {
    this.outbox?.start();
    this.outbox?.kick(); // replies left by an earlier run
    this.health?.start();
    if (!this.once) this.heartbeat?.start();
    const watchdog = this.startWatchdog();
    try {
      return await this.loop();
    } finally {
      clearInterval(watchdog);
      void this.systemd?.stopping();
      // Before the SMTP sender closes: a tick in progress may be sending a probe.
      await this.heartbeat?.stop();
      await this.shutdown();
      await this.health?.stop();
    }
  }

  /** Whether the IMAP loop works: a round trip completed recently (what health calls not degraded). */
  private imapHealthy(): boolean {
    return this.lastImapOkAt !== undefined && Date.now() - this.lastImapOkAt < this.config.health.degradedAfterSeconds * 1000;
  }

  /** For systemctl status: when the inbox was last synced, the outbox depth, the work done. */
  private async statusLine(): Promise<string> {
    const outbox = await this.store.outboxStats().catch(() => undefined);
    const synced = this.lastSyncAt === undefined ? 'not synced yet' : `synced ${Math.round((Date.now() - this.lastSyncAt) / 1000)} s ago`;
    return `${this.state}, ${synced}; outbox ${outbox ? `${outbox.depth} waiting` : 'unknown'}; ${this.batches.handled} handled`;
  }

  /**
   * Under systemd with WatchdogSec=, pings at half that interval, but only while the IMAP loop is
   * healthy: an agent whose connection hangs stops pinging, and systemd restarts it.
   */
  private startWatchdog(): NodeJS.Timeout | undefined {
    const every = this.systemd?.watchdogMs;
    if (!every) return undefined;
    let silent = false;
    return setInterval(() => {
      if (!this.ready || this.stopping) return;
      if (this.imapHealthy()) {
        silent = false;
        void this.statusLine().then((status) => this.systemd!.alive(status));
      } else if (!silent) {
        silent = true;
        this.log.warn('watchdog: no IMAP round trip for too long, systemd is no longer told the agent is alive', { lastImapOkAt: this.lastImapOkAt && new Date(this.lastImapOkAt).toISOString() });
      }
    }, Math.max(250, every / 2));
  }

  private async loop(): Promise<number> {
    while (!this.stopping) {
      this.setState('connecting');
      let source: ImapSource;
      try {
        source = await ImapSource.connect(this.config, this.log, {
          onMail: () => {
            this.batches.mailWaiting = true;
            this.wake();
          },
          onClose: () => this.wake(),
          onEvent: (what) => (this.lastEvent = { what, at: new Date() }),
        }, { readOnly: this.dryRun, reportedMissing: this.reportedMissing });
      } catch (err) {
        if (err instanceof UserError) throw err; // a secret that cannot be read: a config problem
        const imap = this.config.imap!;
        if (authenticationFailed(err) && (this.once || !this.everConnected)) {
          this.log.error(
            imap.oauth2
              ? 'IMAP login refused even with a freshly refreshed OAuth2 token: check the app registration, its scopes and that IMAP is enabled for the mailbox (mailagent auth status)'
              : 'IMAP login refused: check imap.user and imap.password',
            { host: imap.host, user: imap.user },
          );
          return EXIT.CONFIG;
        }
        if (this.once) {
          this.log.error('IMAP server unreachable', { host: imap.host, port: imap.port, err });
          return EXIT.TEMPFAIL;
        }
        this.setState('disconnected');
        const delay = reconnectDelay(this.failures++);
        this.log.warn('IMAP connection failed', { host: imap.host, port: imap.port, err, retryInMs: delay });
        await this.pause(delay);
        continue;
      }
      this.source = source;
      this.everConnected = true;
      this.lastImapOkAt = Date.now();
      this.reconnectRequested = false;
      this.log.info('connected', { host: this.config.imap!.host, mailbox: source.folders.inbox, mode: source.pollSeconds ? `poll every ${source.pollSeconds}s` : 'idle' });
      try {
        this.setState('syncing');
        await this.batches.catchUp();
        this.failures = 0; // a good sync: the next outage starts with short delays again
        if (!this.ready) {
          this.ready = true;
          this.identity?.forgetDead();
          this.log.info('ready', { mailbox: source.folders.inbox, uidValidity: source.inboxValidity, handled: this.batches.handled, dryRun: this.dryRun });
          void this.systemd?.ready(await this.statusLine());
        }
        if (this.once) return EXIT.OK;
        await this.serve(source);
      } catch (err) {
        if (this.once) {
          this.log.error('IMAP connection lost', { err });
          return EXIT.TEMPFAIL;
        }
        if (!this.stopping) this.log.warn('IMAP connection lost', { err });
      } finally {
        this.source = undefined;
        await source.close();
      }
      if (this.stopping) break;
      if (this.reconnectRequested) continue;
      this.setState('disconnected');
      const delay = reconnectDelay(this.failures++);
      this.log.info('reconnecting', { inMs: delay });
      await this.pause(delay);
    }
    return EXIT.OK;
  }

  /** Waits for mail, timers or a stop, and syncs; returns on stop or reload, throws when the connection dies. */
  private async serve(source: ImapSource): Promise<void> {
    const pollMs = source.pollSeconds * 1000;
    let nextPoll = Date.now() + pollMs;
    const keepaliveMs = () => Math.min(KEEPALIVE_MS, this.config.health.imapCheckSeconds * 1000);
    let nextKeepalive = Date.now() + keepaliveMs();
    while (!this.stopping && !this.reconnectRequested) {
      if (!source.usable) throw new Error('connection closed by the server');
      this.setState('idle');
      const now = Date.now();
      const until = Math.min(nextKeepalive, this.batches.nextCatchUpAt, pollMs ? nextPoll : Infinity);
      if (!this.batches.mailWaiting) await this.pause(until - now);
      if (this.stopping || this.reconnectRequested) return;
      if (!source.usable) throw new Error('connection closed by the server');
      const after = Date.now();
      if (after >= this.batches.nextCatchUpAt) {
        this.setState('syncing');
        await this.batches.catchUp();
      } else if (this.batches.mailWaiting || (pollMs && after >= nextPoll)) {
        this.setState('syncing');
        await this.batches.syncInbox();
      } else if (after >= nextKeepalive) {
        await source.noop();
        this.lastImapOkAt = Date.now();
      }
      if (pollMs && Date.now() >= nextPoll) nextPoll = Date.now() + pollMs;
      nextKeepalive = Date.now() + keepaliveMs();
    }
  }

  private deps(raw: Buffer): PipelineDeps {
    return {
      config: this.config,
      now: () => new Date(),
      store: this.store,
      audit: this.audit,
      envelopeSender: envelopeSenderOf(raw),
      logError: (message, err) => this.log.error(message, { err, stack: (err as Error)?.stack }),
      agentStatus: () => this.status(),
      ...(this.dryRun ? { dryRun: true } : { followUps: !this.once }),
    };
  }

  private auditSink(config: Config): AuditSink {
    // A dry run leaves no trace in the audit log: its records go to the agent's log.
    return this.dryRun ? (record) => this.log.info('audit', { ...record }) : fileAudit(config.audit.path, config.audit);
  }

  private smtpSender(): SmtpSender {
    if (!this.smtp) this.smtp = { sender: createSmtpSender(this.config, { pooled: true }), key: JSON.stringify(this.config.smtp) };
    return this.smtp.sender;
  }

  private async shutdown(): Promise<void> {
    this.setState('stopping');
    const deadline = Date.now() + this.drainMs;
    // Jobs and backups that outlived their reply send their result in a follow-up mail: let them end first.
    if (!(await drainWork(Math.max(0, deadline - Date.now())))) {
      this.log.warn('jobs or backups still running at shutdown: they go on, but their end is neither recorded nor mailed');
    }
    if (this.outbox) {
      await this.outbox.stop(deadline);
      const left = await this.outbox.drain(deadline);
      if (left) this.log.warn('replies still waiting in the outbox; the next agent sends them', { count: left });
    }
    this.smtp?.sender.close();
    this.smtp = undefined;
    await this.batches.releaseKept();
    this.setState('disconnected');
  }

  private setState(state: ConnectionState): void {
    if (this.state === state) return;
    this.log.debug('state', { from: this.state, to: state });
    this.state = state;
  }

  private wake(): void {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  /** Sleeps up to `ms`, or until something wakes the agent (mail, close, stop, reload). */
  private pause(ms: number): Promise<void> {
    if (this.stopping || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.min(ms, 2 ** 31 - 1));
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    });
  }
}
