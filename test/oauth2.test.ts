import { statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Config } from '../src/config/types';
import { UserError } from '../src/core/errors';
import { createLogger } from '../src/core/log';
import { OAuthTokens, readTokens, tokenFileOf, tokensFor, writeTokens } from '../src/mail/oauth2';
import { demoConfig, tempDir } from './support/env';

// The token side of OAuth2 against a small token endpoint of the test's own (the full stack with
// Dovecot and Postfix is in oauth2-login.test.ts): refresh before expiry, rotation kept, one
// refresh for concurrent callers, a refused refresh token as a config error, no token in logs.

const { dir, cleanup } = tempDir('mailagent-oauth2-');
let server: Server;
/** Refresh tokens as long as real ones (short strings are not redacted from logs: they would hit ordinary words). */
const rt = (n: number) => `refresh-token-${n}-0123456789`;
let port = 0;
const state = { requests: 0, valid: new Set<string>([rt(1)]), next: 2, lifetime: 3600, delayMs: 0 };

test.before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', async () => {
      const form = new URLSearchParams(body);
      state.requests++;
      await new Promise((r) => setTimeout(r, state.delayMs));
      res.setHeader('content-type', 'application/json');
      const refresh = form.get('refresh_token') ?? '';
      if (form.get('grant_type') !== 'refresh_token' || !state.valid.has(refresh) || form.get('client_id') !== 'mailagent') {
        res.statusCode = 400;
        res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'unknown refresh token' }));
        return;
      }
      // Rotation: the presented refresh token is spent, a new one comes with the access token.
      state.valid.delete(refresh);
      const n = state.next++;
      state.valid.add(rt(n));
      res.end(JSON.stringify({ access_token: `access-token-number-${n}-abcdefghijkl`, token_type: 'Bearer', expires_in: state.lifetime, refresh_token: rt(n), scope: 'mail' }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});

test.after(async () => {
  await new Promise((r) => server.close(r));
  cleanup();
});

function config(): Config {
  return demoConfig(dir, (raw) => {
    raw.state.path = join(dir, 'state.db');
    raw.imap = { host: '127.0.0.1', port: 1, user: 'agent@example.com', oauth2: { provider: 'generic', clientId: 'mailagent', tokenUrl: `http://127.0.0.1:${port}/token` } };
  });
}

test('tokens: refreshed when due, kept while valid, the rotated refresh token stored in a file of mode 0600', async () => {
  const cfg = config();
  const tokens = tokensFor(cfg, 'imap')!;
  assert.is(tokens.file, join(dir, 'oauth2-agent@example.com.json'));
  const missing = await tokens.accessToken().then(() => undefined, (e: Error) => e);
  assert.ok(missing instanceof UserError && /no OAuth2 login for agent@example.com yet .*mailagent auth login/.test(missing.message), String(missing));
  writeTokens(tokens.file, { account: 'agent@example.com', provider: 'generic', clientId: 'mailagent', scopes: ['mail'], refreshToken: rt(1), loggedInAt: Date.now() });
  const before = state.requests;
  const first = await tokens.accessToken();
  assert.is(first, 'access-token-number-2-abcdefghijkl');
  assert.is(await tokens.accessToken(), first, 'a valid token is reused');
  assert.is(state.requests - before, 1);
  assert.is(readTokens(tokens.file)!.refreshToken, rt(2), 'the rotated refresh token replaced the spent one');
  assert.is(statSync(tokens.file).mode & 0o777, 0o600);
  // Due within the minute before expiry: refreshed ahead of time.
  writeTokens(tokens.file, { ...readTokens(tokens.file)!, expiresAt: Date.now() + 30_000 });
  assert.is(await tokens.accessToken(), 'access-token-number-3-abcdefghijkl');
  // Refused by the server although not expired: renew asks for a new one.
  assert.is(await tokens.accessToken(true), 'access-token-number-4-abcdefghijkl');
});

test('two processes refreshing at once spend the refresh token once (the file lock), and both get the new token', async () => {
  const cfg = config();
  const file = tokenFileOf(cfg, cfg.imap!.oauth2!, 'agent@example.com');
  writeTokens(file, { ...readTokens(file)!, expiresAt: 0 });
  state.delayMs = 150;
  const before = state.requests;
  const a = new OAuthTokens(cfg, cfg.imap!.oauth2!, 'agent@example.com', 'imap.oauth2');
  const b = new OAuthTokens(cfg, cfg.imap!.oauth2!, 'agent@example.com', 'imap.oauth2');
  const [ta, tb] = await Promise.all([a.accessToken(), b.accessToken()]);
  state.delayMs = 0;
  assert.is(state.requests - before, 1, 'one token request');
  assert.is(ta, tb);
});

test('a refused refresh token is a config error that says what to do; no token is ever logged', async () => {
  const cfg = config();
  const tokens = tokensFor(cfg, 'imap')!;
  const stored = readTokens(tokens.file)!;
  state.valid.clear(); // revoked at the provider
  writeTokens(tokens.file, { ...stored, expiresAt: 0 });
  const err = await tokens.accessToken().then(() => undefined, (e: Error) => e);
  assert.instance(err, UserError, String(err));
  assert.is((err as UserError).exitCode, 78);
  assert.match(err!.message, `the OAuth2 refresh token of agent@example.com was refused by 127.0.0.1:${port} (invalid_grant): it was revoked or has expired; run \`mailagent auth login\``);
  const lines: string[] = [];
  const log = createLogger({ level: 'debug', json: true, write: (l) => void lines.push(l) });
  log.info('whatever', { token: stored.accessToken, note: `bearer ${stored.accessToken}`, nested: { x: stored.refreshToken } });
  log.error(`failed with ${stored.accessToken}`);
  const text = lines.join('');
  assert.not.match(text, stored.accessToken!);
  assert.not.match(text, stored.refreshToken!);
  assert.match(text, '[redacted]');
});

test('an http token endpoint is refused unless it is on loopback', () => {
  const cfg = demoConfig(dir, (raw) => {
    raw.imap = { host: '127.0.0.1', user: 'a@example.com', oauth2: { provider: 'generic', clientId: 'x', tokenUrl: 'http://idp.example.com/token' } };
  });
  writeTokens(tokenFileOf(cfg, cfg.imap!.oauth2!, 'a@example.com'), { account: 'a@example.com', provider: 'generic', clientId: 'x', scopes: [], refreshToken: 'rt-x', loggedInAt: 0 });
  return tokensFor(cfg, 'imap')!.accessToken().then(
    () => assert.unreachable('refused'),
    (err: Error) => assert.match(err.message, 'OAuth2 endpoints must use https (http is only accepted on loopback)'),
  );
});

test.run();
