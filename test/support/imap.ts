/**
 * Small helpers over a private mail stack (test/support/mailstack.ts): send through its Postfix
 * with nodemailer, read mailboxes over its Dovecot IMAP with imapflow.
 */
import type { ImapFlow } from 'imapflow';
import type { Transporter } from 'nodemailer';
import { MAIL_DOMAIN, type MailStack } from './mailstack';

export interface OutgoingMail {
  from?: string;
  to?: string;
  subject?: string;
  text?: string;
  /** Angle brackets included; default a fresh unique one. */
  messageId?: string;
  headers?: Record<string, string>;
  attachments?: { filename: string; content: Buffer }[];
}

export interface FetchedMail {
  uid: number;
  subject: string;
  from: string;
  to: string;
  messageId: string;
  inReplyTo: string;
  references: string;
  date?: Date;
  /** Header name (lower case) → first value, unfolded. */
  headers: Record<string, string>;
  text: string;
  attachments: { filename?: string; contentType: string; content: Buffer }[];
}

let counter = 0;

/** A Message-ID that is unique across processes and runs. */
export function uniqueMessageId(tag = 'm'): string {
  counter += 1;
  return `<${tag}-${process.pid}-${Date.now().toString(36)}-${counter}@${MAIL_DOMAIN}>`;
}

/** A pooled SMTP client to the stack's Postfix; close() it when done. */
export function smtpClient(stack: MailStack, maxConnections = 4): Transporter {
  const nodemailer = require('nodemailer') as typeof import('nodemailer');
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port: stack.smtpPort,
    secure: false,
    ignoreTLS: true,
    pool: true,
    maxConnections,
    maxMessages: Infinity,
    connectionTimeout: 5000,
    greetingTimeout: 5000,
    socketTimeout: 15000,
  });
}

function envelopeOf(m: OutgoingMail) {
  const messageId = m.messageId ?? uniqueMessageId();
  return {
    messageId,
    message: {
      from: m.from ?? `ops@${MAIL_DOMAIN}`,
      to: m.to ?? `agent@${MAIL_DOMAIN}`,
      subject: m.subject ?? 'test',
      text: m.text ?? '',
      messageId,
      date: new Date(),
      headers: m.headers,
      attachments: m.attachments,
    },
  };
}

/** Send one mail through the stack's Postfix; resolves with its Message-ID once Postfix accepted it. */
export async function sendMail(stack: MailStack, m: OutgoingMail = {}): Promise<string> {
  const [id] = await sendMails(stack, [m]);
  return id;
}

/** Send many mails over a few pooled connections; resolves with their Message-IDs, in order. */
export async function sendMails(stack: MailStack, mails: OutgoingMail[], maxConnections = 4): Promise<string[]> {
  const transport = smtpClient(stack, maxConnections);
  try {
    return await Promise.all(mails.map(async (m) => {
      const { messageId, message } = envelopeOf(m);
      await transport.sendMail(message);
      return messageId;
    }));
  } finally {
    transport.close();
  }
}

/** A logged-in IMAP client for `user` of the stack; logout() it when done. */
export async function imapClient(stack: MailStack, user: string): Promise<ImapFlow> {
  const { ImapFlow } = require('imapflow') as typeof import('imapflow');
  const account = stack.users[user];
  if (!account) throw new Error(`imap: no user ${user} in the stack`);
  const client = new ImapFlow({
    host: '127.0.0.1',
    port: stack.imapPort,
    secure: false,
    auth: { user, pass: account.password },
    logger: false,
    disableAutoIdle: true,
    connectionTimeout: 5000,
    greetingTimeout: 5000,
  });
  // A dropped connection emits 'error'; without a listener that would crash the test process.
  client.on('error', () => { /* reported by the failing call */ });
  await client.connect();
  return client;
}

/** Run `fn` with a fresh IMAP client, logged out afterwards even when `fn` throws. */
export async function withImap<T>(stack: MailStack, user: string, fn: (client: ImapFlow) => Promise<T>): Promise<T> {
  const client = await imapClient(stack, user);
  try {
    return await fn(client);
  } finally {
    await client.logout().catch(() => client.close());
  }
}

/** Number of messages in a folder; 0 when the folder does not exist (yet). */
export async function messageCount(client: ImapFlow, folder = 'INBOX'): Promise<number> {
  try {
    const st = await client.status(folder, { messages: true });
    return st.messages ?? 0;
  } catch (e: any) {
    if (/NONEXISTENT|doesn't exist|not exist/i.test(`${e?.responseText ?? ''} ${e?.message ?? ''}`)) return 0;
    throw e;
  }
}

/** Message counts of several folders at once (missing folders count 0). */
export async function folderCounts(stack: MailStack, user: string, folders: string[]): Promise<Record<string, number>> {
  return withImap(stack, user, async (client) => {
    const out: Record<string, number> = {};
    for (const f of folders) out[f] = await messageCount(client, f);
    return out;
  });
}

/**
 * Poll a folder until it holds at least `n` messages; resolves with the count. Throws after
 * `timeoutMs` with the count it saw, so a failing test says how far it got.
 */
export async function waitForCount(
  stack: MailStack, user: string, n: number, opts: { folder?: string; timeoutMs?: number; intervalMs?: number } = {},
): Promise<number> {
  const folder = opts.folder ?? 'INBOX';
  const deadline = Date.now() + (opts.timeoutMs ?? 15000);
  const interval = opts.intervalMs ?? 50;
  let client: ImapFlow | undefined;
  let seen = 0;
  try {
    for (;;) {
      try {
        client ??= await imapClient(stack, user);
        seen = await messageCount(client, folder);
        if (seen >= n) return seen;
      } catch {
        // Dovecot may be restarting under the test: reconnect on the next round.
        client?.close();
        client = undefined;
      }
      if (Date.now() > deadline) throw new Error(`imap: ${user}/${folder} holds ${seen} messages, waited for ${n}`);
      await new Promise((r) => setTimeout(r, interval));
    }
  } finally {
    await client?.logout().catch(() => client?.close());
  }
}

function headerValue(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map(headerValue).join(' ');
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'object' && 'text' in (v as any)) return String((v as any).text);
  if (typeof v === 'object' && 'value' in (v as any)) return String((v as any).value);
  return String(v);
}

/** Every message of a folder (oldest first), parsed: headers, text body, attachments. */
export async function fetchAll(stack: MailStack, user: string, folder = 'INBOX'): Promise<FetchedMail[]> {
  const { simpleParser } = require('mailparser') as typeof import('mailparser');
  return withImap(stack, user, async (client) => {
    if (await messageCount(client, folder) === 0) return [];
    const lock = await client.getMailboxLock(folder, { readOnly: true });
    const raws: { uid: number; source: Buffer }[] = [];
    try {
      for await (const msg of client.fetch('1:*', { uid: true, source: true })) {
        if (msg.source) raws.push({ uid: msg.uid, source: msg.source });
      }
    } finally {
      lock.release();
    }
    const out: FetchedMail[] = [];
    for (const { uid, source } of raws) {
      const p = await simpleParser(source);
      const headers: Record<string, string> = {};
      for (const { key, line } of p.headerLines) {
        if (!(key in headers)) headers[key] = line.slice(line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim();
      }
      out.push({
        uid,
        subject: p.subject ?? '',
        from: headerValue(p.from),
        to: headerValue(p.to),
        messageId: p.messageId ?? '',
        inReplyTo: p.inReplyTo ?? '',
        references: headerValue(p.references),
        date: p.date,
        headers,
        text: p.text ?? '',
        attachments: p.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, content: a.content })),
      });
    }
    return out.sort((a, b) => a.uid - b.uid);
  });
}

/**
 * Put a raw message straight into a folder over IMAP (APPEND), as if another MX had delivered it:
 * for tests that need mail to arrive while Postfix is down.
 */
export async function appendMail(stack: MailStack, user: string, raw: Buffer | string, folder = 'INBOX'): Promise<void> {
  await withImap(stack, user, async (client) => {
    await client.append(folder, raw);
  });
}
