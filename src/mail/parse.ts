import { createHash } from 'node:crypto';
import type { AddressObject, EmailAddress } from 'mailparser';
import { decodeHeaderValue, decodeText } from './charset';
import { UnreadableMail, htmlToText } from './html-text';
import type { RequestAttachment } from '../services/types';
import { readMimeTree, type MimeOptions, type MimePart } from './mime';

/** What the pipeline needs from an incoming message. */
export interface IncomingMail {
  /** Every mailbox in From:, groups flattened; the pipeline accepts exactly one. */
  from: { address: string; name: string }[];
  subject: string;
  messageId?: string;
  references: string[];
  date?: Date;
  /** Lower-case header name → raw values, for loop detection. */
  header: (name: string) => string[];
  /** The first text/plain part; text converted from the first HTML part when there is none. */
  body: string;
  bodySource: 'plain' | 'html' | 'none';
  /** The visible text of the HTML part that is the plain body's alternative, when there is one. */
  htmlAlternative?: string;
  /** Why the text of the message could not be read (the sender gets this, nothing runs). */
  unreadable?: string;
  /** A delivery or read report (multipart/report, message/delivery-status…): automatic mail. */
  report?: string;
  /** Files attached to the message (spooled when parseMail was given a spool). */
  attachments: RequestAttachment[];
}

function mailboxes(value: unknown): { address: string; name: string }[] {
  const objects = ([] as AddressObject[]).concat((value as AddressObject | AddressObject[]) ?? []);
  const flat = (list: EmailAddress[]): EmailAddress[] => list.flatMap((a) => (a.group ? flat(a.group) : [a]));
  return objects.flatMap((o) => flat(o.value ?? [])).map((a) => ({ address: a.address ?? '', name: a.name ?? '' }));
}

function idList(value: unknown): string[] {
  const list = ([] as string[]).concat((value as string | string[]) ?? []);
  // An id longer than a header line may be (RFC 5322: 998) is no id: it would only bloat keys and replies.
  return list.flatMap((v) => v.match(/<[^<>\s]+>/g) ?? []).filter((id) => id.length <= 998);
}

/**
 * The journal key of a message: its Message-ID, compared as RFC 5322 says (the domain is
 * case-insensitive, the local part is not), else a hash of its bytes.
 */
export function journalKey(messageId: string | undefined, raw: Buffer): string {
  if (!messageId) return `sha256:${createHash('sha256').update(raw).digest('hex')}`;
  const at = messageId.lastIndexOf('@');
  return `mid:${at < 0 ? messageId : messageId.slice(0, at) + messageId.slice(at).toLowerCase()}`;
}

interface HeaderField {
  /** Lower-case field name. */
  key: string;
  /** Unfolded value, trimmed, as a latin1 string of its raw bytes. */
  value: string;
}

const FIELD_NAME = /^[!-9;-~]+$/;

/**
 * The header block split into fields in one linear pass (folded lines joined with a space), and
 * where the body starts: the header is read once here, however large, and never handed whole to
 * a parser that keeps a copy of every line.
 */
function splitHeader(raw: Buffer): { fields: HeaderField[]; bodyStart: number } {
  const cut = [raw.indexOf('\r\n\r\n'), raw.indexOf('\n\n')].filter((i) => i >= 0).sort((a, b) => a - b)[0];
  const end = cut ?? raw.length;
  const bodyStart = cut === undefined ? raw.length : raw[cut] === 0x0d ? cut + 4 : cut + 2;
  const text = raw.subarray(0, end).toString('latin1');
  const fields: HeaderField[] = [];
  let current: { key: string; pieces: string[] } | undefined;
  const finish = () => {
    if (current) fields.push({ key: current.key, value: current.pieces.join(' ').trim() });
    current = undefined;
  };
  for (let at = 0; at < text.length; ) {
    let next = text.indexOf('\n', at);
    if (next < 0) next = text.length;
    const line = text.slice(at, next).replace(/\r$/, '');
    at = next + 1;
    if ((line.startsWith(' ') || line.startsWith('\t')) && current) {
      current.pieces.push(line.replace(/^[ \t]+/, ''));
      continue;
    }
    finish();
    const colon = line.indexOf(':');
    const key = colon > 0 ? line.slice(0, colon).trimEnd() : '';
    if (FIELD_NAME.test(key)) current = { key: key.toLowerCase(), pieces: [line.slice(colon + 1)] };
  }
  finish();
  return { fields, bodyStart };
}

/** Fields whose parsed form comes from mailparser (address lists, dates, ids). */
const PARSED_FIELDS = new Set(['from', 'date', 'message-id', 'references']);
/** References keeps its first ids and its latest ones (what threading and loop checks use). */
const REFERENCES_KEPT = { head: 2048, tail: 8192 };

function keptReferences(value: string): string {
  if (value.length <= REFERENCES_KEPT.head + REFERENCES_KEPT.tail) return value;
  const head = value.slice(0, REFERENCES_KEPT.head);
  const tail = value.slice(-REFERENCES_KEPT.tail);
  return `${head.slice(0, head.lastIndexOf(' ') + 1)}${tail.slice(tail.indexOf(' ') + 1)}`;
}

async function parseHeaders(fields: HeaderField[], wanted: ReadonlySet<string> = PARSED_FIELDS): Promise<Map<string, unknown>> {
  const { MailParser } = require('mailparser') as typeof import('mailparser');
  const block = fields
    .filter((f) => wanted.has(f.key))
    .map((f) => `${f.key}: ${f.key === 'references' ? keptReferences(f.value) : f.value}\r\n`)
    .join('');
  // mailparser counts each header line as at least 64 bytes against its cap; the message size
  // cap (limits.maxMessageBytes) is what bounds the header.
  const parser = new MailParser({ skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true, maxHeadSize: 64 * block.length + 1024 * 1024 } as ConstructorParameters<typeof MailParser>[0]);
  return new Promise<Map<string, unknown>>((resolve, reject) => {
    let headerMap: Map<string, unknown> = new Map();
    parser.on('headers', (h: Map<string, unknown>) => (headerMap = h));
    parser.on('data', () => undefined);
    parser.on('error', reject);
    parser.on('end', () => resolve(headerMap));
    parser.end(Buffer.from(`${block}\r\n`, 'latin1'));
  });
}

/** The body with only the header fields that describe its MIME structure (no copy of the body). */
function mimeBody(raw: Buffer, fields: HeaderField[], bodyStart: number): Buffer[] {
  const structure = fields.filter((f) => f.key.startsWith('content-')).map((f) => `${f.key}: ${f.value}\r\n`).join('');
  return [Buffer.from(`${structure}\r\n`, 'latin1'), raw.subarray(bodyStart)];
}

/** The first part of a type in reading order, never inside an embedded message or an attachment. */
function firstPart(part: MimePart, type: string): MimePart | undefined {
  if (part.contentType.startsWith('message/') || part.disposition === 'attachment') return undefined;
  if (part.contentType === type && part.bytes) return part;
  for (const child of part.children) {
    const found = firstPart(child, type);
    if (found) return found;
  }
  return undefined;
}

/** The multipart/alternative both parts belong to, when they are two versions of one text. */
function alternatives(a: MimePart, b: MimePart): boolean {
  const ancestorsOfA = new Set<MimePart>();
  for (let p = a.parent; p; p = p.parent) ancestorsOfA.add(p);
  for (let p = b.parent; p; p = p.parent) if (ancestorsOfA.has(p)) return p.contentType === 'multipart/alternative';
  return false;
}

const REPORT_PARTS = /^message\/(delivery-status|disposition-notification|feedback-report|global-delivery-status|global-disposition-notification)$/;

function reportIn(part: MimePart): string | undefined {
  if (part.contentType === 'multipart/report') return `a delivery or read report (multipart/report${part.reportType ? `; ${part.reportType}` : ''})`;
  if (REPORT_PARTS.test(part.contentType)) return `a delivery or read report (${part.contentType})`;
  for (const child of part.children) {
    const found = reportIn(child);
    if (found) return found;
  }
  return undefined;
}

const MESSAGE_ID_ONLY = new Set(['message-id']);

/**
 * The Message-ID as parseMail reads it (same parser, same fields), without the rest of the
 * message: what an agent needs to lease a message before it claims it.
 */
export async function messageIdOf(raw: Buffer): Promise<string | undefined> {
  const { fields } = splitHeader(raw);
  return idList((await parseHeaders(fields, MESSAGE_ID_ONLY)).get('message-id'))[0];
}

/**
 * Reads what the pipeline needs: headers (mailparser, on the header block only) and the request
 * text (our own walk of the MIME tree): the first text/plain part, or the visible text of the
 * first HTML part when there is none. Text in embedded messages and attachments is never read.
 */
export async function parseMail(raw: Buffer, options: MimeOptions = {}): Promise<IncomingMail> {
  const { fields, bodyStart } = splitHeader(raw);
  const byName = new Map<string, string[]>();
  for (const f of fields) {
    const values = byName.get(f.key);
    if (values) values.push(f.value);
    else byName.set(f.key, [f.value]);
  }
  const headers = await parseHeaders(fields);
  const date = headers.get('date');
  const subject = byName.get('subject')?.[0];
  const mail: IncomingMail = {
    from: mailboxes(headers.get('from')),
    subject: subject === undefined ? '' : decodeHeaderValue(subject),
    messageId: idList(headers.get('message-id'))[0],
    references: idList(headers.get('references')),
    date: date instanceof Date && !Number.isNaN(date.getTime()) ? date : undefined,
    header: (name) => byName.get(name) ?? [],
    body: '',
    bodySource: 'none',
    attachments: [],
  };

  let tree: MimePart;
  try {
    ({ root: tree, attachments: mail.attachments } = await readMimeTree(mimeBody(raw, fields, bodyStart), options));
  } catch (err) {
    // The header was read, so a known sender can still be told why nothing ran.
    mail.unreadable = `its MIME structure could not be read (${(err as Error).message})`;
    return mail;
  }
  mail.report = reportIn(tree);
  const plain = firstPart(tree, 'text/plain');
  const html = firstPart(tree, 'text/html');
  const visibleText = (part: MimePart) => htmlToText(decodeText(part.bytes!, part.charset));
  try {
    if (plain) {
      // Line ends stay as they came: the reader handles CRLF without copying a large body.
      mail.body = decodeText(plain.bytes!, plain.charset);
      mail.bodySource = 'plain';
      if (html && alternatives(plain, html)) mail.htmlAlternative = visibleText(html);
    } else if (html) {
      mail.body = visibleText(html);
      mail.bodySource = 'html';
    }
  } catch (err) {
    if (!(err instanceof UnreadableMail)) throw err;
    mail.unreadable = err.message;
  }
  return mail;
}
