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

/** The dkim evidence tier, when the config enables it. */
export async function hasDkimEvidence(raw: Buffer, mail: IncomingMail, config: Config, resolver?: DnsResolver): Promise<boolean> {
  const dkim = config.security.dkim;
  if (!dkim) return false;
  const fromDomain = mail.from[0].address.split('@').pop()!.toLowerCase();
  if (dkim.trustedAuthservId) return dkimFromAuthResults(mail, dkim.trustedAuthservId, fromDomain);
  try {
    return await dkimVerified(raw, fromDomain, resolver);
  } catch {
    return false;
  }
}
