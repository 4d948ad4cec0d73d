import type { Config } from '../config/types';
import type { ReplyMessage } from '../mail/reply';
import { composeNotice } from '../mail/reply';
import { renderTranscript } from '../render/transcript';
import type { Notice } from '../services/types';
import type { AuditRecord, AuditSink } from '../state/audit';
import type { StateStore } from '../state/store';

/**
 * Puts a mail of ours into the persistent outbox under its own journal key, exactly once: false
 * when that key has a mail already (queued or sent), so a repeat only repeats nothing. The
 * outbox sends it like any reply (retries, backoff, several agents).
 */
export async function queueOwnMail(store: StateStore, key: string, message: ReplyMessage, about: { messageId?: string; sender: string; bodyHash: string }, at: Date): Promise<boolean> {
  if (!(await store.begin(key, { ...about, mutates: false }, { attempt: 0 }))) return false;
  await store.saveReply(key, { messageId: message.messageId, from: message.envelope.from, to: message.envelope.to, raw: message.raw });
  await store.recordEvent('reply', about.sender.toLowerCase(), at.getTime());
  return true;
}

/**
 * Queues a notice (a scheduled result, an alert or its recovery) as a new mail, not threaded
 * under any request; `key` (a firing and its time, an alert and its transition) makes it once.
 */
export async function queueNotice(deps: { config: Config; store: StateStore; audit: AuditSink; now: () => Date }, key: string, notice: Notice): Promise<boolean> {
  const { text, attachments } = renderTranscript([{ text: notice.command, outcome: notice.outcome }], deps.config.limits.tableRowsInBody);
  const now = deps.now();
  const message = await composeNotice(deps.config, { to: notice.to, subject: notice.subject, text, attachments }, now);
  if (!(await queueOwnMail(deps.store, `notice:${key}`, message, { sender: notice.to, bodyHash: 'notice' }, now))) return false;
  const record: AuditRecord = {
    time: now.toISOString(),
    messageId: message.messageId,
    sender: notice.to,
    decision: 'notice',
    reason: notice.subject,
    commands: [{ command: notice.command, ok: notice.outcome.ok, ...(!notice.outcome.ok && { error: notice.outcome.error }), ms: 0 }],
  };
  deps.audit(record);
  return true;
}
