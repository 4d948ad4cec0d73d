// A test OAuth2 authorization server on 127.0.0.1: oauth2-mock-server plus what it lacks for tests
// against Dovecot (see the comments below). Started by test/support/oauth2.ts as a child process.
//
// usage: node oauth2-as.mjs PORT OUTDIR     (PORT 0: any free port)
//
// Writes OUTDIR/keys/<kid>.pem (public key, for Dovecot's local JWT validation) and then
// OUTDIR/as.json ({port, issuer, kid}) once it listens, and prints "ready PORT".
//
// Endpoints: POST /token (grants password, refresh_token, client_credentials, authorization_code;
// extra form field expires_in=SECONDS sets the lifetime, negative = already expired), POST /introspect
// and POST /revoke (form-encoded, JSON or Bearer), GET /jwks, GET /.well-known/openid-configuration,
// and for tests GET /test/stats -> {tokenRequests, refreshRequests, introspections, revocations}.
//
// What the stock mock does wrong for these tests, and is fixed here:
// - /introspect answers {active:true} for any string, /revoke does nothing: both implemented (JWT
//   signature, exp, nbf, issuer, revocation list).
// - /introspect and /revoke parse only JSON bodies; Dovecot and RFC 7009 clients send forms.
// - the refresh grant accepts any refresh token and always returns sub "johndoe": refresh tokens
//   are bound to their user here, rotated (single use) and revocable.
// - the lifetime is fixed at 3600 s: per request via expires_in.
// - tokens carry no jti: identical claims in the same second give identical tokens. A jti is added.
// - the issuer is http://localhost:PORT even on 127.0.0.1: set to the 127.0.0.1 URL (Dovecot's
//   `issuers` and token `iss` must match exactly).
import http from 'node:http';
import fs from 'node:fs';
import { randomUUID } from 'node:crypto';
import express from 'express';
import { jwtVerify, createLocalJWKSet, exportSPKI, importJWK } from 'jose';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

const port = Number(process.argv[2] ?? 0);
const outdir = process.argv[3] ?? '.';
/** The password the password grant accepts for every user (a missing password is accepted too). */
const PASSWORD = 'secret';

const issuer = new OAuth2Issuer();
const key = await issuer.keys.generate('RS256');
const service = new OAuth2Service(issuer);
const revoked = new Set();            // revoked access and refresh tokens
const refresh = new Map();            // live refresh token -> { user }
const stats = { tokenRequests: 0, refreshRequests: 0, introspections: 0, revocations: 0 };
const jwks = () => createLocalJWKSet({ keys: issuer.keys.toJSON() });

/** argv[4]: the lifetime of access tokens whose request does not ask for one (default 3600 s). */
const defaultTtl = Number(process.argv[4] ?? 3600) || 3600;
const ttlOf = (req) => {
  const t = Number(req.body?.expires_in);
  return Number.isFinite(t) && t !== 0 ? Math.trunc(t) : defaultTtl;
};
/** The user a token request is for; for a refresh, the one its refresh token was issued to. */
const userOf = (req) => {
  const b = req.body ?? {};
  if (b.grant_type === 'refresh_token') return req.refreshUser ?? refresh.get(b.refresh_token)?.user;
  return b.username;
};

service.on('beforeTokenSigning', (token, req) => {          // access token and id_token
  const user = userOf(req);
  token.payload.exp = Math.floor(Date.now() / 1000) + ttlOf(req);
  // Without a jti, two tokens for the same user issued in the same second are the same string: revoking
  // one would revoke the other.
  token.payload.jti = randomUUID();
  if (user) { token.payload.sub = user; token.payload.email = user; }
  token.payload.client_id = req.body?.client_id ?? 'test-client';
});
service.on('beforeResponse', (resp, req) => {
  const b = req.body ?? {};
  const fail = () => { resp.statusCode = 400; resp.body = { error: 'invalid_grant' }; };
  if (b.grant_type === 'refresh_token') {
    if (!refresh.has(b.refresh_token) || revoked.has(b.refresh_token)) return fail();
    // Remember the user before the old token goes: the new refresh token belongs to them too.
    req.refreshUser = refresh.get(b.refresh_token).user;
    refresh.delete(b.refresh_token);                        // rotation: single use
  }
  if (b.grant_type === 'password' && b.password !== undefined && b.password !== PASSWORD) return fail();
  resp.body.expires_in = ttlOf(req);
  if (resp.body.refresh_token) refresh.set(resp.body.refresh_token, { user: userOf(req) });
});

const tokenOf = (req) => req.body?.token ?? req.query?.token ?? req.headers.authorization?.match(/^Bearer\s+(.+)$/i)?.[1];

// The mock's event handlers are synchronous: do the async work in a middleware in front of it.
const pre = async (req, res, next) => {
  if (req.method === 'GET' && req.path === '/test/stats') return res.json(stats);
  if (req.method === 'POST' && req.path === '/token') {
    stats.tokenRequests++;
    if (req.body?.grant_type === 'refresh_token') stats.refreshRequests++;
  }
  if (req.method === 'POST' && req.path === '/revoke') stats.revocations++;
  if (req.method === 'POST' && req.path === '/introspect') {
    stats.introspections++;
    req.introspection = { active: false };
    const t = tokenOf(req);
    if (t && !revoked.has(t)) {
      try {
        const { payload } = await jwtVerify(t, jwks(), { issuer: issuer.url });   // signature, exp, nbf
        req.introspection = { active: true, ...payload, username: payload.sub, token_type: 'Bearer' };
      } catch { /* inactive */ }
    }
  }
  next();
};
service.on('beforeIntrospect', (resp, req) => { resp.body = req.introspection; });
service.on('beforeRevoke', (_resp, req) => {
  const t = tokenOf(req);
  if (t) { revoked.add(t); refresh.delete(t); }
});

const app = express();
app.use(express.urlencoded({ extended: false }));
app.use(express.json());
app.use(pre);
app.use(service.requestHandler);
const server = http.createServer(app);
await new Promise((ok, ko) => server.listen(port, '127.0.0.1').once('listening', ok).once('error', ko));
const p = server.address().port;
issuer.url = `http://127.0.0.1:${p}`;
fs.mkdirSync(`${outdir}/keys`, { recursive: true });
fs.writeFileSync(`${outdir}/keys/${key.kid}.pem`, await exportSPKI(await importJWK(issuer.keys.toJSON()[0], 'RS256')));
// Written last and atomically: its presence means "ready".
fs.writeFileSync(`${outdir}/as.json.tmp`, JSON.stringify({ port: p, issuer: issuer.url, kid: key.kid }));
fs.renameSync(`${outdir}/as.json.tmp`, `${outdir}/as.json`);
console.log(`ready ${p}`);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
