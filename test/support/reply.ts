import { simpleParser, type ParsedMail } from 'mailparser';
import type { Outcome } from '../../src/core/outcome';

/** The reply of an outcome, parsed back the way a mail client would read it. */
export async function readReply(outcome: Outcome): Promise<ParsedMail> {
  if (outcome.kind !== 'reply') throw new Error(`expected a reply, got silence (${outcome.reason})`);
  return simpleParser(outcome.reply.raw);
}
