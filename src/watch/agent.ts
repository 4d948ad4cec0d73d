import type { Config } from '../config/types';
import { EXIT, UserError } from '../core/errors';
import type { Logger } from '../core/log';
import { queueNotice } from '../core/notices';
import type { Outcome } from '../core/outcome';
import { processMessage, type PipelineDeps } from '../core/pipeline';
import type { AgentStatus } from '../core/status';
import { authenticationFailed, ImapSource } from '../mail/imap-source';
import { Outbox, outboxLeaseMs } from '../mail/outbox';
import { createSmtpSender, type SmtpSender } from '../mail/smtp';
import { drainWork } from '../services/follow-up';
import type { Notice } from '../services/types';
import { fileAudit, type AuditSink } from '../state/audit';
import type { StateStore } from '../state/store';
import { envelopeSenderOf, messageKey } from './headers';
import { DryRunPreview } from './dry-run';
import { KeptLeases, leaseMessage, messageLeaseMs, type AgentIdentity, type MessageLease } from './leases';

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

/** Messages of the processing folder recovered per round. */
const RECOVERY_BATCH = 50;
/** Messages downloaded, leased and claimed at once: up to limits.maxMessageBytes + 1 bytes each. */
const FETCH_BATCH = 10;
/** Messages of one batch processed at the same time. */
const CONCURRENCY = 10;
/** NOOP while idle, so that a dead connection is noticed and middleboxes keep it open. */
const KEEPALIVE_MS = 2 * 60_000;
/** A full catch-up now and then: the processing folder (leases of dead agents expire) and the inbox. */
const CATCH_UP_MS = 5 * 60_000;
/** A message that failed for a temporary reason is retried this soon. */
const RETRY_FAILED_MS = 30_000;

/** Reconnect delay after n failed attempts: 250 ms · 1.6ⁿ, at most 30 s, ± 20 %. */
export function reconnectDelay(n: number): number {
  const plain = Math.min(30_000, 250 * 1.6 ** Math.min(n, 20));
  return Math.round(plain * (0.8 + Math.random() * 0.4));
}

/** A message in the processing folder that this agent holds the lease of. */
interface Held {
  uid: number;
  raw: Buffer;
  key: string;
  lease: MessageLease;
}

interface Handled {
  uid: number;
  /** Where the message goes now; undefined: it stays (a temporary failure). */
  to?: 'processed' | 'rejected';
  lease: MessageLease;
}

/**
 * The mailbox agent: one small state machine (disconnected → connecting → syncing → idle) around
 * one IMAP connection. After every (re)connect it catches up — first the processing folder
 * (messages a crashed agent left), then every message in the inbox — and then waits for the
 * server's EXISTS (IDLE) or its own poll timer. Each message is leased in the state store, then
 * claimed by MOVE, run through processMessage, and filed once its reply is in the outbox. The lease
 * comes first so that a message in the processing folder always has a live holder, unless its
 * agent died: recovery then never takes a message another agent has just moved.
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
  private handled = 0;
  private failures = 0;
  private everConnected = false;
  private ready = false;
  private stopping = false;
  private reconnectRequested = false;
  private mailWaiting = false;
  private nextCatchUpAt = 0;
  private wakeUp: (() => void) | undefined;
  private smtp: { sender: SmtpSender; key: string } | undefined;
  readonly outbox: Outbox | undefined;
  /** dry-run: what each inbox message would get, logged once. */
  private readonly dryRunPreview: DryRunPreview;
  /** dry-run: folders already logged as missing (once per run, not per reconnect). */
  private readonly reportedMissing = new Set<string>();
  private readonly keptLeases = new KeptLeases(() => messageLeaseMs(this.config));
  /** Keys of messages another agent held a lease on when this one last looked (status). */
  private readonly leasedElsewhere = new Set<string>();

  constructor(options: AgentOptions) {
    this.config = options.config;
    this.store = options.store;
    this.log = options.log;
    this.dryRunPreview = new DryRunPreview(options.log);
    this.identity = options.identity;
    this.once = options.once ?? false;
    this.dryRun = options.dryRun ?? false;
    this.drainMs = options.drainMs ?? 10_000;
    this.audit = this.auditSink(this.config);
    if (!this.dryRun) {
      this.outbox = new Outbox({ store: this.store, sender: () => this.smtpSender(), log: this.log, leaseMs: outboxLeaseMs(this.config) });
    }
  }

  status(): AgentStatus {
    return {
      startedAt: this.startedAt,
      connection: this.state,
      lastImapEvent: this.lastEvent,
      messagesHandled: this.handled,
      waitingOnOtherAgents: this.leasedElsewhere.size,
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
    try {
      return await this.loop();
    } finally {
      await this.shutdown();
    }
  }

  private async loop(): Promise<number> {
    while (!this.stopping) {
      this.setState('connecting');
      let source: ImapSource;
      try {
        source = await ImapSource.connect(this.config, this.log, {
          onMail: () => {
            this.mailWaiting = true;
            this.wake();
          },
          onClose: () => this.wake(),
          onEvent: (what) => (this.lastEvent = { what, at: new Date() }),
        }, { readOnly: this.dryRun, reportedMissing: this.reportedMissing });
      } catch (err) {
        if (err instanceof UserError) throw err; // a secret that cannot be read: a config problem
        const imap = this.config.imap!;
        if (authenticationFailed(err) && (this.once || !this.everConnected)) {
          this.log.error('IMAP login refused: check imap.user and imap.password', { host: imap.host, user: imap.user });
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
      this.reconnectRequested = false;
      this.log.info('connected', { host: this.config.imap!.host, mailbox: source.folders.inbox, mode: source.pollSeconds ? `poll every ${source.pollSeconds}s` : 'idle' });
      try {
        this.setState('syncing');
        await this.catchUp();
        this.failures = 0; // a good sync: the next outage starts with short delays again
        if (!this.ready) {
          this.ready = true;
          this.identity?.forgetDead();
          this.log.info('ready', { mailbox: source.folders.inbox, uidValidity: source.inboxValidity, handled: this.handled, dryRun: this.dryRun });
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
    let nextKeepalive = Date.now() + KEEPALIVE_MS;
    while (!this.stopping && !this.reconnectRequested) {
      if (!source.usable) throw new Error('connection closed by the server');
      this.setState('idle');
      const now = Date.now();
      const until = Math.min(nextKeepalive, this.nextCatchUpAt, pollMs ? nextPoll : Infinity);
      if (!this.mailWaiting) await this.pause(until - now);
      if (this.stopping || this.reconnectRequested) return;
      if (!source.usable) throw new Error('connection closed by the server');
      const after = Date.now();
      if (after >= this.nextCatchUpAt) {
        this.setState('syncing');
        await this.catchUp();
      } else if (this.mailWaiting || (pollMs && after >= nextPoll)) {
        this.setState('syncing');
        await this.syncInbox();
      } else if (after >= nextKeepalive) {
        await source.noop();
      }
      if (pollMs && Date.now() >= nextPoll) nextPoll = Date.now() + pollMs;
      nextKeepalive = Date.now() + KEEPALIVE_MS;
    }
  }

  /** After a (re)connect and now and then: the processing folder first, then the inbox. */
  private async catchUp(): Promise<void> {
    this.nextCatchUpAt = Date.now() + CATCH_UP_MS;
    // Counted afresh: a message another agent has filed meanwhile is no longer waiting.
    this.leasedElsewhere.clear();
    // A dry run reads the inbox only: the processing folder is none of its business (it may not even exist).
    if (!this.dryRun) await this.recoverProcessing();
    await this.syncInbox();
  }

  /** Messages left in the processing folder: by a crash, a lost connection, or an agent that died. */
  private async recoverProcessing(): Promise<void> {
    const source = this.source!;
    const uids = await source.listUids(source.folders.processing);
    if (uids.length) this.log.info('recovering messages left in processing', { count: uids.length });
    for (let i = 0; i < uids.length && !this.stopping; i += RECOVERY_BATCH) {
      await this.work(source.folders.processing, uids.slice(i, i + RECOVERY_BATCH));
    }
  }

  /** Claims and handles everything in the inbox, until it is empty (or the agent is stopping). */
  private async syncInbox(): Promise<void> {
    const source = this.source!;
    for (;;) {
      this.mailWaiting = false;
      const uids = await source.listUids(source.folders.inbox);
      if (this.dryRun) {
        this.handled += await this.dryRunPreview.show(source, uids, this.config.limits.maxMessageBytes, (raw) => this.deps(raw));
        break;
      }
      if (uids.length === 0 || this.stopping) break;
      let claimed = 0;
      for (let i = 0; i < uids.length && !this.stopping; i += FETCH_BATCH) claimed += await this.claimSlice(uids.slice(i, i + FETCH_BATCH));
      // What is left is leased by other agents (they move it) or gone: listing again now would spin.
      if (claimed === 0) break;
      if (this.once && !this.mailWaiting) {
        // --once handles what was there when it looked, plus what came meanwhile, then stops.
        const more = await source.listUids(source.folders.inbox);
        if (more.length === 0) break;
      }
    }
    await source.selectInbox(); // idle where new mail arrives
    this.lastEvent = { what: 'synced', at: new Date() };
  }

  /** Downloads messages of `folder` (cut after the size limit), each with the lease of its key taken; a message another agent holds is left out. */
  private async fetchAndLease(folder: string, uids: number[]): Promise<Held[]> {
    const maxBytes = this.config.limits.maxMessageBytes;
    const fetched = [...(await this.source!.fetchSources(folder, uids, maxBytes + 1))];
    const taken = await Promise.allSettled(
      fetched.map(async ([uid, raw]): Promise<Held | undefined> => {
        const key = await messageKey(raw, maxBytes);
        const lease = await leaseMessage(this.store, this.identity!, key, messageLeaseMs(this.config));
        if (lease) {
          this.leasedElsewhere.delete(key);
          return { uid, raw, key, lease };
        }
        // Another agent works on it, or one that crashed still holds it until its lease expires.
        this.leasedElsewhere.add(key);
        this.log.debug('message is being handled by another agent', { key, uid, folder });
        return undefined;
      }),
    );
    const held = taken.flatMap((t) => (t.status === 'fulfilled' && t.value ? [t.value] : []));
    const failed = taken.find((t): t is PromiseRejectedResult => t.status === 'rejected');
    if (failed) {
      await Promise.all(held.map((h) => h.lease.release().catch(() => undefined)));
      throw failed.reason;
    }
    return held;
  }

  /**
   * Claims a few inbox messages: leases them, then moves the leased ones into the processing folder,
   * and handles them there. Returns how many it moved.
   */
  private async claimSlice(uids: number[]): Promise<number> {
    const source = this.source!;
    const leased = await this.fetchAndLease(source.folders.inbox, uids);
    if (leased.length === 0) return 0;
    let claimed: Map<number, number> | 'unknown';
    try {
      claimed = await source.claim(leased.map((h) => h.uid));
    } catch (err) {
      await Promise.all(leased.map((h) => h.lease.release().catch(() => undefined)));
      throw err;
    }
    if (claimed === 'unknown') {
      // Without UIDPLUS the new UIDs are unknown: give the leases back and take the messages up in the processing folder.
      await Promise.all(leased.map((h) => h.lease.release().catch(() => undefined)));
      await this.recoverProcessing();
      return leased.length;
    }
    const moved: Held[] = [];
    for (const h of leased) {
      const uid = claimed.get(h.uid);
      if (uid === undefined) await h.lease.release().catch(() => undefined); // gone from the inbox meanwhile
      else moved.push({ ...h, uid });
    }
    await this.handleAndFile(source.folders.processing, moved, 'inbox');
    return moved.length;
  }

  /** Fetches, handles and files messages left in `folder`, a few at a time (memory). */
  private async work(folder: string, uids: number[]): Promise<void> {
    for (let i = 0; i < uids.length && !this.stopping; i += FETCH_BATCH) {
      await this.handleAndFile(folder, await this.fetchAndLease(folder, uids.slice(i, i + FETCH_BATCH)), 'recovery');
    }
  }

  private async handleAndFile(folder: string, held: Held[], origin: 'inbox' | 'recovery'): Promise<void> {
    const source = this.source!;
    const results = await mapLimit(held, CONCURRENCY, (h) => this.handle(h, origin));
    const done = new Set<number>();
    try {
      for (const to of ['processed', 'rejected'] as const) {
        const group = results.filter((r) => r.to === to).map((r) => r.uid);
        const target = to === 'processed' ? source.folders.processed : source.folders.rejected;
        if (group.length === 0) continue;
        if (await source.move(group, folder, target)) group.forEach((uid) => done.add(uid));
        else this.log.warn('could not file messages; they stay in processing', { folder: target, count: group.length });
      }
    } finally {
      // Filed: keep the lease (it marks the message as done for a while); otherwise give it back.
      await Promise.all(results.map((r) => (done.has(r.uid) ? this.keptLeases.keep(r.lease) : r.lease.release().catch(() => undefined))));
    }
  }

  private async handle({ uid, raw, key, lease }: Held, origin: 'inbox' | 'recovery'): Promise<Handled> {
    try {
      if (origin === 'recovery' && (await this.store.get(key))?.state === 'replied') {
        // Answered before the agent stopped; only the filing was missing.
        this.log.info('handled', { key, decision: 'already-answered', uid, recovered: true });
        return { uid, to: 'processed', lease };
      }
      const started = performance.now();
      const outcome = await processMessage(raw, this.deps(raw));
      this.handled++;
      if (outcome.kind === 'reply') this.outbox?.kick();
      if (outcome.kind === 'silent' && origin === 'recovery' && (await this.store.get(key))?.state === 'replied') {
        // The outbox sent its stored reply meanwhile: answered, not rejected.
        this.log.info('handled', { key, decision: 'already-answered', uid, recovered: true });
        return { uid, to: 'processed', lease };
      }
      this.log.info('handled', {
        key: outcome.kind === 'reply' ? outcome.key : key,
        decision: outcome.kind === 'reply' ? outcome.decision : 'dropped',
        ...(outcome.kind === 'silent' && { reason: outcome.reason }),
        uid,
        bytes: raw.length,
        ...(origin === 'recovery' && { recovered: true }),
        ms: Math.round(performance.now() - started),
      });
      return { uid, to: filing(outcome), lease };
    } catch (err) {
      this.log.error('message not handled; it stays in processing and is tried again', { key, uid, err });
      this.nextCatchUpAt = Math.min(this.nextCatchUpAt, Date.now() + RETRY_FAILED_MS);
      return { uid, lease };
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
    await this.keptLeases.releaseAll();
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

/** Processed once a reply is queued; Rejected for refusals and silence. */
function filing(outcome: Outcome): 'processed' | 'rejected' {
  return outcome.kind === 'reply' && outcome.decision !== 'rejected' ? 'processed' : 'rejected';
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
