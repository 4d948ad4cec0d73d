import type { Config, UserConfig } from '../config/types';
import type { IncomingMail } from '../mail/parse';

const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * The value without quoted strings and (nested) comments, where a display name may hide an
 * address; undefined when a quote or comment is left open. One linear pass.
 */
function withoutPhrases(value: string): string | undefined {
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (quoted || depth > 0) {
      if (ch === '\\') i++;
      else if (quoted && ch === '"') quoted = false;
      else if (!quoted && ch === '(') depth++;
      else if (!quoted && ch === ')') depth--;
    } else if (ch === '"' || ch === '(') {
      quoted = ch === '"';
      depth = ch === '(' ? 1 : 0;
      out += ' ';
    } else {
      out += ch;
    }
  }
  return quoted || depth > 0 ? undefined : out;
}

/**
 * Whether the raw From value names `address` as its one mailbox, and nothing else that looks
 * like an address. The address parser is lenient: it reads `"ops@example.com" <>` or
 * `Ops |ops@example.com>` as ops@example.com, so its result is checked against the raw text.
 */
function namesOnly(raw: string, address: string): boolean {
  const bare = withoutPhrases(raw);
  if (bare === undefined) return false;
  const tokens = bare.replace(/(?<!\s)\s*@\s*/g, '@').split(/[\s<>,;:]+/).filter((t) => t.includes('@'));
  return tokens.length > 0 && tokens.every((t) => t.toLowerCase() === address);
}

/**
 * The allow-list check: exactly one From mailbox, matched on its address alone (a display name
 * such as "ops@example.com" <evil@x> proves nothing).
 */
export function knownSender(mail: IncomingMail, config: Config): { user?: UserConfig; reason?: string } {
  if (mail.header('from').length > 1) return { reason: `${mail.header('from').length} From headers` };
  // The address parser drops control characters, which would make "o\0ps@example.com" a user.
  if (mail.header('from').some((v) => CONTROL.test(v))) return { reason: 'control characters in the From header' };
  if (mail.from.length === 0) return { reason: 'no From address' };
  if (mail.from.length > 1) return { reason: `${mail.from.length} From mailboxes` };
  const address = mail.from[0].address.toLowerCase();
  const user = config.users.find((u) => u.address.toLowerCase() === address);
  if (!user) return { reason: `sender ${address || '(empty)'} is not on the allow list` };
  if (!namesOnly(mail.header('from')[0] ?? '', address)) return { reason: `malformed From header (${address} is not its one mailbox)` };
  return { user };
}
