import type { Config, SmtpConfig } from '../config/types';
import { resolveSecret } from '../config/secrets';
import { smtpTransportOptions } from '../core/smtp-options';
import { tokensFor } from './oauth2';
import type { ReplyMessage } from './reply';
import { SmtpPool, type Envelope, type SmtpLogin } from './smtp-pool';

/** Something that hands replies to an SMTP server; `close` ends its connections. */
export interface SmtpSender {
  send(envelope: Envelope, raw: Buffer): Promise<void>;
  close(): void;
  /** How many sends run at the same time (a pool's size); more wait in its queue. Unset: no limit. */
  readonly connections?: number;
}

/** A pool for an SMTP server of the config: its connection options, and a password login when it has one (or `login`). */
function poolFor(smtp: SmtpConfig, password: string | undefined, size: number, maxMessages: number, login?: SmtpLogin): SmtpPool {
  const { auth, ...connection } = smtpTransportOptions(smtp, password);
  const passwordLogin = auth?.user && auth.pass ? { user: auth.user, pass: auth.pass } : undefined;
  return new SmtpPool({ connection, login: login ?? passwordLogin, size, maxMessages });
}

/** The agent's own server (smtp): the login is its password or its XOAUTH2 tokens. */
function smtpPool(config: Config, smtp: SmtpConfig, size: number, maxMessages: number): SmtpPool {
  const password = smtp.user && smtp.password ? resolveSecret(smtp.password, config.file, 'smtp.password') : undefined;
  const tokens = tokensFor(config, 'smtp');
  return poolFor(smtp, password, size, maxMessages, tokens && { user: smtp.user!, token: (renew) => tokens.token(renew) });
}

/** One composed message over one connection to `smtp`, closed after it (the heartbeat's alert server). */
export async function sendOnce(smtp: SmtpConfig, password: string | undefined, envelope: Envelope, raw: Buffer): Promise<void> {
  const pool = poolFor(smtp, password, 1, 1);
  try {
    await pool.send(envelope, raw);
  } finally {
    pool.close();
  }
}

/**
 * A sender for the configured SMTP server. `pooled` keeps up to `maxConnections` connections open
 * between messages (the outbox of a long-running agent); otherwise each send opens its own.
 */
export function createSmtpSender(config: Config, options: { pooled?: boolean; maxConnections?: number } = {}): SmtpSender {
  if (!config.smtp) throw new Error('smtp is not configured');
  // Unpooled: a connection per send, as many at once as asked for, each closed after its message.
  const pool = options.pooled ? smtpPool(config, config.smtp, options.maxConnections ?? 4, 1000) : smtpPool(config, config.smtp, Infinity, 1);
  return { ...(options.pooled && { connections: pool.connections }), send: (envelope, raw) => pool.send(envelope, raw), close: () => pool.close() };
}

/** Connects, says EHLO, upgrades with STARTTLS when offered or required, and logs in: what `test-service` checks. */
export async function verifySmtp(config: Config): Promise<void> {
  if (!config.smtp) throw new Error('smtp is not configured');
  await smtpPool(config, config.smtp, 1, 1).verify();
}

/** Hands a composed reply to the configured SMTP server, byte for byte. */
export async function sendReply(config: Config, reply: ReplyMessage): Promise<void> {
  const sender = createSmtpSender(config);
  try {
    await sender.send(reply.envelope, reply.raw);
  } finally {
    sender.close();
  }
}
