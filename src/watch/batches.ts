import type { Config } from '../config/types';
import type { Logger } from '../core/log';
import type { Outcome } from '../core/outcome';
import { processMessage, type PipelineDeps } from '../core/pipeline';
import type { ImapSource } from '../mail/imap-source';
import type { StateStore } from '../state/store';
import { DryRunPreview } from './dry-run';
import { messageKey } from './headers';
import { capYoungGeneration } from './heap';
import { KeptLeases, leaseMessage, messageLeaseMs, type AgentIdentity, type MessageLease } from './leases';
import { mapLimit, WorkQueue } from './work-queue';

/** Small messages downloaded, leased and claimed at once. */
const FETCH_BATCH = 20;
/** Larger than this, a message is downloaded on its own: a slice of small ones stays under 5 MiB. */
const LARGE_MESSAGE_BYTES = 256 * 1024;
/** Messages run through the pipeline at the same time. */
const CONCURRENCY = 10;
/**
 * The next slice of the inbox is claimed while the pipeline still works on fewer than this many
 * messages holding fewer than HELD_BYTES: the IMAP round trips of a claim overlap the work, and
 * what is held stays bounded (what the pipeline holds plus one slice; a message is at most
 * limits.maxMessageBytes + 1 bytes, cut after that).
 */
const CLAIM_AHEAD = 10;
const HELD_BYTES = 8 * 1024 * 1024;
/**
 * Handled messages are filed (one MOVE out of the processing folder) this many at a time, or when
 * the inbox is empty: each filing costs two SELECTs, and the reply is out already.
 */
const FILE_BATCH = 50;
/** A full catch-up now and then: the processing folder (leases of dead agents expire) and the inbox. */
export const CATCH_UP_MS = 5 * 60_000;
/** A message that failed for a temporary reason is retried this soon. */
const RETRY_FAILED_MS = 30_000;

/** What the batches need of the agent around them: the open connection, the config in force, the pipeline's dependencies. */
export interface BatchHost {
  readonly config: Config;
  readonly store: StateStore;
  readonly log: Logger;
  /** Needed for leases; a dry run takes none. */
  readonly identity: AgentIdentity | undefined;
  readonly dryRun: boolean;
  readonly once: boolean;
  /** The connection of the current session (only read while connected). */
  readonly source: ImapSource;
  /** Set once SIGTERM arrived: take nothing new. */
  readonly stopping: boolean;
  deps(raw: Buffer): PipelineDeps;
  /** Recognises the agent's own heartbeat probes (authenticated): they are filed without a reply. */
  readonly heartbeat?: { accept(raw: Buffer): Promise<boolean> };
  /** A reply is in the outbox: send it now rather than at the next pass. */
  replyQueued(): void;
  /** The inbox has been looked through (for status). */
  synced(): void;
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
 * The work on messages, one connection at a time: each message is leased in the state store,
 * then claimed by MOVE into the processing folder, run through processMessage, and filed once its
 * reply is in the outbox. The lease comes first so that a message in the processing folder always
 * has a live holder, unless its agent died: recovery then never takes a message another agent
 * has just moved. The reconnect state machine around it is in agent.ts.
 */
export class MessageBatches {
  /** Messages run through the pipeline since the start, and when the last one was (epoch ms). */
  handled = 0;
  lastHandledAt: number | undefined;
  /** The server said new mail arrived since the inbox was last looked through. */
  mailWaiting = false;
  /** When the next full catch-up is due (epoch ms). */
  nextCatchUpAt = 0;
  /** Keys of messages another agent held a lease on when this one last looked (status). */
  readonly leasedElsewhere = new Set<string>();
  private readonly keptLeases: KeptLeases;
  /** dry-run: what each inbox message would get, logged once. */
  private readonly dryRunPreview: DryRunPreview;

  constructor(private readonly host: BatchHost) {
    this.keptLeases = new KeptLeases(() => messageLeaseMs(host.config));
    this.dryRunPreview = new DryRunPreview(host.log);
  }

  /** Shutdown: the leases kept on filed messages are given back. */
  releaseKept(): Promise<void> {
    return this.keptLeases.releaseAll();
  }

  /** After a (re)connect and now and then: the processing folder first, then the inbox. */
  async catchUp(): Promise<void> {
    this.nextCatchUpAt = Date.now() + CATCH_UP_MS;
    // Counted afresh: a message another agent has filed meanwhile is no longer waiting.
    this.leasedElsewhere.clear();
    // A dry run reads the inbox only: the processing folder is none of its business (it may not even exist).
    if (!this.host.dryRun) await this.recoverProcessing();
    await this.syncInbox();
  }

  /** Messages left in the processing folder: by a crash, a lost connection, or an agent that died. */
  private async recoverProcessing(): Promise<void> {
    const source = this.host.source;
    const uids = await source.listUids(source.folders.processing);
    if (uids.length === 0) return;
    this.host.log.info('recovering messages left in processing', { count: uids.length });
    for (const slice of slices(uids, await this.largeAmong(source.folders.processing, uids))) {
      if (this.host.stopping) break;
      await this.handleAndFile(source.folders.processing, await this.fetchAndLease(source.folders.processing, slice), 'recovery');
    }
  }

  /** Claims and handles everything in the inbox, until it is empty (or the agent is stopping). */
  async syncInbox(): Promise<void> {
    const source = this.host.source;
    for (;;) {
      this.mailWaiting = false;
      const uids = await source.listUids(source.folders.inbox);
      if (this.host.dryRun) {
        this.handled += await this.dryRunPreview.show(source, uids, this.host.config.limits.maxMessageBytes, (raw) => this.host.deps(raw));
        break;
      }
      if (uids.length === 0 || this.host.stopping) break;
      const claimed = await this.claimAndHandle(uids);
      // What is left is leased by other agents (they move it) or gone: listing again now would spin.
      if (claimed === 0) break;
      if (this.host.once && !this.mailWaiting) {
        // --once handles what was there when it looked, plus what came meanwhile, then stops.
        const more = await source.listUids(source.folders.inbox);
        if (more.length === 0) break;
      }
    }
    await source.selectInbox(); // idle where new mail arrives
    this.host.synced();
  }

  /**
   * Claims the inbox messages a slice at a time and hands them to the pipeline as they come: the
   * next slice is claimed while the pipeline works on this one. Handled messages are filed in
   * groups. Returns how many it moved into the processing folder.
   */
  private async claimAndHandle(uids: number[]): Promise<number> {
    const source = this.host.source;
    const work = new WorkQueue<Held, Handled>(CONCURRENCY, (h) => this.handle(h, 'inbox'), (h) => h.raw.length);
    const large = await this.largeAmong(source.folders.inbox, uids);
    let claimed = 0;
    try {
      for (const slice of slices(uids, large)) {
        if (this.host.stopping) break;
        await work.below(CLAIM_AHEAD, HELD_BYTES);
        if (work.finished.length >= FILE_BATCH) await this.file(source.folders.processing, work.takeFinished());
        const moved = await this.claimSlice(slice);
        if ('withoutUids' in moved) {
          // The new UIDs are unknown: take the messages up in the processing folder, once the
          // pipeline is done with those it holds (recovery would lease them too).
          await work.idle();
          await this.file(source.folders.processing, work.takeFinished());
          await this.recoverProcessing();
          claimed += moved.withoutUids;
          continue;
        }
        work.push(moved.held);
        claimed += moved.held.length;
      }
    } finally {
      // Whatever happened, messages the pipeline took are finished and filed (or given back).
      await work.idle();
      await this.file(source.folders.processing, work.takeFinished());
    }
    return claimed;
  }

  /** Downloads messages of `folder` (cut after the size limit), each with the lease of its key taken; a message another agent holds is left out. */
  private async fetchAndLease(folder: string, uids: number[]): Promise<Held[]> {
    const maxBytes = this.host.config.limits.maxMessageBytes;
    const fetched = [...(await this.host.source.fetchSources(folder, uids, maxBytes + 1))];
    const taken = await Promise.allSettled(
      fetched.map(async ([uid, raw]): Promise<Held | undefined> => {
        const key = await messageKey(raw, maxBytes);
        const lease = await leaseMessage(this.host.store, this.host.identity!, key, messageLeaseMs(this.host.config));
        if (lease) {
          this.leasedElsewhere.delete(key);
          return { uid, raw, key, lease };
        }
        // Another agent works on it, or one that crashed still holds it until its lease expires.
        this.leasedElsewhere.add(key);
        this.host.log.debug('message is being handled by another agent', { key, uid, folder });
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
   * Claims a few inbox messages: leases them, then moves the leased ones into the processing
   * folder. Returns them with their UIDs there, or only how many moved when the server does not
   * tell the new UIDs (no UIDPLUS: the leases are given back).
   */
  private async claimSlice(uids: number[]): Promise<{ held: Held[] } | { withoutUids: number }> {
    const source = this.host.source;
    const leased = await this.fetchAndLease(source.folders.inbox, uids);
    if (leased.length === 0) return { held: [] };
    let claimed: Map<number, number> | 'unknown';
    try {
      claimed = await source.claim(leased.map((h) => h.uid));
    } catch (err) {
      await Promise.all(leased.map((h) => h.lease.release().catch(() => undefined)));
      throw err;
    }
    if (claimed === 'unknown') {
      await Promise.all(leased.map((h) => h.lease.release().catch(() => undefined)));
      return { withoutUids: leased.length };
    }
    const moved: Held[] = [];
    for (const h of leased) {
      const uid = claimed.get(h.uid);
      if (uid === undefined) await h.lease.release().catch(() => undefined); // gone from the inbox meanwhile
      else moved.push({ ...h, uid });
    }
    return { held: moved };
  }

  /** Which of `uids` are large: one SEARCH, skipped for a single message (downloaded alone anyway). */
  private async largeAmong(folder: string, uids: number[]): Promise<Set<number>> {
    return uids.length > 1 ? this.host.source.largerThan(folder, LARGE_MESSAGE_BYTES) : new Set();
  }

  private async handleAndFile(folder: string, held: Held[], origin: 'inbox' | 'recovery'): Promise<void> {
    await this.file(folder, await mapLimit(held, CONCURRENCY, (h) => this.handle(h, origin)));
  }

  /** Files handled messages of `folder` by where they go; the leases of filed ones are kept, the others given back. */
  private async file(folder: string, results: Handled[]): Promise<void> {
    if (results.length === 0) return;
    const source = this.host.source;
    const done = new Set<number>();
    try {
      for (const to of ['processed', 'rejected'] as const) {
        const group = results.filter((r) => r.to === to).map((r) => r.uid);
        const target = to === 'processed' ? source.folders.processed : source.folders.rejected;
        if (group.length === 0) continue;
        if (await source.move(group, folder, target)) group.forEach((uid) => done.add(uid));
        else this.host.log.warn('could not file messages; they stay in processing', { folder: target, count: group.length });
      }
    } catch (err) {
      // The connection failed: what is not filed stays in processing, answered; recovery files it.
      this.host.log.warn('could not file messages; they stay in processing', { count: results.length - done.size, err });
    } finally {
      // Filed: keep the lease (it marks the message as done for a while); otherwise give it back.
      await Promise.all(results.map((r) => (done.has(r.uid) ? this.keptLeases.keep(r.lease) : r.lease.release().catch(() => undefined))));
    }
  }

  private async handle({ uid, raw, key, lease }: Held, origin: 'inbox' | 'recovery'): Promise<Handled> {
    try {
      if (origin === 'recovery' && (await this.host.store.get(key))?.state === 'replied') {
        // Answered before the agent stopped; only the filing was missing.
        this.host.log.info('handled', { key, decision: 'already-answered', uid, recovered: true });
        return { uid, to: 'processed', lease };
      }
      // Before the pipeline, which would drop a probe as automatic mail of our own.
      if (await this.host.heartbeat?.accept(raw)) {
        this.host.log.debug('handled', { key, decision: 'heartbeat probe', uid });
        return { uid, to: 'processed', lease };
      }
      const started = performance.now();
      const outcome = await processMessage(raw, this.host.deps(raw));
      capYoungGeneration();
      this.handled++;
      this.lastHandledAt = Date.now();
      if (outcome.kind === 'reply') this.host.replyQueued();
      if (outcome.kind === 'silent' && origin === 'recovery' && (await this.host.store.get(key))?.state === 'replied') {
        // The outbox sent its stored reply meanwhile: answered, not rejected.
        this.host.log.info('handled', { key, decision: 'already-answered', uid, recovered: true });
        return { uid, to: 'processed', lease };
      }
      this.host.log.info('handled', {
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
      this.host.log.error('message not handled; it stays in processing and is tried again', { key, uid, err });
      this.nextCatchUpAt = Math.min(this.nextCatchUpAt, Date.now() + RETRY_FAILED_MS);
      return { uid, lease };
    }
  }
}

/** Processed once a reply is queued; Rejected for refusals and silence. */
function filing(outcome: Outcome): 'processed' | 'rejected' {
  return outcome.kind === 'reply' && outcome.decision !== 'rejected' ? 'processed' : 'rejected';
}

/** UIDs in slices for one download each: up to FETCH_BATCH small messages, or one large one. */
function* slices(uids: number[], large: Set<number>): Generator<number[]> {
  let small: number[] = [];
  for (const uid of uids) {
    if (large.has(uid)) {
      yield [uid];
      continue;
    }
    small.push(uid);
    if (small.length === FETCH_BATCH) {
      yield small;
      small = [];
    }
  }
  if (small.length) yield small;
}
