import type { Config } from '../config/types';
import type { IncomingMail } from '../mail/parse';

/** DNS TXT lookup as mailauth expects it; tests pass one that serves their own keys. */
export type DnsResolver = (name: string, rrtype: string) => Promise<unknown>;

/** Relaxed DMARC alignment: the signing domain and the From domain share an organizational domain. */
function aligned(fromDomain: string, signingDomain: string): boolean {
  const { getAlignment } = require('mailauth/lib/tools') as { getAlignment: (d: string, list: string[], strict?: boolean) => unknown };
  return Boolean(getAlignment(fromDomain, [signingDomain]));
}

/** Splits an Authentication-Results value on `;`, dropping (comments) outside quoted strings. */
function resinfo(value: string): string[] {
  const parts: string[] = [''];
  let depth = 0;
  let quoted = false;
  for (const ch of value) {
    if (depth === 0 && ch === '"') quoted = !quoted;
    if (!quoted && ch === '(') depth++;
    else if (!quoted && ch === ')' && depth > 0) depth--;
    else if (depth === 0 && !quoted && ch === ';') parts.push('');
    else if (depth === 0) parts[parts.length - 1] += ch;
  }
  return parts.map((p) => p.replace(/\s+/g, ' ').trim()).filter(Boolean);
}

/**
 * Reads the DKIM verdict from the Authentication-Results header our own MX added. Only the
 * topmost A-R header counts (the MX prepends its own above anything the sender forged), and only
 * when its authserv-id is the trusted one.
 */
export function dkimFromAuthResults(mail: IncomingMail, trustedId: string, fromDomain: string): boolean {
  const [topmost] = mail.header('authentication-results');
  if (!topmost) return false;
  const [authserv, ...results] = resinfo(topmost);
  if (authserv.split(' ')[0].toLowerCase() !== trustedId.toLowerCase()) return false;
  return results.some((r) => {
    const m = /^dkim\s*=\s*(\w+)/i.exec(r);
    if (!m || m[1].toLowerCase() !== 'pass') return false;
    const d = /\bheader\.d\s*=\s*"?([^\s";]+)/i.exec(r)?.[1] ?? /\bheader\.i\s*=\s*"?[^\s";@]*@([^\s";]+)/i.exec(r)?.[1];
    return d !== undefined && aligned(fromDomain, d.toLowerCase());
  });
}

/** Verifies the message's DKIM signatures (mailauth); true when one passes and is aligned. */
export async function dkimVerified(raw: Buffer, fromDomain: string, resolver?: DnsResolver): Promise<boolean> {
  const { dkimVerify } = require('mailauth/lib/dkim/verify') as {
    dkimVerify: (input: Buffer, options: { resolver?: DnsResolver }) => Promise<{ results: { signingDomain?: string; status: { result: string; underSized?: number } }[] }>;
  };
  const { results } = await dkimVerify(raw, resolver ? { resolver } : {});
  return results.some(
    (r) => r.status.result === 'pass' && !r.status.underSized && r.signingDomain !== undefined && aligned(fromDomain, r.signingDomain.toLowerCase()),
  );
}

/**
 * Bounds on the header mailauth is given. Its header splitter is quadratic in the lines of a
 * folded field, and matching a signature's h= list is (names × fields): a forged header of a few
 * megabytes would cost minutes of CPU before anyone is authenticated. Real mail is far inside
 * these; a message outside them is treated as unsigned.
 */
const VERIFIABLE = { headerLines: 10_000, fields: 1_000, signatures: 10, signedFields: 100 };

function verifiable(raw: Buffer, mail: IncomingMail): boolean {
  const signatures = mail.header('dkim-signature');
  if (signatures.length > VERIFIABLE.signatures) return false;
  if (signatures.some((s) => (/(?:^|;)\s*h\s*=([^;]*)/i.exec(s)?.[1] ?? '').split(':').length > VERIFIABLE.signedFields)) return false;
  let lines = 0;
  let fields = 0;
  for (let at = 0; at < raw.length; ) {
    const end = raw.indexOf(0x0a, at);
    const next = end < 0 ? raw.length : end + 1;
    const blank = next - at <= 2 && (raw[at] === 0x0a || raw[at] === 0x0d);
    if (blank) break;
    if (raw[at] !== 0x20 && raw[at] !== 0x09) fields++;
    if (++lines > VERIFIABLE.headerLines || fields > VERIFIABLE.fields) return false;
    at = next;
  }
  return true;
}

/** The dkim evidence tier, when the config enables it. */
export async function hasDkimEvidence(raw: Buffer, mail: IncomingMail, config: Config, resolver?: DnsResolver): Promise<boolean> {
  const dkim = config.security.dkim;
  if (!dkim) return false;
  const fromDomain = mail.from[0].address.split('@').pop()!.toLowerCase();
  if (dkim.trustedAuthservId) return dkimFromAuthResults(mail, dkim.trustedAuthservId, fromDomain);
  if (!verifiable(raw, mail)) return false;
  try {
    return await dkimVerified(raw, fromDomain, resolver);
  } catch {
    return false;
  }
}
