import type { Config, SmtpConfig } from '../config/types';
import { resolveSecret } from '../config/secrets';
import { smtpTransportOptions } from '../core/smtp-options';
import { tokensFor } from './oauth2';
import type { ReplyMessage } from './reply';

type Envelope = { from: string; to: string[] };

/** Something that hands replies to an SMTP server; `close` ends its connections. */
export interface SmtpSender {
  send(envelope: Envelope, raw: Buffer): Promise<void>;
  close(): void;
  /** How many sends run at the same time (a pool's size); more wait in its queue. Unset: no limit. */
  readonly connections?: number;
}

function transportOptions(config: Config, smtp: SmtpConfig) {
  const options = smtpTransportOptions(smtp, smtp.user && smtp.password ? resolveSecret(smtp.password, config.file, 'smtp.password') : undefined);
  const tokens = tokensFor(config, 'smtp');
  if (!tokens) return options;
  // XOAUTH2: nodemailer asks for a token per login, and again with `renew` when the server refused it.
  const provisionCallback = (_user: string, renew: boolean, done: (err: Error | null, token?: string, expires?: number) => void) => {
    tokens.token(renew).then(
      (t) => done(null, t.accessToken, t.expiresAt),
      (err: Error) => done(err),
    );
  };
  return { ...options, auth: { type: 'OAuth2' as const, user: smtp.user!, provisionCallback } };
}

/**
 * A sender for the configured SMTP server. `pooled` keeps up to `maxConnections` connections open
 * between messages (the outbox of a long-running agent); otherwise each send opens its own.
 */
export function createSmtpSender(config: Config, options: { pooled?: boolean; maxConnections?: number } = {}): SmtpSender {
  if (!config.smtp) throw new Error('smtp is not configured');
  const nodemailer = require('nodemailer') as typeof import('nodemailer');
  const base = transportOptions(config, config.smtp);
  const connections = options.pooled ? options.maxConnections ?? 4 : undefined;
  const transport = options.pooled
    ? nodemailer.createTransport({ ...base, pool: true, maxConnections: connections, maxMessages: 1000 })
    : nodemailer.createTransport(base);
  return {
    connections,
    async send(envelope, raw) {
      await transport.sendMail({ envelope, raw });
    },
    close: () => transport.close(),
  };
}

/** Connects, says EHLO, upgrades with STARTTLS when offered or required, and logs in: what `test-service` checks. */
export async function verifySmtp(config: Config): Promise<void> {
  if (!config.smtp) throw new Error('smtp is not configured');
  const nodemailer = require('nodemailer') as typeof import('nodemailer');
  const transport = nodemailer.createTransport(transportOptions(config, config.smtp));
  try {
    await transport.verify();
  } finally {
    transport.close();
  }
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
