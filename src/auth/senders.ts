import type { Config, UserConfig } from '../config/types';
import type { IncomingMail } from '../mail/parse';

/**
 * The allow-list check: exactly one From mailbox, matched on its address alone (a display name
 * such as "ops@example.com" <evil@x> proves nothing).
 */
export function knownSender(mail: IncomingMail, config: Config): { user?: UserConfig; reason?: string } {
  if (mail.header('from').length > 1) return { reason: `${mail.header('from').length} From headers` };
  if (mail.from.length === 0) return { reason: 'no From address' };
  if (mail.from.length > 1) return { reason: `${mail.from.length} From mailboxes` };
  const address = mail.from[0].address.toLowerCase();
  const user = config.users.find((u) => u.address.toLowerCase() === address);
  return user ? { user } : { reason: `sender ${address || '(empty)'} is not on the allow list` };
}
