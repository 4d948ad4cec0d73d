import { createHash } from 'node:crypto';
import type { Config } from '../config/types';
import type { IncomingMail } from '../mail/parse';

/** Why the message's Date puts it outside the accepted window, if it does. */
export function dateProblem(mail: IncomingMail, now: Date, config: Config): string | undefined {
  if (!mail.date) return 'no valid Date header';
  const age = now.getTime() - mail.date.getTime();
  if (age > config.security.replayWindowHours * 3_600_000) return `Date is older than ${config.security.replayWindowHours} h (possible replay)`;
  if (-age > config.security.maxFutureMinutes * 60_000) return `Date is more than ${config.security.maxFutureMinutes} min in the future`;
  return undefined;
}

/** Hash of the body text with line ends and trailing blanks normalised. */
export function bodyHash(mail: IncomingMail): string {
  const canonical = mail.body.replace(/\r\n?/g, '\n').replace(/[ \t]+$/gm, '').trimEnd();
  return createHash('sha256').update(`${mail.subject}\n${canonical}`).digest('hex');
}
