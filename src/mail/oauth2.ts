import { closeSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync, fsyncSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { Config, OAuth2Config } from '../config/types';
import { resolveSecret } from '../config/secrets';
import { EXIT, UserError } from '../core/errors';
import { neverLog } from '../core/log';

/**
 * OAuth 2 for the mailboxes people have (Google Workspace, Microsoft 365, any provider with a
 * token endpoint): access tokens for IMAP and SMTP (XOAUTH2 / OAUTHBEARER), refreshed before they
 * expire and once more after a refused login; the refresh token (rotated by some providers) kept
 * in a file of mode 0600 that every mailagent process of the host shares under a lock. Token
 * requests go through openid-client. No token ever leaves this module except to the mail server.
 */

/** Refresh this long before the access token expires, so that a login never races the expiry. */
const EARLY_REFRESH_MS = 60_000;
/** A lock older than this was left by a process that died while refreshing. */
const STALE_LOCK_MS = 30_000;
const LOCK_WAIT_MS = 15_000;

export interface OAuthEndpoints {
  issuer: string;
  tokenUrl: string;
  deviceAuthorizationUrl?: string;
  scopes: string[];
}

/** The provider's endpoints and the scopes mail access needs. */
export function endpointsOf(o: OAuth2Config): OAuthEndpoints {
  switch (o.provider) {
    case 'google':
      return {
        issuer: 'https://accounts.google.com',
        tokenUrl: 'https://oauth2.googleapis.com/token',
        deviceAuthorizationUrl: 'https://oauth2.googleapis.com/device/code',
        scopes: o.scopes ?? ['https://mail.google.com/'],
      };
    case 'microsoft': {
      const tenant = encodeURIComponent(o.tenant ?? 'organizations');
      const base = `https://login.microsoftonline.com/${tenant}`;
      return {
        issuer: `${base}/v2.0`,
        tokenUrl: `${base}/oauth2/v2.0/token`,
        deviceAuthorizationUrl: `${base}/oauth2/v2.0/devicecode`,
        scopes: o.scopes ?? ['offline_access', 'https://outlook.office.com/IMAP.AccessAsUser.All', 'https://outlook.office.com/SMTP.Send'],
      };
    }
    default:
      return {
        issuer: o.issuer ?? new URL(o.tokenUrl!).origin,
        tokenUrl: o.tokenUrl!,
        ...(o.deviceAuthorizationUrl && { deviceAuthorizationUrl: o.deviceAuthorizationUrl }),
        scopes: o.scopes ?? [],
      };
  }
}

/** What the token file holds. */
export interface StoredTokens {
  account: string;
  provider: OAuth2Config['provider'];
  clientId: string;
  scopes: string[];
  refreshToken?: string;
  accessToken?: string;
  /** Epoch ms. */
  expiresAt?: number;
  loggedInAt: number;
  refreshedAt?: number;
}

/** Where the tokens of a mailbox account live: the configured file, or one beside the state file. */
export function tokenFileOf(config: Config, o: OAuth2Config, account: string): string {
  if (o.tokenFile) return isAbsolute(o.tokenFile) ? o.tokenFile : resolve(dirname(config.file), o.tokenFile);
  return join(dirname(config.state.path), `oauth2-${account.replace(/[^A-Za-z0-9@._-]/g, '_')}.json`);
}

export function readTokens(file: string): StoredTokens | undefined {
  try {
    const tokens = JSON.parse(readFileSync(file, 'utf8')) as StoredTokens;
    neverLog(tokens.accessToken);
    neverLog(tokens.refreshToken);
    return tokens;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UserError(`the OAuth2 token file ${file} cannot be read: ${(err as Error).message}`, EXIT.CONFIG);
  }
}

/** Temp file, fsync, rename: a crash never leaves half a token file, and the mode is 0600 from the start. */
export function writeTokens(file: string, tokens: StoredTokens): void {
  neverLog(tokens.accessToken);
  neverLog(tokens.refreshToken);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.tmp`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeFileSync(fd, `${JSON.stringify(tokens, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
}

/** Runs `work` holding the token file's lock, so two processes never spend one rotating refresh token twice. */
async function withLock<T>(file: string, work: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx', 0o600));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) unlinkSync(lock);
      } catch {
        // gone meanwhile: try again
      }
      if (Date.now() > deadline) throw new Error(`the OAuth2 token file ${file} stayed locked for ${LOCK_WAIT_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await work();
  } finally {
    try {
      unlinkSync(lock);
    } catch {
      // removed as stale by another process
    }
  }
}

type OpenId = typeof import('openid-client');
const openid = (): OpenId => require('openid-client') as OpenId;

/** An http:// endpoint is only accepted on loopback (a local test server), never across a network. */
function isLoopback(url: string): boolean {
  const host = new URL(url).hostname;
  return host === '127.0.0.1' || host === 'localhost' || host === '[::1]';
}

/** openid-client's view of the provider and of this client. */
export function clientConfiguration(config: Config, o: OAuth2Config, where: string) {
  const client = openid();
  const endpoints = endpointsOf(o);
  const secret = o.clientSecret ? resolveSecret(o.clientSecret, config.file, `${where}.clientSecret`) : undefined;
  const configuration = new client.Configuration(
    { issuer: endpoints.issuer, token_endpoint: endpoints.tokenUrl, ...(endpoints.deviceAuthorizationUrl && { device_authorization_endpoint: endpoints.deviceAuthorizationUrl }) },
    o.clientId,
    undefined,
    secret ? client.ClientSecretPost(secret) : client.None(),
  );
  const insecure = [endpoints.tokenUrl, endpoints.deviceAuthorizationUrl].filter((u): u is string => Boolean(u)).filter((u) => u.startsWith('http:'));
  if (insecure.length) {
    if (!insecure.every(isLoopback)) throw new UserError(`${where}: OAuth2 endpoints must use https (http is only accepted on loopback)`, EXIT.CONFIG);
    client.allowInsecureRequests(configuration);
  }
  return { configuration, endpoints };
}

/** The provider's error code (invalid_grant, …) of a failed token request, if it gave one. */
const oauthError = (err: unknown): string | undefined => (err as { error?: string })?.error;

/**
 * Access tokens for one mailbox login (imap or smtp): from the token file while valid, else by
 * the refresh grant. A refused refresh token is a configuration problem (`auth login` again).
 */
export class OAuthTokens {
  readonly file: string;

  constructor(
    private readonly config: Config,
    private readonly o: OAuth2Config,
    readonly account: string,
    private readonly where: string,
  ) {
    this.file = tokenFileOf(config, o, account);
  }

  /** A token good for at least a minute; `renew` after the server refused the current one. */
  async accessToken(renew = false): Promise<string> {
    return (await this.token(renew)).accessToken;
  }

  /** The access token and when it expires (epoch ms). */
  async token(renew = false): Promise<{ accessToken: string; expiresAt: number }> {
    const fresh = (t: StoredTokens | undefined) => t?.accessToken !== undefined && (t.expiresAt ?? 0) - EARLY_REFRESH_MS > Date.now();
    const stored = readTokens(this.file);
    if (!renew && fresh(stored)) return { accessToken: stored!.accessToken!, expiresAt: stored!.expiresAt! };
    return withLock(this.file, async () => {
      // Another process may have refreshed while this one waited for the lock.
      const current = readTokens(this.file);
      if (fresh(current) && current!.accessToken !== stored?.accessToken) return { accessToken: current!.accessToken!, expiresAt: current!.expiresAt! };
      if (!current?.refreshToken) {
        throw new UserError(`no OAuth2 login for ${this.account} yet (${this.file}): run \`mailagent auth login\``, EXIT.CONFIG);
      }
      const client = openid();
      const { configuration } = clientConfiguration(this.config, this.o, this.where);
      let response: Awaited<ReturnType<OpenId['refreshTokenGrant']>>;
      try {
        response = await client.refreshTokenGrant(configuration, current.refreshToken);
      } catch (err) {
        const code = oauthError(err);
        if (code === 'invalid_grant' || code === 'unauthorized_client' || code === 'invalid_client') {
          throw new UserError(
            `the OAuth2 refresh token of ${this.account} was refused by ${new URL(endpointsOf(this.o).tokenUrl).host} (${code}): it was revoked or has expired; run \`mailagent auth login\``,
            EXIT.CONFIG,
          );
        }
        // The provider is down or slow: a temporary failure, tried again later.
        throw new Error(`OAuth2 token refresh for ${this.account} failed: ${code ?? (err as Error).message}`);
      }
      const now = Date.now();
      const expiresAt = now + (response.expires_in ?? 3600) * 1000;
      writeTokens(this.file, {
        ...current,
        accessToken: response.access_token,
        expiresAt,
        // Rotated by the provider: the old one is spent, keep the new one.
        ...(response.refresh_token && { refreshToken: response.refresh_token }),
        ...(response.scope && { scopes: response.scope.split(' ') }),
        refreshedAt: now,
      });
      return { accessToken: response.access_token, expiresAt };
    });
  }
}

/** The token source of the agent's own IMAP or SMTP login, when it uses OAuth2. */
export function tokensFor(config: Config, which: 'imap' | 'smtp'): OAuthTokens | undefined {
  const section = which === 'imap' ? config.imap : config.smtp;
  const o = section?.oauth2;
  if (!section || !o) return undefined;
  return new OAuthTokens(config, o, section.user!, `${which}.oauth2`);
}
