import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { saveTotpSecret } from '../../src/auth/secrets-file';
import type { DnsResolver } from '../../src/auth/dkim';
import { validateConfig } from '../../src/config/load';
import type { Config } from '../../src/config/types';
import type { Registry } from '../../src/core/request';
import { services } from '../../src/services/registry';
import type { Action } from '../../src/services/types';
import { exampleConfigObject } from './env';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createDemoDatabase } = require('../../examples/demo-db.mjs') as { createDemoDatabase: (file: string) => void };

/** The TOTP secret enrolled for ops@example.com in the security tests' secrets file. */
export const OPS_TOTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

/**
 * The configuration the hostile corpus assumes: the example config (ops@example.com admin,
 * helpdesk@example.com viewer, the demo SQLite database in `dir`), DKIM required for everyone —
 * verified here, or with `ar` read from the Authentication-Results of mx.example.com — and a
 * TOTP secret for ops@example.com. `tweak` may change the raw object before validation.
 */
export function securityConfig(dir: string, options: { ar?: boolean; tweak?: (raw: Record<string, any>) => void } = {}): Config {
  // Created once per folder: an engine may already hold the file open.
  if (!existsSync(join(dir, 'demo.db'))) createDemoDatabase(join(dir, 'demo.db'));
  const raw = exampleConfigObject(dir);
  raw.security = { dkim: options.ar ? { trustedAuthservId: 'mx.example.com' } : {} };
  raw.secretsFile = join(dir, 'secrets.json');
  saveTotpSecret(raw.secretsFile, 'ops@example.com', OPS_TOTP_SECRET, new Date('2026-11-01T00:00:00Z'));
  options.tweak?.(raw);
  return validateConfig(raw, join(dir, 'config.json'));
}

/**
 * The real service registry, with every db action wrapped so that each run is recorded as
 * "db <action>", plus `db touch`: a mutating action (needs strong evidence) that changes nothing.
 */
export function recordingServices(ran: string[]): Registry {
  const actions: Record<string, Action> = {};
  for (const [name, action] of Object.entries(services.db.actions)) {
    actions[name] = {
      ...action,
      run: async (args, ctx) => {
        ran.push(`db ${name}`);
        return action.run(args, ctx);
      },
    };
  }
  actions.touch = {
    summary: 'a change that does nothing (test)',
    args: {},
    mutates: true,
    run: async () => {
      ran.push('db touch');
      return { kind: 'text', text: 'touched' };
    },
  };
  return { ...services, db: { ...services.db, actions } };
}

const SELECTOR = 'hostile';

/**
 * DKIM keys generated per run, one per domain on first use, and a resolver that serves the
 * public half of each (no network).
 */
export class DkimKeys {
  private keys = new Map<string, { privatePem: string; record: string }>();

  private key(domain: string) {
    let key = this.keys.get(domain);
    if (!key) {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      key = {
        privatePem: privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
        record: `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`,
      };
      this.keys.set(domain, key);
    }
    return key;
  }

  /** Creates the keys now, so that the resolver knows the domains before anything is signed. */
  constructor(domains: string[] = []) {
    for (const d of domains) this.key(d);
  }

  readonly resolver: DnsResolver = async (name, rrtype) => {
    for (const [domain, key] of this.keys) {
      if (rrtype === 'TXT' && name.toLowerCase() === `${SELECTOR}._domainkey.${domain}`) return [[key.record]];
    }
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  };

  /** Prepends a relaxed/relaxed rsa-sha256 signature; `bodyLength` adds an l= tag covering the whole current body. */
  async sign(raw: Buffer, domain: string, options: { bodyLength?: boolean } = {}): Promise<Buffer> {
    const { dkimSign } = require('mailauth/lib/dkim/sign');
    const key = this.key(domain);
    const bodyStart = raw.indexOf('\r\n\r\n');
    const body = bodyStart < 0 ? Buffer.alloc(0) : raw.subarray(bodyStart + 4);
    const { signatures, errors } = await dkimSign(raw, {
      signTime: new Date('2026-11-25T09:59:00Z'),
      signatureData: [
        {
          signingDomain: domain,
          selector: SELECTOR,
          privateKey: key.privatePem,
          algorithm: 'rsa-sha256',
          canonicalization: 'relaxed/relaxed',
          ...(options.bodyLength && { maxBodyLength: body.length }),
        },
      ],
    });
    if (errors?.length) throw errors[0];
    return Buffer.concat([Buffer.from(signatures), raw]);
  }
}
