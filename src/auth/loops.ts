import type { Config } from '../config/types';
import type { IncomingMail } from '../mail/parse';

/**
 * RFC 3834 and common practice: never answer automatic mail, lists, bounces or ourselves.
 * Returns why the message must get no reply, or undefined.
 */
export function automaticReason(mail: IncomingMail, config: Config, envelopeSender?: string): string | undefined {
  const own = config.agent.address.toLowerCase();
  const autoSubmitted = mail.header('auto-submitted').map((v) => v.split(';')[0].trim().toLowerCase());
  if (autoSubmitted.some((v) => v !== 'no')) return `Auto-Submitted: ${autoSubmitted.find((v) => v !== 'no')}`;
  const precedence = mail.header('precedence').map((v) => v.trim().toLowerCase());
  if (precedence.some((v) => ['bulk', 'list', 'junk'].includes(v))) return `Precedence: ${precedence[0]}`;
  if (mail.header('list-id').length) return 'List-Id header';
  if (mail.header('list-unsubscribe').length) return 'List-Unsubscribe header';
  if (mail.header('x-loop').some((v) => v.toLowerCase().includes(own))) return 'X-Loop: our own address';
  for (const { address } of mail.from) {
    const lower = address.toLowerCase();
    if (lower === own) return 'From: our own address';
    if (/^(mailer-daemon|postmaster)@/.test(lower)) return `From: ${lower.split('@')[0]}`;
  }
  const returnPath = envelopeSender ?? mail.header('return-path')[0];
  if (returnPath !== undefined && returnPath.replace(/[<>\s]/g, '') === '') return 'empty return path (a bounce)';
  return undefined;
}
