import type { Config } from '../config/types';
import { resolveSecret } from '../config/secrets';
import type { ReplyMessage } from './reply';

/** Hands a composed reply to the configured SMTP server, byte for byte. */
export async function sendReply(config: Config, reply: ReplyMessage): Promise<void> {
  const smtp = config.smtp!;
  const nodemailer = require('nodemailer') as typeof import('nodemailer');
  const timeout = (smtp.timeoutSeconds ?? 30) * 1000;
  const transport = nodemailer.createTransport({
    host: smtp.host,
    port: smtp.port ?? (smtp.secure ? 465 : 25),
    secure: smtp.secure ?? false,
    requireTLS: smtp.requireTLS ?? false,
    tls: { rejectUnauthorized: smtp.rejectUnauthorized ?? true },
    auth: smtp.user ? { user: smtp.user, pass: smtp.password ? resolveSecret(smtp.password, config.file, 'smtp.password') : undefined } : undefined,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
  });
  try {
    await transport.sendMail({ envelope: reply.envelope, raw: reply.raw });
  } finally {
    transport.close();
  }
}
