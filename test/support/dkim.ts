import { generateKeyPairSync } from 'node:crypto';
import type { DnsResolver } from '../../src/auth/dkim';

/** A DKIM key for a domain, and a DNS resolver that serves its public half — no network. */
export function dkimKey(domain: string, selector = 'test') {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const record = `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
  const resolver: DnsResolver = async (name, rrtype) => {
    if (rrtype === 'TXT' && name.toLowerCase() === `${selector}._domainkey.${domain}`) return [[record]];
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  };
  const sign = async (raw: Buffer): Promise<Buffer> => {
    const { dkimSign } = require('mailauth/lib/dkim/sign');
    const { signatures, errors } = await dkimSign(raw, {
      // Without signTime mailauth stamps t= twice (once for the signed copy, once for the header it
      // returns), each Math.round(Date.now() / 1000): across a half second the two differ and the
      // signature never verifies (about 1 in 2000 signatures).
      signTime: new Date(),
      signatureData: [{ signingDomain: domain, selector, privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }), algorithm: 'rsa-sha256', canonicalization: 'relaxed/relaxed' }],
    });
    if (errors?.length) throw errors[0];
    return Buffer.concat([Buffer.from(signatures), raw]);
  };
  return { resolver, sign };
}

/** Joins resolvers: the first that knows the name answers. */
export function resolvers(...list: DnsResolver[]): DnsResolver {
  return async (name, rrtype) => {
    for (const r of list) {
      try {
        return await r(name, rrtype);
      } catch {
        // try the next
      }
    }
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  };
}
