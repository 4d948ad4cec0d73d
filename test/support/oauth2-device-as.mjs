// A test authorization server for the OAuth 2.0 device authorization grant (RFC 8628) on 127.0.0.1:
// oidc-provider (oauth2-mock-server has no device grant). Started by test/support/oauth2.ts.
//
// usage: node oauth2-device-as.mjs PORT OUTDIR [ACCESS_TOKEN_TTL_SECONDS]   (PORT 0: any free port)
//
// Writes OUTDIR/as.json ({port, issuer}) once it listens and prints "ready PORT".
//
// Clients: "mua" (public, device_code + refresh_token grants; the mail client) and "dovecot"
// (secret "dovecot-secret", no grants: only authenticates introspection). Endpoints: /device/auth,
// /device (user code page), /token, /token/introspection (client auth required), /token/revocation,
// and for tests GET /test/stats -> {tokenRequests, refreshRequests}.
// Login is oidc-provider's dev interaction: any login name, any password; the account id, `sub` and
// `email` are the login name. Access tokens are opaque: Dovecot must introspect them (username_attribute
// sub: the introspection response carries no email).
// oidc-provider 9 prints "Unsupported runtime. Use Node.js v22.x LTS" on Node 20; it works regardless.
import http from 'node:http';
import fs from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? 0);
const outdir = process.argv[3] ?? '.';
// iat/exp are whole seconds: a TTL under ~5 s may be dead before the first use.
const accessTtl = Number(process.argv[4] ?? 3600) || 3600;

const server = http.createServer();
await new Promise((ok, ko) => server.listen(port, '127.0.0.1').once('listening', ok).once('error', ko));
const p = server.address().port;
const issuer = `http://127.0.0.1:${p}`;
const stats = { tokenRequests: 0, refreshRequests: 0 };

const provider = new Provider(issuer, {
  clients: [
    { client_id: 'mua', token_endpoint_auth_method: 'none', redirect_uris: [], response_types: [],
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'] },
    { client_id: 'dovecot', client_secret: 'dovecot-secret', redirect_uris: [], response_types: [], grant_types: [] },
  ],
  features: {
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    devInteractions: { enabled: true },
  },
  findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id, email: id }) }),
  claims: { openid: ['sub'], email: ['email'] },
  scopes: ['openid', 'email', 'offline_access'],
  ttl: { AccessToken: accessTtl, DeviceCode: 600, RefreshToken: 86400, Grant: 86400, Interaction: 600, Session: 86400, IdToken: 3600 },
  issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  cookies: { keys: ['mailagent-test-cookie-key'] },
});

provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/test/stats') {
    ctx.body = stats;
    return;
  }
  const isToken = ctx.method === 'POST' && ctx.path === '/token';
  if (isToken) stats.tokenRequests++;
  await next();
  if (isToken && ctx.oidc?.params?.grant_type === 'refresh_token') stats.refreshRequests++;
});

server.on('request', provider.callback());
fs.mkdirSync(outdir, { recursive: true });
fs.writeFileSync(`${outdir}/as.json.tmp`, JSON.stringify({ port: p, issuer, accessTokenTtl: accessTtl }));
fs.renameSync(`${outdir}/as.json.tmp`, `${outdir}/as.json`);
console.log(`ready ${p}`);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
