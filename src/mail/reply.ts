import { randomUUID } from 'node:crypto';
import type { Config } from '../config/types';
import type { Attachment } from '../render/transcript';
import { composeMessage } from './compose';
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
// \u2014 is the dash (—), escaped to keep the bundle ASCII (see CLOSING in src/core/lines.ts).
const OUR_STATUS = /(?<!\s)\s+\u2014\s+(processed|not processed|no command found|outcome unknown|confirmation needed)\b[^\u2014]*$/;

/** Bounds on what a reply copies from the request: one hostile header must not make a huge reply. */
export const REPLY_LIMITS = { subjectChars: 200, referencesBytes: 2000, idBytes: 250, textBytes: 256 * 1024 };

/** The first `max` characters (code points, so a surrogate pair is never split), with "…" when cut. */
function cutChars(text: string, max: number): string {
  if (text.length <= max) return text;
  const chars = Array.from(text.slice(0, 2 * max));
  return chars.length <= max && text.length <= 2 * max ? text : `${chars.slice(0, max).join('')}…`;
}

function replySubject(original: string, status: string): string {
  const base = cutChars(original.slice(0, 4 * REPLY_LIMITS.subjectChars).trim().replace(OUR_STATUS, ''), REPLY_LIMITS.subjectChars) || '(no subject)';
  return `${/^re\s*:/i.test(base) ? base : `Re: ${base}`} — ${status}`;
}

/**
 * RFC 5322 3.6.4 allows trimming References: the first id (the thread's root) and as many of the
 * latest as fit, which is what threading uses. Oversized ids are left out.
 */
function boundedReferences(ids: string[]): string[] | undefined {
  const usable = ids.filter((id) => id.length <= REPLY_LIMITS.idBytes);
  if (usable.length === 0) return undefined;
  const [root, ...rest] = usable;
  const tail: string[] = [];
  let bytes = root.length;
  for (let i = rest.length - 1; i >= 0 && bytes + rest[i].length + 1 <= REPLY_LIMITS.referencesBytes; i--) {
    tail.unshift(rest[i]);
    bytes += rest[i].length + 1;
  }
  return [root, ...tail];
}

/** The reply's text, cut (with a note) past the limit: attachments carry bulk, the body stays readable. */
function boundedText(text: string): string {
  if (text.length <= REPLY_LIMITS.textBytes / 4 || Buffer.byteLength(text) <= REPLY_LIMITS.textBytes) return text;
  const cut = Buffer.from(text).subarray(0, REPLY_LIMITS.textBytes).toString('utf8').replace(/\uFFFD$/, '');
  return `${cut.slice(0, cut.lastIndexOf('\n') + 1)}\n[… the reply was cut at ${REPLY_LIMITS.textBytes / 1024} KB]\n`;
}

/** Our own Message-IDs carry this mark, so that a reply of ours coming back is recognised. */
const OWN_ID_PREFIX = 'mailagent.';

export function isOwnMessageId(id: string, agentAddress: string): boolean {
  const at = id.lastIndexOf('@');
  return id.startsWith(`<${OWN_ID_PREFIX}`) && id.slice(at + 1, -1).toLowerCase() === agentAddress.split('@')[1].toLowerCase();
}

/** Headers that mark our mail as automatic (RFC 3834), so that other agents and auto-responders do not answer it. */
function compose(
  config: Config,
  fields: { to: string; subject: string; inReplyTo?: string; references?: string[]; autoSubmitted: 'auto-replied' | 'auto-generated'; text: string; attachments?: Attachment[] },
  now: Date,
): Promise<ReplyMessage> {
  const domain = config.agent.address.split('@')[1];
  const messageId = `<${OWN_ID_PREFIX}${randomUUID()}@${domain}>`;
  return composeMessage({
    from: { name: config.agent.name ?? 'mailagent', address: config.agent.address },
    to: fields.to,
    subject: fields.subject,
    messageId,
    date: now,
    inReplyTo: fields.inReplyTo,
    references: fields.references,
    // X-Auto-Response-Suppress: Exchange and Outlook send no out-of-office or receipt for it.
    headers: { 'Auto-Submitted': fields.autoSubmitted, 'X-Loop': config.agent.address, 'X-Auto-Response-Suppress': 'All' },
    text: boundedText(fields.text),
    attachments: fields.attachments?.map((a) => ({ filename: a.filename, contentType: a.contentType, ...('path' in a ? { path: a.path } : { content: a.content }) })),
  }).then((raw) => ({
    messageId,
    envelope: { from: config.agent.address, to: [fields.to] },
    raw,
  }));
}

/** The reply to a request: threaded under it (In-Reply-To, References), its subject with our status. */
export function composeReply(config: Config, incoming: IncomingMail, content: ReplyContent, now: Date): Promise<ReplyMessage> {
  const inReplyTo = incoming.messageId && incoming.messageId.length <= REPLY_LIMITS.idBytes ? incoming.messageId : undefined;
  const references = boundedReferences([...incoming.references, ...(incoming.messageId ? [incoming.messageId] : [])]);
  return compose(config, { to: content.to, subject: replySubject(incoming.subject, content.status), inReplyTo, references, autoSubmitted: 'auto-replied', text: content.text, attachments: content.attachments }, now);
}

/** A mail the agent sends on its own (a scheduled result, an alert): "mailagent: <subject>". */
export function composeNotice(config: Config, content: { to: string; subject: string; text: string; attachments?: Attachment[] }, now: Date): Promise<ReplyMessage> {
  const subject = `${config.agent.name ?? 'mailagent'}: ${cutChars(content.subject, REPLY_LIMITS.subjectChars)}`;
  return compose(config, { ...content, subject, autoSubmitted: 'auto-generated' }, now);
}
