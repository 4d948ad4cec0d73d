import { createHash } from 'node:crypto';
import type { Config } from '../config/types';
import { LineCursor } from '../core/lines';
import type { IncomingMail } from '../mail/parse';

/**
 * Fields a message carries at most once (RFC 5322 3.6, RFC 2045). A DKIM verifier checks the
 * bottom-most copy, while a parser may read the top one: a copy prepended to a captured, signed
 * message would give it a new identity, a fresh Date or another meaning without breaking the
 * signature.
 */
const SINGLE_FIELDS = ['date', 'message-id', 'subject', 'content-type', 'content-transfer-encoding'];

/** Names the first field that occurs more than once, if any. */
export function repeatedField(mail: IncomingMail): string | undefined {
  const name = SINGLE_FIELDS.find((f) => mail.header(f).length > 1);
  return name && `${mail.header(name).length} ${name} header fields (possible replay)`;
}

/** Why the message's Date puts it outside the accepted window, if it does. */
export function dateProblem(mail: IncomingMail, now: Date, config: Config): string | undefined {
  if (!mail.date) return 'no valid Date header';
  const age = now.getTime() - mail.date.getTime();
  if (age > config.security.replayWindowHours * 3_600_000) return `Date is older than ${config.security.replayWindowHours} h (possible replay)`;
  if (-age > config.security.maxFutureMinutes * 60_000) return `Date is more than ${config.security.maxFutureMinutes} min in the future`;
  return undefined;
}

/** Drops trailing spaces and tabs in linear time (a /[ \t]+$/ regex is quadratic on a long run of blanks). */
function trimBlanks(line: string): string {
  let end = line.length;
  while (end > 0 && (line[end - 1] === ' ' || line[end - 1] === '\t')) end--;
  return line.slice(0, end);
}

/**
 * Hash of the body text with line ends and trailing blanks normalised: lines joined by "\n", each
 * without trailing spaces and tabs, the whole without trailing whitespace. Fed to the hash in
 * slices, never as an array of every line (a hostile body has a million of them).
 */
export function bodyHash(mail: IncomingMail): string {
  const hash = createHash('sha256').update(`${mail.subject}\n`);
  const cursor = new LineCursor(mail.body.trimEnd());
  let batch = '';
  for (let line = cursor.next(), first = true; line !== undefined; line = cursor.next(), first = false) {
    batch += (first ? '' : '\n') + trimBlanks(line);
    if (batch.length > 65536) {
      hash.update(batch);
      batch = '';
    }
  }
  return hash.update(batch).digest('hex');
}
