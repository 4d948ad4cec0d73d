import { randomUUID } from 'node:crypto';
import type MailComposerClass from 'nodemailer/lib/mail-composer';
import type { Config } from '../config/types';
import type { Attachment } from '../render/transcript';
import type { IncomingMail } from './parse';

/** A reply ready to hand to SMTP: the exact bytes and the envelope. */
export interface ReplyMessage {
  messageId: string;
  envelope: { from: string; to: string[] };
  raw: Buffer;
}

export interface ReplyContent {
  to: string;
  /** Appended to the subject after a dash, e.g. "processed (2 ok, 0 failed)". */
  status: string;
  text: string;
  attachments?: Attachment[];
}

/** The status a previous reply appended, so a reply to a reply does not grow a chain of them. */
// (?<!\s): the match starts at the first space of a run, so a long run of spaces is linear, not quadratic.
const OUR_STATUS = /(?<!\s)\s+—\s+(processed|not processed|no command found|outcome unknown|confirmation needed)\b[^—]*$/;

function replySubject(original: string, status: string): string {
  const base = original.trim().replace(OUR_STATUS, '') || '(no subject)';
  return `${/^re\s*:/i.test(base) ? base : `Re: ${base}`} — ${status}`;
}

/**
 * Builds the reply as RFC 5322 bytes: threaded under the request (In-Reply-To, References) and
 * marked as automatic (RFC 3834) so that other agents and auto-responders do not answer it.
 */
export async function composeReply(config: Config, incoming: IncomingMail, content: ReplyContent, now: Date): Promise<ReplyMessage> {
  const MailComposer = require('nodemailer/lib/mail-composer') as typeof MailComposerClass;
  const domain = config.agent.address.split('@')[1];
  const messageId = `<${randomUUID()}@${domain}>`;
  const references = [...incoming.references, ...(incoming.messageId ? [incoming.messageId] : [])];
  const mail = new MailComposer({
    from: { name: config.agent.name ?? 'mailagent', address: config.agent.address },
    to: content.to,
    subject: replySubject(incoming.subject, content.status),
    messageId,
    date: now,
    inReplyTo: incoming.messageId,
    references: references.length ? references : undefined,
    headers: { 'Auto-Submitted': 'auto-replied', 'X-Loop': config.agent.address },
    text: content.text,
    attachments: content.attachments?.map((a) => ({ filename: a.filename, contentType: a.contentType, content: a.content })),
  });
  const raw = await new Promise<Buffer>((resolve, reject) => mail.compile().build((err: Error | null, msg: Buffer) => (err ? reject(err) : resolve(msg))));
  return { messageId, envelope: { from: config.agent.address, to: [content.to] }, raw };
}
