import type { ImapFlow } from 'imapflow';
import type { Transporter } from 'nodemailer';
import { resolveSecret } from '../../config/secrets';
import type { Config, MailAccount, SecretRef } from '../../config/types';
import { CommandError, UserError } from '../../core/errors';
import { smtpTransportOptions } from '../../core/smtp-options';

/**
 * The mail service's own IMAP (imapflow) and SMTP (nodemailer) clients, one connection per
 * command. services/ never imports mail/: SMTP options come from core/smtp-options, shared with the
 * agent's own sender; IMAP settings mirror the agent's (TLS, timeouts). Both libraries are loaded on first use,
 * never at start-up.
 */

export interface NamedAccount {
  name: string;
  account: MailAccount;
}

const IMAP_CONNECT_MS = 15_000;
const IMAP_GREETING_MS = 10_000;
const IMAP_SOCKET_MS = 60_000;
/** Bigger IMAP literals than this end the connection: `mail get` never needs more than its size cap. */
const LITERAL_MARGIN = 1024 * 1024;

/** A secret, read when needed; a missing one is a failed command, not an internal error. */
function secret(config: Config, ref: SecretRef | undefined, where: string): string | undefined {
  if (!ref) return undefined;
  try {
    return resolveSecret(ref, config.file, where);
  } catch (err) {
    if (err instanceof UserError) throw new CommandError(err.message);
    throw err;
  }
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/**
 * Driver messages can echo what was sent (an IMAP LOGIN line, an SMTP AUTH exchange): every form
 * in which a password could appear there is replaced, and the text is kept to one short line.
 */
export function scrub(text: string, user: string | undefined, password: string | undefined): string {
  let out = text.replace(/[\r\n]+/g, ' ').trim();
  if (password) {
    const forms = [
      password,
      b64(password),
      password.replace(/[\\"]/g, '\\$&'),
      encodeURIComponent(password),
      ...(user !== undefined ? [b64(`\0${user}\0${password}`), b64(`${user}\0${user}\0${password}`)] : []),
    ];
    for (const form of [...new Set(forms)].sort((a, b) => b.length - a.length)) out = out.split(form).join('***');
  }
  return out.length > 300 ? `${out.slice(0, 297)}…` : out;
}

function imapEndpoint(account: MailAccount): string {
  return `${account.imap.host}:${account.imap.port ?? (account.imap.secure ? 993 : 143)}`;
}

function smtpEndpoint(account: MailAccount): string {
  return `${account.smtp.host}:${account.smtp.port ?? (account.smtp.secure ? 465 : 25)}`;
}

type DriverError = Error & {
  code?: string;
  responseText?: string;
  response?: string;
  authenticationFailed?: boolean;
  mailboxMissing?: boolean;
};

/** A connection-level failure in a few words, or undefined when the error says nothing of the kind. */
function networkWhy(code: string | undefined): string | undefined {
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused (is the server down, or the port wrong?)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EDNS':
      return 'host name not found';
    case 'ETIMEDOUT':
    case 'ETIMEOUT':
    case 'CONNECT_TIMEOUT':
    case 'GREETING_TIMEOUT':
    case 'UPGRADE_TIMEOUT':
      return 'no answer in time (timed out)';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'NoConnection':
      return 'the connection was lost';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    default:
      return undefined;
  }
}

/** Any IMAP failure as a failed command: what went wrong and where, never a secret or a stack. */
export function imapFailure(err: unknown, named: NamedAccount, password?: string): CommandError {
  if (err instanceof CommandError) return err;
  const e = (err ?? {}) as DriverError;
  const { account, name } = named;
  let why: string;
  if (e.authenticationFailed) why = `login as ${account.imap.user} failed (${e.responseText || 'authentication failed'}): check imap.user and imap.password`;
  else why = networkWhy(e.code) ?? (/CERT|TLS|SSL/i.test(e.code ?? '') ? `TLS: ${e.message}` : e.responseText || e.message || String(err));
  return new CommandError(scrub(`account ${name}: IMAP server ${imapEndpoint(account)}: ${why}`, account.imap.user, password));
}

/** Any SMTP failure as a failed command (nodemailer codes: EAUTH, ECONNECTION, EENVELOPE, …). */
export function smtpFailure(err: unknown, named: NamedAccount, password?: string): CommandError {
  if (err instanceof CommandError) return err;
  const e = (err ?? {}) as DriverError & { rejected?: string[] };
  const { account, name } = named;
  const cause = (e as { cause?: DriverError }).cause;
  let why: string;
  switch (e.code) {
    case 'EAUTH':
    case 'ENOAUTH':
      why = `login as ${account.smtp.user ?? '(no user)'} failed (${e.response || e.message}): check smtp.user and smtp.password`;
      break;
    case 'EENVELOPE':
      why = `the server refused the recipients: ${e.response || e.message}${e.rejected?.length ? ` (${e.rejected.join(', ')})` : ''}`;
      break;
    case 'ETLS':
    case 'EREQUIRETLS':
      why = `TLS: ${e.message}`;
      break;
    case 'ECONNECTION':
    case 'ESOCKET':
      why = networkWhy(cause?.code) ?? networkWhy((e as { errno?: string }).errno) ?? networkWhy(/\b(E[A-Z]+)\b/.exec(e.message ?? '')?.[1]) ?? e.message;
      break;
    default:
      why = networkWhy(e.code) ?? (e.response || e.message || String(err));
  }
  return new CommandError(scrub(`account ${name}: SMTP server ${smtpEndpoint(account)}: ${why}`, account.smtp.user, password));
}

/** A connected, logged-in IMAP client for the account (never idling: one command sequence, then logout). */
export async function connectImap(config: Config, named: NamedAccount, maxMessageBytes: number): Promise<{ client: ImapFlow; password?: string }> {
  const { account, name } = named;
  const password = secret(config, account.imap.password, `services.mail.accounts.${name}.imap.password`);
  const { ImapFlow } = require('imapflow') as typeof import('imapflow');
  const imap = account.imap;
  const client = new ImapFlow({
    host: imap.host,
    port: imap.port ?? (imap.secure ? 993 : 143),
    secure: imap.secure ?? false,
    tls: { rejectUnauthorized: imap.rejectUnauthorized ?? true },
    auth: { user: imap.user, pass: password ?? '' },
    logger: false,
    disableAutoIdle: true,
    connectionTimeout: IMAP_CONNECT_MS,
    greetingTimeout: IMAP_GREETING_MS,
    socketTimeout: IMAP_SOCKET_MS,
    maxLiteralSize: maxMessageBytes + LITERAL_MARGIN,
    maxResponseSize: 2 * (maxMessageBytes + LITERAL_MARGIN),
  });
  // A dropped connection emits 'error'; the command that was running reports it.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    client.close();
    throw imapFailure(err, named, password);
  }
  return { client, password };
}

/** Runs `work` on a fresh IMAP connection, logged out afterwards; failures become CommandErrors. */
export async function withImap<T>(config: Config, named: NamedAccount, maxMessageBytes: number, work: (client: ImapFlow) => Promise<T>): Promise<T> {
  const { client, password } = await connectImap(config, named, maxMessageBytes);
  try {
    return await work(client);
  } catch (err) {
    throw imapFailure(err, named, password);
  } finally {
    if (client.usable) await client.logout().catch(() => client.close());
    else client.close();
  }
}

/** A one-connection SMTP transport for the account; close() it when done. */
export function smtpTransport(config: Config, named: NamedAccount): { transport: Transporter; password?: string } {
  const { account, name } = named;
  const smtp = account.smtp;
  const password = smtp.user ? secret(config, smtp.password, `services.mail.accounts.${name}.smtp.password`) : undefined;
  const nodemailer = require('nodemailer') as typeof import('nodemailer');
  const transport = nodemailer.createTransport({ ...smtpTransportOptions(smtp, password), logger: false, debug: false });
  return { transport, password };
}
