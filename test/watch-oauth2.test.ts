import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readTokens, writeTokens } from '../src/mail/oauth2';
import { BINARY, dumpLogs, handledKey, killAgents, sleep, startAgentProcess, writeAgentConfig } from './support/agent-process';
import { tempDir } from './support/env';
import { fetchAll, sendMail, waitForCount } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';
import { approveDevice, startOAuth2Server, type OAuth2Server } from './support/oauth2';

// OAuth2 logins against real servers: a local authorization server, Dovecot checking tokens by
// introspection, Postfix's submission port taking XOAUTH2 through Dovecot SASL. The agent logs in
// with tokens, keeps answering across expiries (refreshing), stops with exit 78 and a clear line
// on a revoked refresh token, and `auth login` runs the device grant end to end.
const test = suite('watch with OAuth2');
const TOKEN_LIFETIME_S = 6;

let as: OAuth2Server | undefined;
let stack: MailStack | undefined;
let work: { dir: string; cleanup: () => void };

test.before(() => {
  work = tempDir('mailagent-woauth-');
});

test.after(async () => {
  await killAgents();
  await stack?.stop();
  await as?.stop();
  work?.cleanup();
});

/** A watch config whose IMAP and SMTP logins use tokens of `server`. */
function oauthConfig(name: string, server: OAuth2Server, extra: Record<string, unknown> = {}): string {
  return writeAgentConfig(stack!, work.dir, name, (raw) => {
    delete raw.services.jobs;
    const oauth2 = { provider: 'generic', clientId: server.clientId, tokenUrl: server.tokenUrl, ...extra };
    raw.imap = { ...raw.imap, user: stack!.users.agent.address, password: undefined, oauth2 };
    raw.smtp = { host: '127.0.0.1', port: stack!.submissionPort, secure: false, user: stack!.users.agent.address, oauth2, timeoutSeconds: 5 };
    raw.health = { imapCheckSeconds: 1, degradedAfterSeconds: 30, downAfterSeconds: 60 };
  });
}

test('watch logs in with a token, refreshes it when it expires, and keeps answering; no token ever reaches the log', async () => {
  as = await startOAuth2Server({ accessTokenTtl: TOKEN_LIFETIME_S });
  stack = await startMailStack({ oauth2: { introspectionUrl: as.introspectionUrl } });
  const config = oauthConfig('a', as);
  const address = stack.users.agent.address;
  // As `auth login` leaves it: a refresh token in the file beside the state.
  const granted = await as.passwordGrant(address);
  const file = join(work.dir, 'a', `oauth2-${address}.json`);
  writeTokens(file, { account: address, provider: 'generic', clientId: as.clientId, scopes: [], refreshToken: granted.refresh_token!, loggedInAt: Date.now() });

  const agent = startAgentProcess({ config, cwd: work.dir, env: { HOME: work.dir, MAILAGENT_LOG_LEVEL: 'debug' } });
  await agent.waitFor((l) => l.msg === 'ready', { timeoutMs: 30_000 });
  const seen = new Set<string>([granted.access_token, granted.refresh_token!]);
  const remember = () => {
    const t = readTokens(file)!;
    if (t.accessToken) seen.add(t.accessToken);
    if (t.refreshToken) seen.add(t.refreshToken);
  };
  remember();

  const ask = async (n: number) => {
    const id = await sendMail(stack!, { subject: `help ${n}`, text: 'help\n' });
    await agent.waitFor(handledKey(id), { timeoutMs: 30_000 });
    await waitForCount(stack!, 'ops', n, { timeoutMs: 30_000, intervalMs: 100 });
    return (await fetchAll(stack!, 'ops')).find((m) => m.inReplyTo === id);
  };
  assert.ok(await ask(1), 'answered: the reply went out over SMTP with XOAUTH2');
  const refreshedBefore = (await as.stats()).refreshRequests;

  // Past the token's lifetime, with the IMAP connection gone: the agent needs a new token for both.
  await sleep((TOKEN_LIFETIME_S + 1) * 1000);
  await stack.restartDovecot();
  await agent.waitFor((l) => l.msg === 'connected', { timeoutMs: 30_000, from: agent.logs.length });
  remember();
  assert.ok(await ask(2), 'answered after the expiry');
  remember();
  assert.ok((await as.stats()).refreshRequests > refreshedBefore, 'the token was refreshed');
  assert.not.equal(readTokens(file)!.refreshToken, granted.refresh_token, 'the rotated refresh token is kept');

  agent.child.kill('SIGTERM');
  assert.is(await agent.exit, 0);
  const logText = agent.logs.map((l) => JSON.stringify(l.line)).join('\n');
  for (const token of seen) assert.not.ok(logText.includes(token), `a token is in the log:\n${dumpLogs(agent.logs.slice(-10))}`);
});

test('a revoked refresh token: one clear line and exit 78 (a config problem: log in again)', async () => {
  const config = oauthConfig('a', as!);
  const address = stack!.users.agent.address;
  const file = join(work.dir, 'a', `oauth2-${address}.json`);
  const tokens = readTokens(file)!;
  await as!.revoke(tokens.refreshToken!);
  writeTokens(file, { ...tokens, expiresAt: 0 }); // the access token is used up as well
  const r = spawnSync(BINARY, ['watch', '--once', '--config', config], { encoding: 'utf8', env: { PATH: process.env.PATH!, HOME: work.dir }, timeout: 30_000 });
  assert.is(r.status, 78, r.stderr);
  assert.match(r.stderr, `the OAuth2 refresh token of ${address} was refused by 127.0.0.1:${as!.port} (invalid_grant): it was revoked or has expired; run \`mailagent auth login\``);
  assert.not.ok(r.stderr.includes(tokens.refreshToken!));
});

test('auth login: the device grant end to end, approved as the user would; auth status shows it without a token', async () => {
  await stack!.stop();
  await as!.stop();
  as = await startOAuth2Server({ deviceFlow: true });
  stack = await startMailStack({ oauth2: { introspectionUrl: as.introspectionUrl, usernameAttribute: as.usernameAttribute } });
  const config = oauthConfig('d', as, { deviceAuthorizationUrl: as.deviceAuthorizationUrl, issuer: as.url, scopes: ['openid', 'email', 'offline_access'] });

  const login = spawn(BINARY, ['auth', 'login', '--for', 'imap', '--config', config], { env: { PATH: process.env.PATH!, HOME: work.dir } });
  let stderr = '';
  login.stderr.on('data', (c) => (stderr += c));
  const exit = new Promise<number | null>((r) => login.once('exit', r));
  const deadline = Date.now() + 15_000;
  while (!/\(or open (\S+)\)/.test(stderr) && Date.now() < deadline) await sleep(50);
  const uri = /\(or open (\S+)\)/.exec(stderr)?.[1];
  assert.ok(uri, stderr);
  assert.match(stderr, /open +http:\/\/127\.0\.0\.1:\d+\/device\n +enter +\S+/);
  await approveDevice(uri!, stack.users.agent.address);
  assert.is(await exit, 0, stderr);
  assert.match(stderr, `Logged in as ${stack.users.agent.address}`);

  const status = spawnSync(BINARY, ['auth', 'status', '--json', '--config', config], { encoding: 'utf8', env: { PATH: process.env.PATH!, HOME: work.dir } });
  assert.is(status.status, 0, status.stderr);
  const [imap] = JSON.parse(status.stdout);
  assert.equal([imap.login, imap.account, imap.loggedIn], ['imap', stack.users.agent.address, true]);
  assert.ok(imap.scopes.includes('offline_access'), status.stdout);
  const stored = readTokens(imap.tokenFile)!;
  assert.not.ok(status.stdout.includes(stored.refreshToken!) || status.stdout.includes(stored.accessToken!), 'no token in the status');
  assert.is(readFileSync(imap.tokenFile).length > 0, true);

  // The token from the device login opens the mailbox.
  const probe = spawnSync(BINARY, ['test-service', 'imap', 'smtp', '--json', '--config', config], { encoding: 'utf8', env: { PATH: process.env.PATH!, HOME: work.dir } });
  assert.is(probe.status, 0, `${probe.stdout}${probe.stderr}`);
});

test.run();
