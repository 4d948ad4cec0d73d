import type { SmtpConfig } from '../config/types';

/**
 * nodemailer transport options for an SMTP server of the config: the agent's own (replies) and the
 * mail service's accounts connect the same way. `password` is the resolved secret, if any.
 */
export function smtpTransportOptions(smtp: SmtpConfig, password: string | undefined) {
  const timeout = (smtp.timeoutSeconds ?? 30) * 1000;
  return {
    host: smtp.host,
    port: smtp.port ?? (smtp.secure ? 465 : 25),
    secure: smtp.secure ?? false,
    requireTLS: smtp.requireTLS ?? false,
    tls: { rejectUnauthorized: smtp.rejectUnauthorized ?? true },
    auth: smtp.user ? { user: smtp.user, pass: password } : undefined,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
  };
}
