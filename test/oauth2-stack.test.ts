import { createConnection } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fetchAll, uniqueMessageId, waitForCount } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';
import { OAuth2Error, approveDevice, startOAuth2Server, type OAuth2Server } from './support/oauth2';

// The OAuth2 test harness against the real servers: the mock authorization server and oidc-provider
// (device grant), Dovecot's passdb oauth2 (introspection) for IMAP, and Postfix submission with
// XOAUTH2 through Dovecot SASL. Failed OAuth logins cost ~0.5 s each in Dovecot 2.3, so the
// negative cases run concurrently.

const test = suite('oauth2 stack');
const AGENT = 'agent@example.com';
const OPS = 'ops@example.com';

let as: OAuth2Server;
let deviceAs: OAuth2Server;
let stack: MailStack;
let deviceStack: MailStack;

test.before(async () => {
  [as, deviceAs] = await Promise.all([startOAuth2Server(), startOAuth2Server({ deviceFlow: true, accessTokenTtl: 30 })]);
  [stack, deviceStack] = await Promise.all([
    startMailStack({ oauth2: { introspectionUrl: as.introspectionUrl, usernameAttribute: as.usernameAttribute } }),
    // XOAUTH2 only here: imapflow then has to use XOAUTH2 (it always prefers OAUTHBEARER).
    startMailStack({ oauth2: { introspectionUrl: deviceAs.introspectionUrl, usernameAttribute: deviceAs.usernameAttribute, mechanisms: 'xoauth2' } }),
  ]);
});
test.after(async () => {
  await Promise.allSettled([stack?.stop(), deviceStack?.stop(), as?.stop(), deviceAs?.stop()]);
});

/** IMAP login with a token (or password), then logout; rejects like imapflow does. */
async function imapLogin(s: MailStack, auth: { user: string; accessToken?: string; pass?: string }): Promise<void> {
  const { ImapFlow } = require('imapflow') as typeof import('imapflow');
  const client = new ImapFlow({ host: '127.0.0.1', port: s.imapPort, secure: false, logger: false, auth: auth as any, connectionTimeout: 5000, greetingTimeout: 5000 });
  client.on('error', () => { /* reported by connect() */ });
  try {
    await client.connect();
  } finally {
    await client.logout().catch(() => client.close());
  }
}

/** The capabilities before login (the AUTH= mechanisms). */
async function preLoginCapabilities(s: MailStack): Promise<Set<string>> {
  const reply = await rawImap(s.imapPort, ['a CAPABILITY', 'b LOGOUT']);
  return new Set(reply.match(/^\* CAPABILITY (.*)$/m)?.[1].trim().split(' ') ?? []);
}

/** Expect the login to be refused as an authentication failure (not a timeout or a crash). */
async function refused(s: MailStack, auth: { user: string; accessToken?: string; pass?: string }, what: string): Promise<void> {
  try {
    await imapLogin(s, auth);
  } catch (e: any) {
    assert.ok(e.authenticationFailed, `${what}: refused, but not as an authentication failure: ${e.message}`);
    return;
  }
  assert.unreachable(`${what}: the login was accepted`);
}

function transport(s: MailStack, auth?: object) {
  const nodemailer = require('nodemailer') as typeof import('nodemailer');
  return nodemailer.createTransport({ host: '127.0.0.1', port: s.submissionPort!, secure: false, ignoreTLS: true, auth: auth as any, connectionTimeout: 5000, greetingTimeout: 5000 });
}

test('the harness: the mock AS issues user-bound JWTs with the 127.0.0.1 issuer, and Dovecot offers both OAuth mechanisms', async () => {
  assert.match(as.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const tok = await as.passwordGrant(AGENT);
  assert.is(tok.expires_in, 3600);
  assert.type(tok.refresh_token, 'string');
  const info = await as.introspect(tok.access_token);
  assert.is(info.active, true);
  assert.is(info.iss, as.url);
  assert.is(info.email, AGENT);
  assert.is(info.sub, AGENT);
  assert.is((await as.introspect('not-a-token')).active, false);
  try {
    await as.passwordGrant(AGENT, { password: 'wrong' });
    assert.unreachable('a wrong password got a token');
  } catch (e) {
    assert.instance(e, OAuth2Error);
    assert.is((e as OAuth2Error).error, 'invalid_grant');
  }
  await imapLogin(stack, { user: AGENT, accessToken: tok.access_token });
  const caps = await preLoginCapabilities(stack);
  for (const c of ['AUTH=PLAIN', 'AUTH=XOAUTH2', 'AUTH=OAUTHBEARER']) assert.ok(caps.has(c), `${c} offered: ${[...caps].join(' ')}`);
  assert.match(readFileSync(join(stack.dir, 'dovecot.log'), 'utf8'), /method=OAUTHBEARER/);
});

test('IMAP: a valid token logs in (OAUTHBEARER, and XOAUTH2 by hand)', async () => {
  const { access_token } = await as.passwordGrant(AGENT);
  await imapLogin(stack, { user: AGENT, accessToken: access_token });
  // XOAUTH2 with SASL-IR, as Gmail-style clients send it.
  const ir = Buffer.from(`user=${AGENT}\x01auth=Bearer ${access_token}\x01\x01`).toString('base64');
  const reply = await rawImap(stack.imapPort, [`a AUTHENTICATE XOAUTH2 ${ir}`, 'b LOGOUT']);
  assert.match(reply, /^a OK /m);
});

test('IMAP: expired, revoked, foreign and bogus tokens, and a token as a PLAIN password, are refused; passwords still work', async () => {
  const [expired, revoked, agents, fine] = await Promise.all([
    as.passwordGrant(AGENT, { expiresIn: -5 }),
    as.passwordGrant(AGENT),
    as.passwordGrant(AGENT),
    as.passwordGrant(OPS),
  ]);
  // Same user, same second: still distinct tokens (a jti), or revoking one would revoke the other.
  assert.is.not(revoked.access_token, agents.access_token);
  await imapLogin(stack, { user: AGENT, accessToken: revoked.access_token });   // works before it is revoked
  await as.revoke(revoked.access_token);
  assert.is((await as.introspect(revoked.access_token)).active, false);
  const t0 = Date.now();
  await Promise.all([
    refused(stack, { user: AGENT, accessToken: expired.access_token }, 'expired token'),
    refused(stack, { user: AGENT, accessToken: revoked.access_token }, 'revoked token'),
    refused(stack, { user: OPS, accessToken: agents.access_token }, "agent's token for ops"),
    refused(stack, { user: AGENT, accessToken: 'bogus-token' }, 'bogus token'),
    refused(stack, { user: OPS, pass: fine.access_token }, 'token as a PLAIN password'),
    refused(stack, { user: 'ops', pass: 'wrong-password' }, 'wrong password'),
  ]);
  const failures = Date.now() - t0;
  // No auth penalty afterwards: a password login (PLAIN) and a token login are quick.
  const t1 = Date.now();
  await imapLogin(stack, { user: 'ops', pass: stack.users.ops.password });
  await imapLogin(stack, { user: OPS, pass: stack.users.ops.password });
  await imapLogin(stack, { user: OPS, accessToken: fine.access_token });
  const after = Date.now() - t1;
  assert.ok(failures < 3000, `six concurrent refusals took ${failures} ms`);
  assert.ok(after < 1000, `logins after the refusals took ${after} ms (auth penalty?)`);
});

test('refresh tokens: bound to their user, rotated, revocable; the server counts token requests', async () => {
  const before = await as.stats();
  const first = await as.passwordGrant(OPS, { expiresIn: 60 });
  const second = await as.refresh(first.refresh_token);
  assert.is.not(second.refresh_token, first.refresh_token);
  assert.is((await as.introspect(second.access_token)).email, OPS);
  await imapLogin(stack, { user: OPS, accessToken: second.access_token });
  try {
    await as.refresh(first.refresh_token);
    assert.unreachable('a spent refresh token was accepted');
  } catch (e) {
    assert.is((e as OAuth2Error).error, 'invalid_grant');
  }
  const third = await as.refresh(second.refresh_token, { expiresIn: 120 });
  assert.is(third.expires_in, 120);
  assert.is((await as.introspect(third.access_token)).sub, OPS, 'still ops after two rotations');
  await as.revoke(third.refresh_token);
  await as.refresh(third.refresh_token).then(() => assert.unreachable('a revoked refresh token was accepted'), (e) => assert.is(e.error, 'invalid_grant'));
  const after = await as.stats();
  assert.is(after.tokenRequests - before.tokenRequests, 5);
  assert.is(after.refreshRequests - before.refreshRequests, 4);
});

test('SMTP submission: nodemailer with an XOAUTH2 token sends, the mail arrives; a bad token gets 535, no AUTH is refused', async () => {
  const { access_token } = await as.passwordGrant(AGENT);
  const messageId = uniqueMessageId('oauth');
  const ok = transport(stack, { type: 'OAuth2', user: AGENT, accessToken: access_token });
  try {
    await ok.sendMail({ from: AGENT, to: OPS, subject: 'sent with a token', text: 'via submission\n', messageId });
  } finally {
    ok.close();
  }
  const bad = transport(stack, { type: 'OAuth2', user: AGENT, accessToken: 'bogus-token' });
  const anon = transport(stack);
  try {
    await Promise.all([
      bad.sendMail({ from: AGENT, to: OPS, subject: 'x', text: 'x' }).then(() => assert.unreachable('a bad token was accepted'), (e: any) => {
        assert.is(e.code, 'EAUTH');
        assert.is(e.responseCode, 535);
      }),
      anon.sendMail({ from: AGENT, to: OPS, subject: 'x', text: 'x' }).then(() => assert.unreachable('mail without AUTH was accepted'), (e: any) => {
        assert.is(e.responseCode, 554, e.message);
      }),
    ]);
  } finally {
    bad.close();
    anon.close();
  }
  await waitForCount(stack, 'ops', 1);
  const mails = await fetchAll(stack, 'ops');
  assert.is(mails.length, 1, 'only the authenticated mail arrived');
  assert.is(mails[0].messageId, messageId);
  assert.is(mails[0].subject, 'sent with a token');
  assert.match(readFileSync(join(stack.dir, 'postfix.log'), 'utf8'), /sasl_method=XOAUTH2, sasl_username=agent@example\.com/);
});

test('device flow (RFC 8628, oidc-provider): approved by the scripted browser, the token logs in with XOAUTH2', async () => {
  const da = await deviceAs.startDeviceAuthorization();
  assert.match(da.verification_uri_complete, new RegExp(`^${deviceAs.url}/device\\?user_code=`));
  await deviceAs.pollDeviceToken(da.device_code).then(() => assert.unreachable('a token before approval'), (e) => assert.is(e.error, 'authorization_pending'));
  const page = await approveDevice(da.verification_uri_complete, AGENT);
  assert.is(page.title, 'Sign-in Success');
  const tok = await deviceAs.pollDeviceToken(da.device_code);
  assert.is(tok.expires_in, 30, 'the configured access token lifetime');
  assert.type(tok.refresh_token, 'string');
  const info = await deviceAs.introspect(tok.access_token);
  assert.is(info.active, true);
  assert.is(info.sub, AGENT);

  await imapLogin(deviceStack, { user: AGENT, accessToken: tok.access_token });
  const caps = await preLoginCapabilities(deviceStack);
  assert.ok(caps.has('AUTH=XOAUTH2') && !caps.has('AUTH=OAUTHBEARER'), [...caps].join(' '));
  assert.match(readFileSync(join(deviceStack.dir, 'dovecot.log'), 'utf8'), /method=XOAUTH2/);

  // A refreshed token works too, and not for another user. Revoking a token makes oidc-provider
  // revoke every token of the grant: the refreshed one is refused as well afterwards.
  const fresh = await deviceAs.refresh(tok.refresh_token);
  await Promise.all([
    imapLogin(deviceStack, { user: AGENT, accessToken: fresh.access_token }),
    refused(deviceStack, { user: OPS, accessToken: fresh.access_token }, "agent's device token for ops"),
  ]);
  await deviceAs.revoke(tok.access_token);
  assert.is((await deviceAs.introspect(fresh.access_token)).active, false, 'the whole grant is revoked');
  await Promise.all([
    refused(deviceStack, { user: AGENT, accessToken: tok.access_token }, 'revoked device token'),
    refused(deviceStack, { user: AGENT, accessToken: fresh.access_token }, 'token of the revoked grant'),
  ]);
  const s = await deviceAs.stats();
  assert.is(s.refreshRequests, 1);
  assert.is(s.tokenRequests, 3);
});

/** Send IMAP lines one after the other (each after the previous reply's tagged line); resolves with all the server said. */
function rawImap(port: number, lines: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    let next = 0;
    sock.setTimeout(5000, () => { sock.destroy(); reject(new Error(`rawImap: timeout; got ${buf}`)); });
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const tag = next === 0 ? null : lines[next - 1].split(' ')[0];
      const ready = next === 0 ? /^\* OK/m.test(buf) : new RegExp(`^${tag} (OK|NO|BAD)`, 'm').test(buf);
      if (!ready) return;
      if (next < lines.length) sock.write(lines[next++] + '\r\n');
    });
    sock.on('close', () => resolve(buf));
    sock.on('error', reject);
  });
}

test.run();
