import type { Logger } from '../core/log';
import { processMessage, type PipelineDeps } from '../core/pipeline';
import type { ImapSource } from '../mail/imap-source';
import { messageKey } from './headers';

/**
 * `watch --dry-run`: logs, once per inbox message, the reply it would get and the commands that
 * would run. Nothing moves, runs or is sent (the pipeline's dryRun stops after authorization), and
 * the mailbox is only read: the source is read-only (EXAMINE) and fetches use BODY.PEEK (no \Seen).
 */
export class DryRunPreview {
  /** Messages already shown, by UIDVALIDITY:UID. */
  private readonly shown = new Set<string>();

  constructor(private readonly log: Logger) {}

  /** Shows the messages not shown yet; returns how many it showed. */
  async show(source: ImapSource, uids: number[], maxBytes: number, deps: (raw: Buffer) => PipelineDeps): Promise<number> {
    const fresh = uids.filter((uid) => !this.shown.has(`${source.inboxValidity}:${uid}`));
    const sources = await source.fetchSources(source.folders.inbox, fresh, maxBytes + 1);
    for (const [uid, raw] of sources) {
      this.shown.add(`${source.inboxValidity}:${uid}`);
      const outcome = await processMessage(raw, deps(raw));
      const key = outcome.kind === 'reply' ? outcome.key : await messageKey(raw, maxBytes);
      if (outcome.kind === 'silent') {
        this.log.info('handled', { key, decision: 'dropped', reason: outcome.reason, uid, dryRun: true });
        continue;
      }
      const { parseMail } = require('../mail/parse') as typeof import('../mail/parse');
      const reply = await parseMail(outcome.reply.raw);
      this.log.info('handled', { key, decision: outcome.decision, uid, dryRun: true, to: outcome.reply.envelope.to, subject: reply.subject, reply: reply.body });
    }
    return sources.size;
  }
}
