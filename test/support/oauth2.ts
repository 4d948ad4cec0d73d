/**
 * A private OAuth2 authorization server for tests, on 127.0.0.1 (a free port), as a child node process:
 *
 * - default: oauth2-mock-server made usable (test/support/oauth2-as.mjs): password and refresh grants,
 *   RS256 JWT access tokens whose `sub` and `email` are the user, per-request lifetime, real
 *   introspection and revocation, refresh tokens bound to the user and rotated.
 * - `deviceFlow: true`: oidc-provider (test/support/oauth2-device-as.mjs) for the device authorization
 *   grant (RFC 8628), with opaque access tokens; the "user" approves with approveDevice().
 *
 * Either one's `introspectionUrl` and `usernameAttribute` go straight into startMailStack's `oauth2`
 * option, so Dovecot (IMAP, and Postfix submission through it) accepts its tokens.
 *
 * Everything lives in a short temp dir (/tmp/oas-XXXXXX: as.log, as.json, the public key). The
 * process carries MAILAGENT_TEST_OAUTH2=<dir> in its environment; the safety net kills it when the
 * test process exits, and a server left by a test process that was SIGKILLed is reaped by the next
 * startOAuth2Server().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { alive, killMarkedSync, markedProcesses, reapStale, registerDaemon, removeDir, sleep, tail, unregisterDaemon } from './safety-net';

export interface OAuth2TokenResponse {
  access_token: string;
  /** Absent only when the server issues none (device grant without offline_access). */
  refresh_token: string;
  /** Seconds, as the server said (negative for a token that was born expired). */
  expires_in: number;
  token_type?: string;
  id_token?: string;
  scope?: string;
}

export interface OAuth2Stats {
  /** POSTs to the token endpoint, any grant, refused ones included. */
  tokenRequests: number;
  /** Of those, grant_type=refresh_token. */
  refreshRequests: number;
}

export interface DeviceAuthorization {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  expires_in: number;
  interval?: number;
}

/** A token-endpoint (or revocation) refusal: `error` is the OAuth error code (invalid_grant, authorization_pending...). */
export class OAuth2Error extends Error {
  constructor(readonly error: string, readonly status: number, readonly body: unknown) {
    super(`OAuth2 error ${status}: ${error}`);
    this.name = 'OAuth2Error';
  }
}

export interface PasswordGrantOptions {
  /** Token lifetime in seconds (default 3600); negative gives an already expired token. */
  expiresIn?: number;
  /** The grant accepts 'secret' (the default) and refuses any other password. */
  password?: string;
  clientId?: string;
  scope?: string;
}

export interface OAuth2Server {
  /** The issuer (`iss` of the tokens): http://127.0.0.1:PORT. */
  url: string;
  port: number;
  tokenUrl: string;
  /** Only with deviceFlow. */
  deviceAuthorizationUrl?: string;
  /**
   * For Dovecot's `introspection_url`. With deviceFlow it carries the "dovecot" client's credentials
   * as URL userinfo (oidc-provider requires client authentication; Dovecot sends them as Basic auth).
   * fetch() refuses URLs with credentials: use introspect() from tests.
   */
  introspectionUrl: string;
  revocationUrl: string;
  /** The introspection field holding the login name: 'email' (mock) or 'sub' (oidc-provider). */
  usernameAttribute: 'email' | 'sub';
  /** The public client the tests use ('mua'). */
  clientId: string;
  /** The temp dir (as.log is the server's output). */
  dir: string;
  /** Password grant (mock only): a token for `user` (sub and email = user). */
  passwordGrant(user: string, opts?: PasswordGrantOptions): Promise<OAuth2TokenResponse>;
  /** Refresh grant; the refresh token is spent (rotation). Throws OAuth2Error('invalid_grant') for a spent or revoked one. */
  refresh(refreshToken: string, opts?: { expiresIn?: number }): Promise<OAuth2TokenResponse>;
  /** RFC 7009 revocation of an access or refresh token. */
  revoke(token: string): Promise<void>;
  /** The introspection response for a token, as Dovecot sees it. */
  introspect(token: string): Promise<Record<string, unknown> & { active: boolean }>;
  /** Counters kept by the server since it started. */
  stats(): Promise<OAuth2Stats>;
  /** deviceFlow only: step 1 of RFC 8628 (client "mua", scope openid email offline_access). */
  startDeviceAuthorization(): Promise<DeviceAuthorization>;
  /** deviceFlow only: one poll of the token endpoint; OAuth2Error('authorization_pending') until approved. */
  pollDeviceToken(deviceCode: string): Promise<OAuth2TokenResponse>;
  /** deviceFlow only: the whole flow, approved as `user` (startDeviceAuthorization + approveDevice + pollDeviceToken). */
  deviceGrant(user: string): Promise<OAuth2TokenResponse>;
  /** Kill the server and remove its dir. Idempotent. */
  stop(): Promise<void>;
}

export interface OAuth2ServerOptions {
  /** Start oidc-provider with the device authorization grant instead of the mock (no password grant then). */
  deviceFlow?: boolean;
  /** The access token lifetime in seconds when a request does not ask for one (default 3600). Use >= 5: iat/exp are whole seconds. */
  accessTokenTtl?: number;
}

const TMP_PREFIX = '/tmp/oas-';
const OWNER_FILE = 'owner.pid';
const MARK = 'MAILAGENT_TEST_OAUTH2';
const READY_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 3000;
const CLIENT_ID = 'mua';
const DOVECOT_CLIENT = { id: 'dovecot', secret: 'dovecot-secret' };
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';



async function postForm(url: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const r = await fetch(url, { method: 'POST', body: new URLSearchParams(form), headers });
  const text = await r.text();
  let body: any = text;
  try { body = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
  return { status: r.status, body };
}

async function tokenRequest(url: string, form: Record<string, string>): Promise<OAuth2TokenResponse> {
  const { status, body } = await postForm(url, form);
  if (status !== 200 || typeof body?.access_token !== 'string') throw new OAuth2Error(body?.error ?? `HTTP ${status}`, status, body);
  return body as OAuth2TokenResponse;
}

class Server implements OAuth2Server {
  url = '';
  port = 0;
  readonly clientId = CLIENT_ID;
  private child?: ChildProcess;
  private exited?: string;

  constructor(readonly dir: string, private readonly device: boolean, private readonly ttl?: number) {}

  get usernameAttribute(): 'email' | 'sub' { return this.device ? 'sub' : 'email'; }
  get tokenUrl() { return `${this.url}/token`; }
  get deviceAuthorizationUrl() { return this.device ? `${this.url}/device/auth` : undefined; }
  get revocationUrl() { return this.device ? `${this.url}/token/revocation` : `${this.url}/revoke`; }
  /** Without credentials, for our own requests. */
  private get plainIntrospectionUrl() { return this.device ? `${this.url}/token/introspection` : `${this.url}/introspect`; }
  get introspectionUrl() {
    if (!this.device) return this.plainIntrospectionUrl;
    const u = new URL(this.plainIntrospectionUrl);
    u.username = DOVECOT_CLIENT.id;
    u.password = DOVECOT_CLIENT.secret;
    return u.href;
  }
  get logFile() { return join(this.dir, 'as.log'); }

  async start(): Promise<void> {
    const script = join(__dirname, this.device ? 'oauth2-device-as.mjs' : 'oauth2-as.mjs');
    const args = [script, '0', this.dir, ...(this.ttl ? [String(this.ttl)] : [])];
    const fd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      // Port 0: the server binds first and reports its port (as.json), so no port race. Detached and
      // unref'd: it must not keep a finished test process alive; the safety net kills it.
      child = spawn(process.execPath, args, { cwd: this.dir, env: { ...process.env, [MARK]: this.dir }, stdio: ['ignore', fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
    this.child = child;
    child.unref();
    child.once('error', (e) => { this.exited = `spawn error ${e.message}`; });
    child.once('exit', (code, sig) => { this.exited = `exit ${code ?? sig}`; });
    const info = join(this.dir, 'as.json');
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (let delay = 10; !existsSync(info); delay = Math.min(delay * 2, 50)) {
      if (this.exited) throw new Error(`oauth2 harness: server ${this.exited} before it was ready:\n${tail(this.logFile)}`);
      if (Date.now() > deadline) throw new Error(`oauth2 harness: server not ready after ${READY_TIMEOUT_MS} ms:\n${tail(this.logFile)}`);
      await sleep(delay);
    }
    const { port, issuer } = JSON.parse(readFileSync(info, 'utf8'));
    this.port = port;
    this.url = issuer;
  }

  async passwordGrant(user: string, opts: PasswordGrantOptions = {}): Promise<OAuth2TokenResponse> {
    if (this.device) throw new Error('oauth2 harness: the device-flow server (oidc-provider) has no password grant');
    const form: Record<string, string> = { grant_type: 'password', username: user, password: opts.password ?? 'secret', client_id: opts.clientId ?? CLIENT_ID };
    if (opts.expiresIn !== undefined) form.expires_in = String(opts.expiresIn);
    if (opts.scope) form.scope = opts.scope;
    return tokenRequest(this.tokenUrl, form);
  }

  async refresh(refreshToken: string, opts: { expiresIn?: number } = {}): Promise<OAuth2TokenResponse> {
    const form: Record<string, string> = { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: CLIENT_ID };
    if (opts.expiresIn !== undefined && !this.device) form.expires_in = String(opts.expiresIn);
    return tokenRequest(this.tokenUrl, form);
  }

  async revoke(token: string): Promise<void> {
    // oidc-provider lets a client revoke only its own tokens: authenticate as the public client.
    const { status, body } = await postForm(this.revocationUrl, { token, client_id: CLIENT_ID });
    if (status !== 200) throw new OAuth2Error(body?.error ?? `HTTP ${status}`, status, body);
  }

  async introspect(token: string): Promise<Record<string, unknown> & { active: boolean }> {
    const headers: Record<string, string> = this.device
      ? { authorization: `Basic ${Buffer.from(`${DOVECOT_CLIENT.id}:${DOVECOT_CLIENT.secret}`).toString('base64')}` }
      : {};
    const { status, body } = await postForm(this.plainIntrospectionUrl, { token }, headers);
    if (status !== 200) throw new OAuth2Error(body?.error ?? `HTTP ${status}`, status, body);
    return body;
  }

  async stats(): Promise<OAuth2Stats> {
    const r = await fetch(`${this.url}/test/stats`);
    const s = await r.json() as OAuth2Stats;
    return { tokenRequests: s.tokenRequests, refreshRequests: s.refreshRequests };
  }

  private needDevice(what: string): void {
    if (!this.device) throw new Error(`oauth2 harness: ${what} needs startOAuth2Server({ deviceFlow: true })`);
  }

  async startDeviceAuthorization(): Promise<DeviceAuthorization> {
    this.needDevice('startDeviceAuthorization');
    const { status, body } = await postForm(this.deviceAuthorizationUrl!, { client_id: CLIENT_ID, scope: 'openid email offline_access' });
    if (status !== 200 || !body?.device_code) throw new OAuth2Error(body?.error ?? `HTTP ${status}`, status, body);
    return body as DeviceAuthorization;
  }

  async pollDeviceToken(deviceCode: string): Promise<OAuth2TokenResponse> {
    this.needDevice('pollDeviceToken');
    return tokenRequest(this.tokenUrl, { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: CLIENT_ID });
  }

  async deviceGrant(user: string): Promise<OAuth2TokenResponse> {
    const da = await this.startDeviceAuthorization();
    await approveDevice(da.verification_uri_complete, user);
    return this.pollDeviceToken(da.device_code);
  }

  private pids(): number[] {
    return existsSync(this.dir) ? markedProcesses(MARK, this.dir, [this.child?.pid]) : [];
  }

  async stop(): Promise<void> {
    if (!existsSync(this.dir)) return;
    try {
      const all = this.pids();
      for (const pid of all) try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      while (all.some(alive) && Date.now() < deadline) await sleep(10);
      const left = all.filter(alive);
      if (left.length) killMarkedSync(MARK, this.dir, left);
    } finally {
      unregisterDaemon(this.dir);
      removeDir(this.dir);
    }
  }

  killSync(): void {
    killMarkedSync(MARK, this.dir, [this.child?.pid]);
    removeDir(this.dir);
  }
}

/** Start a private authorization server; see the file comment. */
export async function startOAuth2Server(options: OAuth2ServerOptions = {}): Promise<OAuth2Server> {
  reapStale(TMP_PREFIX, OWNER_FILE, (dir) => killMarkedSync(MARK, dir, []));
  const dir = mkdtempSync(TMP_PREFIX);
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, OWNER_FILE), `${process.pid}\n`);
  const server = new Server(dir, !!options.deviceFlow, options.accessTokenTtl);
  registerDaemon(dir, () => server.killSync());
  try {
    await server.start();
  } catch (e) {
    await server.stop().catch(() => server.killSync());
    throw e;
  }
  return server;
}

/**
 * The user's side of the device flow, as a scripted browser against oidc-provider's dev interactions:
 * open `verificationUriComplete`, confirm the user code (the page's xsrf), log in as `user` (any
 * password), grant consent. Resolves once the "Sign-in Success" page is reached; the device's next
 * token poll then gets the tokens.
 */
export async function approveDevice(verificationUriComplete: string, user: string): Promise<{ url: string; title: string }> {
  const jar = new Map<string, string>();
  const form = (o: Record<string, string>) => new URLSearchParams(o);
  async function go(url: string, opts: { method?: string; body?: URLSearchParams } = {}): Promise<{ url: string; status: number; body: string }> {
    for (let i = 0; i < 10; i++) {
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      const r = await fetch(url, { ...opts, redirect: 'manual', headers: cookie ? { cookie } : {} });
      for (const c of r.headers.getSetCookie()) {
        const [k, ...v] = c.split(';')[0].split('=');
        jar.set(k.trim(), v.join('='));
      }
      if (r.status >= 300 && r.status < 400 && r.headers.get('location')) {
        await r.arrayBuffer();
        url = new URL(r.headers.get('location')!, url).href;
        opts = {};
        continue;
      }
      return { url, status: r.status, body: await r.text() };
    }
    throw new Error('approveDevice: too many redirects');
  }
  const hidden = (html: string, name: string) => html.match(new RegExp(`name="${name}" value="([^"]*)"`))?.[1];
  const title = (html: string) => html.match(/<h1>([^<]*)/)?.[1]?.trim() ?? '';

  let p = await go(verificationUriComplete);
  const xsrf = hidden(p.body, 'xsrf');
  const userCode = hidden(p.body, 'user_code');
  if (!xsrf || !userCode) throw new Error(`approveDevice: no confirmation form at ${p.url} (${p.status} ${title(p.body)})`);
  p = await go(new URL('/device', p.url).href, { method: 'POST', body: form({ xsrf, user_code: userCode, confirm: 'yes' }) });
  for (let step = 0; step < 4 && /\/interaction\//.test(p.url); step++) {   // login, then consent
    const prompt = hidden(p.body, 'prompt');
    if (!prompt) throw new Error(`approveDevice: no prompt at ${p.url} (${p.status} ${title(p.body)})`);
    p = await go(p.url, { method: 'POST', body: form(prompt === 'login' ? { prompt, login: user, password: 'x' } : { prompt }) });
  }
  const t = title(p.body);
  if (p.status !== 200 || t !== 'Sign-in Success') throw new Error(`approveDevice: ended at ${p.url} with ${p.status} "${t}"`);
  return { url: p.url, title: t };
}
