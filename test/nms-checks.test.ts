import { spawn } from 'node:child_process';
import { X509Certificate, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type CheckResult, checkHttp, checkTcp, networkErrorDetail } from '../src/services/nms/checks';

// Reachability checks against real servers on 127.0.0.1 ephemeral ports: what a down, slow,
// failing or misconfigured service looks like as a result, and that the body is never read.

const HOST = '127.0.0.1';
const cleanups: Array<() => void> = [];

/** Listens on an ephemeral loopback port; connections are destroyed and the server closed at the end. */
async function listen<S extends net.Server>(server: S): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** A port nothing listens on: one that was just free. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Times the whole check, including what it does before its first await. */
async function timed(check: () => Promise<CheckResult>): Promise<{ result: CheckResult; ms: number }> {
  const started = performance.now();
  const result = await check();
  return { result, ms: performance.now() - started };
}

/** Waits (up to 2 s) for something the other end of a connection does soon; whether it happened. */
async function soon(condition: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  return condition();
}

function answering(handler: http.RequestListener): Promise<number> {
  return listen(http.createServer(handler));
}

// --- A self-signed certificate, built with node:crypto (DER by hand: no openssl needed) -------

function der(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const length = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, body]);
}
const seq = (...parts: Buffer[]) => der(0x30, ...parts);
function oid(text: string): Buffer {
  const [a, b, ...rest] = text.split('.').map(Number);
  const bytes = [40 * a + b];
  for (const v of rest) {
    const group = [v & 0x7f];
    for (let x = v >>> 7; x > 0; x >>>= 7) group.unshift((x & 0x7f) | 0x80);
    bytes.push(...group);
  }
  return der(0x06, Buffer.from(bytes));
}
const utcTime = (d: Date) => der(0x17, Buffer.from(d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z'));

function selfSignedCertificate(): { key: KeyObject; cert: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const ecdsaWithSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(der(0x31, seq(oid('2.5.4.3'), der(0x0c, Buffer.from('mailagent test')))));
  const now = Date.now();
  const subjectAltName = seq(oid('2.5.29.17'), der(0x04, seq(der(0x87, Buffer.from([127, 0, 0, 1])))));
  const tbs = seq(
    der(0xa0, der(0x02, Buffer.from([2]))), // v3
    der(0x02, Buffer.concat([Buffer.from([1]), randomBytes(7)])), // positive serial
    ecdsaWithSha256,
    name,
    seq(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + 86400_000))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    der(0xa3, seq(subjectAltName)),
  );
  const certificate = seq(tbs, ecdsaWithSha256, der(0x03, Buffer.from([0]), sign('sha256', tbs, privateKey)));
  const cert = `-----BEGIN CERTIFICATE-----\n${certificate.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
  return { key: privateKey, cert };
}

// --- TCP ---------------------------------------------------------------------------------------

test('tcp: an open port is reachable, with the connect time', async () => {
  let connections = 0;
  const port = await listen(net.createServer(() => connections++));
  const { result, ms } = await timed(() => checkTcp({ host: HOST, port, timeoutMs: 2000 }));
  assert.equal({ ...result, responseMs: 0 }, { reachable: true, ok: true, responseMs: 0, detail: 'connected' });
  assert.type(result.responseMs, 'number');
  assert.ok(result.responseMs! >= 0 && result.responseMs! <= ms + 1, `responseMs ${result.responseMs} within the ${ms} ms the check took`);
  assert.ok(await soon(() => connections === 1), `${connections} connections`);
});

test('tcp: a closed port is refused — a result, not an exception', async () => {
  const port = await closedPort();
  assert.equal(await checkTcp({ host: HOST, port, timeoutMs: 2000 }), { reachable: false, ok: false, responseMs: null, detail: 'connection refused' });
  // localhost may be both ::1 and 127.0.0.1: still one plain reason.
  assert.equal(await checkTcp({ host: 'localhost', port, timeoutMs: 2000 }), { reachable: false, ok: false, responseMs: null, detail: 'connection refused' });
});

test('tcp: a port that never completes the handshake times out within the timeout', async () => {
  // A listener whose process is busy never accepts: once its backlog of 1 is full, the kernel
  // drops further SYNs, as a firewall that drops packets would. (It ends itself after 20 s.)
  const child = spawn(
    process.execPath,
    ['-e', `const s = require('net').createServer(); s.listen({ port: 0, host: '${HOST}', backlog: 1 }, () => { process.stdout.write(s.address().port + "\\n"); const end = Date.now() + 20000; while (Date.now() < end); });`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  cleanups.push(() => child.kill());
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
    child.once('exit', () => reject(new Error('the busy listener ended early')));
  });
  const fillers = Array.from({ length: 4 }, () => net.connect({ host: HOST, port }).on('error', () => {}));
  cleanups.push(() => fillers.forEach((f) => f.destroy()));
  await new Promise((r) => setTimeout(r, 200));
  const { result, ms } = await timed(() => checkTcp({ host: HOST, port, timeoutMs: 500 }));
  assert.equal(result, { reachable: false, ok: false, responseMs: null, detail: 'no answer within 0.5 s' });
  assert.ok(ms >= 450 && ms < 1500, `returned within the timeout + 1 s (${ms} ms)`);
  child.kill();
});

test('tcp: a bad port, host or timeout is a configuration error', () => {
  assert.throws(() => checkTcp({ host: HOST, port: 0, timeoutMs: 1000 }), (e: Error) => e instanceof RangeError && /port must be 1-65535, not 0/.test(e.message));
  assert.throws(() => checkTcp({ host: HOST, port: 65536, timeoutMs: 1000 }), (e: Error) => e instanceof RangeError);
  assert.throws(() => checkTcp({ host: HOST, port: 1.5, timeoutMs: 1000 }), (e: Error) => e instanceof RangeError);
  assert.throws(() => checkTcp({ host: '', port: 80, timeoutMs: 1000 }), (e: Error) => e instanceof TypeError);
  assert.throws(() => checkTcp({ host: HOST, port: 80, timeoutMs: 0 }), /timeoutMs must be a positive number of milliseconds, not 0/);
  assert.throws(() => checkTcp({ host: HOST, port: 80, timeoutMs: NaN }), /timeoutMs must be/);
});

// --- HTTP --------------------------------------------------------------------------------------

test('http: 200 is reachable and ok, with status and response time', async () => {
  const port = await answering((_req, res) => res.end('hello'));
  const result = await checkHttp({ url: `http://${HOST}:${port}/health`, timeoutMs: 2000 });
  assert.equal({ ...result, responseMs: 0 }, { reachable: true, ok: true, responseMs: 0, detail: 'HTTP 200 OK', status: 200 });
  assert.ok(typeof result.responseMs === 'number' && result.responseMs >= 0);
});

test('http: a 503 is reachable but not ok, so "reachable == false" and "status != 200" stay distinct', async () => {
  const port = await answering((_req, res) => {
    res.statusCode = 503;
    res.end('maintenance');
  });
  const url = `http://${HOST}:${port}/`;
  const strict = await checkHttp({ url, timeoutMs: 2000, expectStatus: 200 });
  assert.equal({ ...strict, responseMs: 0 }, { reachable: true, ok: false, responseMs: 0, detail: 'HTTP 503 Service Unavailable (expected 200)', status: 503 });
  const any = await checkHttp({ url, timeoutMs: 2000 });
  assert.is(any.ok, false);
  assert.is(any.detail, 'HTTP 503 Service Unavailable (expected 2xx or 3xx)');
});

test('http: expectStatus is the one status that passes', async () => {
  const port = await answering((req, res) => {
    res.statusCode = req.url === '/empty' ? 204 : 200;
    res.end();
  });
  const ok = await checkHttp({ url: `http://${HOST}:${port}/empty`, timeoutMs: 2000, expectStatus: 204 });
  assert.equal([ok.ok, ok.status, ok.detail], [true, 204, 'HTTP 204 No Content']);
  const other = await checkHttp({ url: `http://${HOST}:${port}/`, timeoutMs: 2000, expectStatus: 204 });
  assert.equal([other.reachable, other.ok, other.status, other.detail], [true, false, 200, 'HTTP 200 OK (expected 204)']);
  // A status Node has no name for keeps the server's reason phrase.
  const custom = await answering((_req, res) => {
    res.writeHead(299, 'Custom Thing');
    res.end();
  });
  assert.is((await checkHttp({ url: `http://${HOST}:${custom}/`, timeoutMs: 2000 })).detail, 'HTTP 299 Custom Thing');
  assert.throws(() => checkHttp({ url: `http://${HOST}:${port}/`, timeoutMs: 2000, expectStatus: 42 }), /expectStatus must be an HTTP status/);
});

test('http: a redirect is an answer, not followed', async () => {
  const seen: string[] = [];
  const port = await answering((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if (req.url === '/old') res.writeHead(302, { location: '/new' });
    res.end();
  });
  const result = await checkHttp({ url: `http://${HOST}:${port}/old`, timeoutMs: 2000 });
  assert.equal([result.reachable, result.ok, result.status, result.detail], [true, true, 302, 'HTTP 302 Found']);
  assert.equal(seen, ['GET /old']);
  // Expecting 200 makes the redirect a failure rather than something to chase.
  assert.is((await checkHttp({ url: `http://${HOST}:${port}/old`, timeoutMs: 2000, expectStatus: 200 })).detail, 'HTTP 302 Found (expected 200)');
  await checkHttp({ url: `http://${HOST}:${port}/old`, timeoutMs: 2000, method: 'HEAD' });
  assert.equal(seen, ['GET /old', 'GET /old', 'HEAD /old']);
});

test('http: a server that accepts but never answers times out within the timeout', async () => {
  let closed = 0;
  const port = await listen(
    net.createServer((s) => {
      s.resume(); // reads the request, and so sees the other end close
      s.on('close', () => closed++);
    }),
  );
  const { result, ms } = await timed(() => checkHttp({ url: `http://${HOST}:${port}/`, timeoutMs: 500 }));
  assert.equal(result, { reachable: false, ok: false, responseMs: null, detail: 'no answer within 0.5 s' });
  assert.ok(ms >= 450, `waited the timeout (${ms} ms)`);
  assert.ok(ms < 1500, `returned within the timeout + 1 s (${ms} ms)`);
  // The connection is given up, not left open.
  assert.ok(await soon(() => closed === 1), 'the server saw the connection closed');
});

test('http: the timeout covers the response headers, not just the connect', async () => {
  // The status line at once, then one header byte every 100 ms, forever.
  const port = await listen(
    net.createServer((s) => {
      s.write('HTTP/1.1 200 OK\r\nX-Slow: ');
      const drip = setInterval(() => s.write('a'), 100);
      s.on('close', () => clearInterval(drip));
    }),
  );
  const { result, ms } = await timed(() => checkHttp({ url: `http://${HOST}:${port}/`, timeoutMs: 2000 }));
  assert.is(result.detail, 'no answer within 2 s');
  assert.is(result.reachable, false);
  assert.ok(ms >= 1900 && ms < 3000, `${ms} ms`);
});

test('http: a huge (endless) body is not read: the check returns at the headers and closes', async () => {
  let written = 0;
  let closedAt = 0;
  const port = await answering((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (!res.destroyed && res.write(chunk)) written += chunk.length;
      if (!res.destroyed) res.once('drain', pump);
    };
    res.on('close', () => (closedAt = performance.now()));
    pump();
  });
  const { result, ms } = await timed(() => checkHttp({ url: `http://${HOST}:${port}/big.iso`, timeoutMs: 5000 }));
  assert.equal([result.reachable, result.ok, result.detail], [true, true, 'HTTP 200 OK']);
  assert.ok(ms < 5000, `answered at the headers (${ms} ms), not at a timeout`);
  assert.ok(await soon(() => closedAt > 0), 'the server saw the connection closed');
  assert.ok(written < 64 * 1024 * 1024, `${written} bytes written before the close`);
});

test('http: a closed port, an immediate close and a non-HTTP answer', async () => {
  const closed = await closedPort();
  assert.equal(await checkHttp({ url: `http://${HOST}:${closed}/`, timeoutMs: 2000 }), { reachable: false, ok: false, responseMs: null, detail: 'connection refused' });
  const hangUp = await listen(net.createServer((s) => s.end()));
  assert.is((await checkHttp({ url: `http://${HOST}:${hangUp}/`, timeoutMs: 2000 })).detail, 'connection closed without an answer');
  const ssh = await listen(net.createServer((s) => s.write('SSH-2.0-OpenSSH_9.6\r\n')));
  const notHttp = await checkHttp({ url: `http://${HOST}:${ssh}/`, timeoutMs: 2000 });
  assert.is(notHttp.reachable, false);
  assert.match(notHttp.detail, /^not a valid HTTP answer \(HPE_[A-Z_]+\)$/);
});

test('https: a self-signed certificate fails verification, and passes with rejectUnauthorized false', async () => {
  const { key, cert } = selfSignedCertificate();
  const x509 = new X509Certificate(cert);
  assert.ok(x509.checkPrivateKey(key), 'the test certificate is well formed');
  let requests = 0;
  const port = await listen(
    https.createServer({ key: key.export({ type: 'pkcs8', format: 'pem' }), cert }, (_req, res) => {
      requests++;
      res.end('secure');
    }),
  );
  const url = `https://${HOST}:${port}/`;
  const refused = await checkHttp({ url, timeoutMs: 2000 });
  assert.equal({ ...refused, detail: '' }, { reachable: false, ok: false, responseMs: null, detail: '' });
  assert.match(refused.detail, /^TLS error: self[- ]signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\)$/);
  assert.is(requests, 0, 'no request was sent over the unverified connection');
  const accepted = await checkHttp({ url, timeoutMs: 2000, rejectUnauthorized: false });
  assert.equal([accepted.reachable, accepted.ok, accepted.status, accepted.detail], [true, true, 200, 'HTTP 200 OK']);
  assert.is(requests, 1);
  // https:// to a plain HTTP server is a TLS error too.
  const plain = await answering((_req, res) => res.end());
  const mixed = await checkHttp({ url: `https://${HOST}:${plain}/`, timeoutMs: 2000 });
  assert.is(mixed.reachable, false);
  // The reason is OpenSSL's ("wrong version number"), without its file and line.
  assert.match(mixed.detail, /^TLS error: [a-z][a-z ]+ \((EPROTO|ERR_SSL_[A-Z_]+)\)$/);
});

test('http: only http and https URLs; a bad URL is a configuration error, thrown at once', () => {
  const typeError = (pattern: RegExp) => (e: Error) => e instanceof TypeError && pattern.test(e.message);
  assert.throws(() => checkHttp({ url: 'ftp://127.0.0.1/x', timeoutMs: 1000 }), typeError(/must start with http:\/\/ or https:\/\/, not ftp:/));
  assert.throws(() => checkHttp({ url: 'file:///etc/passwd', timeoutMs: 1000 }), typeError(/not file:/));
  assert.throws(() => checkHttp({ url: 'javascript:alert(1)', timeoutMs: 1000 }), typeError(/not javascript:/));
  assert.throws(() => checkHttp({ url: 'localhost:80', timeoutMs: 1000 }), typeError(/must start with http:\/\/ or https:\/\/, not localhost:/));
  assert.throws(() => checkHttp({ url: '127.0.0.1:80', timeoutMs: 1000 }), typeError(/not a valid URL: "127.0.0.1:80"/));
  assert.throws(() => checkHttp({ url: 'not a url', timeoutMs: 1000 }), typeError(/not a valid URL: "not a url"/));
  assert.throws(() => checkHttp({ url: 'http://127.0.0.1/', timeoutMs: -1 }), (e: Error) => e instanceof RangeError);
  assert.throws(() => checkHttp({ url: 'http://127.0.0.1/', timeoutMs: 1000, method: 'POST' as 'GET' }), typeError(/GET or HEAD/));
});

test('error details: DNS, several addresses, unknown codes', () => {
  const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });
  assert.is(networkErrorDetail(withCode('getaddrinfo ENOTFOUND nas.example', 'ENOTFOUND'), 'nas.example'), 'DNS lookup of nas.example failed: name not found (ENOTFOUND)');
  assert.is(networkErrorDetail(withCode('getaddrinfo EAI_AGAIN nas.example', 'EAI_AGAIN'), 'nas.example'), 'DNS lookup of nas.example failed: temporary DNS failure (EAI_AGAIN)');
  assert.is(networkErrorDetail(withCode('connect EHOSTUNREACH 10.0.0.9:80', 'EHOSTUNREACH'), '10.0.0.9'), 'host unreachable');
  const both = new AggregateError([withCode('connect ECONNREFUSED ::1:80', 'ECONNREFUSED'), withCode('connect ECONNREFUSED 127.0.0.1:80', 'ECONNREFUSED')], 'x');
  assert.is(networkErrorDetail(both, 'localhost'), 'connection refused');
  assert.is(networkErrorDetail(withCode('certificate has expired', 'CERT_HAS_EXPIRED'), 'h'), 'TLS error: certificate has expired (CERT_HAS_EXPIRED)');
  assert.is(networkErrorDetail(withCode('odd\r\nthing', 'EWEIRD'), 'h'), 'oddthing (EWEIRD)');
  // A host name from the config is shown without control characters.
  assert.is(networkErrorDetail(withCode('x', 'ENOTFOUND'), 'bad\nhost'), 'DNS lookup of badhost failed: name not found (ENOTFOUND)');
});

test.after(() => {
  for (const cleanup of cleanups) cleanup();
});
test.run();
