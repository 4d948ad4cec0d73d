import type { ImapFlow } from 'imapflow';
import type { Config, ImapConfig } from '../config/types';
import { resolveSecret } from '../config/secrets';
import type { Logger } from '../core/log';
import { tokensFor } from './oauth2';

/** The folders a request travels through: arrives in inbox → processing → processed | rejected. */
export interface Folders {
  inbox: string;
  processing: string;
  processed: string;
  rejected: string;
}

export function foldersOf(imap: ImapConfig): Folders {
  return {
    inbox: imap.mailbox ?? 'INBOX',
    processing: imap.folders?.processing ?? 'Processing',
    processed: imap.folders?.processed ?? 'Processed',
    rejected: imap.folders?.rejected ?? 'Rejected',
  };
}

export interface ImapSourceEvents {
  /** New mail may be in the inbox (EXISTS while it is selected). */
  onMail: () => void;
  /** The connection is gone; the source is not usable any more. */
  onClose: () => void;
  /** For `status`: what the server last said. */
  onEvent: (what: string) => void;
}

export interface ImapSourceOptions {
  /**
   * Dry run: change nothing on the server. Missing folders are reported, not created; every folder
   * is opened with EXAMINE (read-only: even \Seen and \Recent stay as they are); claim() and move()
   * refuse. Fetches never set \Seen in either mode: imapflow asks for BODY.PEEK[].
   */
  readOnly?: boolean;
  /** readOnly: folders already reported missing, so that each is logged once, not on every reconnect. */
  reportedMissing?: Set<string>;
}

/** Ask the server for IDLE again before the 29 minutes after which RFC 2177 lets it drop us. */
const IDLE_RESTART_MS = 25 * 60_000;
/** How long the connection must be quiet before IDLE starts: imapflow's 15 s default delays new mail. */
const AUTO_IDLE_DELAY_MS = 50;

/**
 * One IMAP connection (imapflow) to the agent's mailbox. The agent runs one command sequence at a
 * time on it; between sequences the inbox is selected and imapflow keeps it in IDLE (or, in poll
 * mode, quiet: the agent's own timer scans it).
 */
export class ImapSource {
  readonly folders: Folders;
  /** Seconds between scans when the server is polled instead of IDLE; 0 = IDLE. */
  readonly pollSeconds: number;
  /** UIDVALIDITY of the inbox when it was last selected. */
  inboxValidity: bigint | undefined;
  /** Dry run: nothing on the server may change (see ImapSourceOptions.readOnly). */
  readonly readOnly: boolean;
  private closed = false;

  private constructor(
    private readonly client: ImapFlow,
    folders: Folders,
    pollSeconds: number,
    private readonly log: Logger,
    readOnly: boolean,
  ) {
    this.folders = folders;
    this.pollSeconds = pollSeconds;
    this.readOnly = readOnly;
  }

  /**
   * Connects, logs in, creates missing folders (read-only: reports them) and selects the inbox.
   * With OAuth2, a refused access token is refreshed once and the login tried again.
   */
  static async connect(config: Config, log: Logger, events: ImapSourceEvents, options: ImapSourceOptions = {}): Promise<ImapSource> {
    const tokens = tokensFor(config, 'imap');
    if (!tokens) return ImapSource.open(config, log, events, options);
    try {
      return await ImapSource.open(config, log, events, options, await tokens.accessToken());
    } catch (err) {
      if (!authenticationFailed(err)) throw err;
      log.info('IMAP refused the OAuth2 access token: refreshing it and logging in again', { user: config.imap!.user });
      return ImapSource.open(config, log, events, options, await tokens.accessToken(true));
    }
  }

  private static async open(config: Config, log: Logger, events: ImapSourceEvents, options: ImapSourceOptions, accessToken?: string): Promise<ImapSource> {
    const imap = config.imap!;
    const { ImapFlow } = require('imapflow') as typeof import('imapflow');
    const poll = (imap.pollSeconds ?? 0) > 0;
    const quiet = (entry: Record<string, unknown>) => log.debug('imap', { ...entry, msg: undefined, message: entry.msg });
    const client = new ImapFlow({
      host: imap.host,
      port: imap.port ?? (imap.secure ? 993 : 143),
      secure: imap.secure ?? false,
      tls: { rejectUnauthorized: imap.rejectUnauthorized ?? true },
      auth: accessToken ? { user: imap.user, accessToken } : { user: imap.user, pass: imap.password ? resolveSecret(imap.password, config.file, 'imap.password') : '' },
      logger: { debug: () => {}, info: () => {}, warn: quiet, error: quiet },
      autoIdleDelay: AUTO_IDLE_DELAY_MS,
      maxIdleTime: IDLE_RESTART_MS,
      disableAutoIdle: poll,
      connectionTimeout: 15_000,
      greetingTimeout: 10_000,
      socketTimeout: 5 * 60_000,
    });
    const folders = foldersOf(imap);
    let source: ImapSource | undefined;
    client.on('error', (err: Error) => {
      log.debug('imap connection error', { err });
      events.onEvent(`error: ${err.message}`);
    });
    client.on('close', () => {
      events.onEvent('connection closed');
      if (source && !source.closed) {
        source.closed = true;
        events.onClose();
      }
    });
    client.on('exists', (data: { path: string; count: number; prevCount: number }) => {
      events.onEvent(`${data.path}: ${data.count} messages`);
      if (data.path === folders.inbox && data.count > 0) events.onMail();
    });
    try {
      await client.connect();
    } catch (err) {
      client.close();
      throw err;
    }
    // Without IDLE on the server, poll every 30 s unless the config says otherwise.
    const pollSeconds = poll ? imap.pollSeconds! : client.capabilities.has('IDLE') ? 0 : 30;
    source = new ImapSource(client, folders, pollSeconds, log, options.readOnly ?? false);
    try {
      await source.ensureFolders(options.reportedMissing ?? new Set());
      await source.selectInbox();
    } catch (err) {
      await source.close();
      throw err;
    }
    events.onEvent('connected');
    return source;
  }

  get usable(): boolean {
    return !this.closed && this.client.usable;
  }

  private async ensureFolders(reported: Set<string>): Promise<void> {
    const existing = new Set((await this.client.list()).map((m) => m.path));
    for (const folder of [this.folders.processing, this.folders.processed, this.folders.rejected]) {
      if (existing.has(folder)) continue;
      if (this.readOnly) {
        // A dry run reads the inbox only: it works without these folders and must not create them.
        if (!reported.has(folder)) this.log.info('folder missing, would be created', { folder });
        reported.add(folder);
        continue;
      }
      const created = await this.client.mailboxCreate(folder);
      if (created.created) this.log.info('created folder', { folder });
    }
  }

  /** Selects the inbox (where the agent idles between work) and notes a UIDVALIDITY change. */
  async selectInbox(): Promise<void> {
    await this.select(this.folders.inbox);
  }

  private async select(path: string): Promise<void> {
    const current = this.client.mailbox;
    if (current && current.path === path && (!this.readOnly || current.readOnly)) return;
    // Read-only: EXAMINE, so that selecting marks nothing (no \Recent consumed, no flag can be set).
    const box = await this.client.mailboxOpen(path, this.readOnly ? { readOnly: true } : undefined);
    if (path === this.folders.inbox) {
      if (this.inboxValidity !== undefined && this.inboxValidity !== box.uidValidity) {
        // UIDs start over; the agent rescans everything and the journal keeps it from answering twice.
        this.log.warn('inbox UIDVALIDITY changed: rescanning', { previous: this.inboxValidity, now: box.uidValidity });
      }
      this.inboxValidity = box.uidValidity;
    }
  }

  /** Every UID in a folder, ascending; messages flagged \Deleted (moved away on a server without MOVE) are left out. */
  async listUids(path: string): Promise<number[]> {
    await this.select(path);
    // No shortcut on the cached message count: when polling, only a command makes the server tell.
    const uids = await this.client.search({ deleted: false }, { uid: true });
    return (uids || []).sort((a, b) => a - b);
  }

  /** UIDs of the messages in a folder larger than `bytes` (SEARCH LARGER): they are downloaded one at a time. */
  async largerThan(path: string, bytes: number): Promise<Set<number>> {
    await this.select(path);
    return new Set((await this.client.search({ deleted: false, larger: bytes }, { uid: true })) || []);
  }

  /**
   * MOVE where the server has it (RFC 6851). Without it: UID COPY, and only when the server
   * confirmed the copy, \Deleted and UID EXPUNGE of exactly these UIDs. imapflow's own fallback
   * deletes the originals even when the COPY failed, losing the only copy; and without UIDPLUS a
   * plain EXPUNGE would remove every \Deleted message of the folder, so the originals are then
   * only flagged \Deleted (listUids skips them). False when the server refused: nothing changed.
   */
  private async transfer(uids: number[], to: string): Promise<{ uidMap?: Map<number, number> } | false> {
    if (this.client.capabilities.has('MOVE')) return this.client.messageMove(uids, to, { uid: true });
    const copied = await this.client.messageCopy(uids, to, { uid: true });
    if (!copied) return false;
    if (this.client.capabilities.has('UIDPLUS')) await this.client.messageDelete(uids, { uid: true });
    else await this.client.messageFlagsAdd(uids, ['\\Deleted'], { uid: true });
    return copied;
  }

  /**
   * Claims messages by moving them from the inbox into the processing folder (atomic on the server:
   * when agents share the mailbox, each message is moved by one of them). Returns, for each UID this
   * agent moved, its UID in the processing folder; a message another agent took is absent. Without
   * UIDPLUS the new UIDs are unknown: 'unknown' then, and the caller scans the processing folder.
   * Throws when the server refuses the move (processing folder deleted, quota, ACL): the caller
   * reconnects after a pause, which recreates missing folders, instead of listing and retrying at once.
   */
  async claim(uids: number[]): Promise<Map<number, number> | 'unknown'> {
    if (uids.length === 0) return new Map();
    this.mustWrite('claim');
    await this.select(this.folders.inbox);
    const result = await this.transfer(uids, this.folders.processing);
    if (result === false) throw new Error(`the server refused to move messages into ${this.folders.processing}`);
    if (!this.client.capabilities.has('UIDPLUS')) return 'unknown';
    return result && result.uidMap ? result.uidMap : new Map();
  }

  /**
   * Raw RFC 822 bytes of messages in a folder, by UID (a message that vanished is absent), each cut
   * after `maxBytes` bytes: a message longer than the size limit is never held whole (the pipeline
   * reads only the header of one that is too large). imapflow fetches `source` as BODY.PEEK[]<…>,
   * so fetching does not set \Seen.
   */
  async fetchSources(path: string, uids: number[], maxBytes = Infinity): Promise<Map<number, Buffer>> {
    const out = new Map<number, Buffer>();
    if (uids.length === 0) return out;
    await this.select(path);
    const source = Number.isFinite(maxBytes) ? { start: 0, maxLength: maxBytes } : true;
    for (const message of await this.client.fetchAll(uids, { uid: true, source }, { uid: true })) {
      if (message.source) out.set(message.uid, message.source);
    }
    return out;
  }

  /** Moves messages between folders; false when the server refused (they stay where they are). */
  async move(uids: number[], from: string, to: string): Promise<boolean> {
    if (uids.length === 0) return true;
    this.mustWrite('move');
    await this.select(from);
    return (await this.transfer(uids, to)) !== false;
  }

  /** A dry run that reached a write is a bug: refuse it rather than change the mailbox. */
  private mustWrite(what: string): void {
    if (this.readOnly) throw new Error(`${what}: the IMAP source is read-only (dry run)`);
  }

  async noop(): Promise<void> {
    await this.client.noop();
  }

  /** Logs out politely when it can, within a second; drops the connection otherwise. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.client.usable) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.client.logout().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, 1000)))]);
      clearTimeout(timer);
    }
    this.client.close();
  }
}

/** True when an error from connect() means the login itself was refused. */
export function authenticationFailed(err: unknown): boolean {
  return Boolean((err as { authenticationFailed?: boolean })?.authenticationFailed);
}
