// Reachability checks for hosts without SNMP: a TCP connect, or an HTTP(S) request.
//
// A down host is a result, never an exception; only a bad configuration (a URL that is not
// http/https, a port or timeout out of range) throws. The timeout covers everything up to the
// answer — DNS, connect, TLS and, for HTTP, the response headers; the body is never read.
//
// Two verdicts, so that alert conditions can tell them apart:
//   reachable  the service answered: TCP connected, or an HTTP status line arrived
//              (`reachable == false` is "down": refused, timeout, DNS or TLS failure…)
//   ok         the check passed: reachable and, for HTTP, the expected status
//              (a 503 is reachable but not ok; `status != 200` alerts on it, `not ok` too)
// `status` exists only when an HTTP answer came, so `status != 200` is unknown, not true, for a
// host that is down.

import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';

export interface CheckResult {
  /** The service answered (TCP connected, or an HTTP response arrived). */
  reachable: boolean;
  /** The check passed: reachable and, for HTTP, the expected status. */
  ok: boolean;
  /** Time to connect (TCP) or to the response headers (HTTP), in ms; null without an answer. */
  responseMs: number | null;
  /** For people: "connected", "HTTP 200 OK", "connection refused", "no answer within 2 s", "TLS error: …". */
  detail: string;
  /** The HTTP status, when an HTTP answer came. */
  status?: number;
}

export interface TcpCheck {
  host: string;
  port: number;
  timeoutMs: number;
}

export interface HttpCheck {
  url: string;
  timeoutMs: number;
  /** The one status that passes; by default any 2xx or 3xx (redirects are not followed). */
  expectStatus?: number;
  /** Verify the server's certificate (default true). */
  rejectUnauthorized?: boolean;
  method?: 'GET' | 'HEAD';
}

export function checkTcp(opts: TcpCheck): Promise<CheckResult> {
  if (typeof opts.host !== 'string' || opts.host === '') throw new TypeError('checkTcp: host must be a non-empty string');
  if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) throw new RangeError(`checkTcp: port must be 1-65535, not ${opts.port}`);
  validateTimeout('checkTcp', opts.timeoutMs);
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect({ host: opts.host, port: opts.port });
    const finish = (result: CheckResult) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish(noAnswer(opts.timeoutMs)), opts.timeoutMs);
    socket.once('connect', () => finish({ reachable: true, ok: true, responseMs: since(started), detail: 'connected' }));
    // Stays attached: a late error after finish() must not become an uncaught exception.
    socket.on('error', (err) => finish(failed(err, opts.host)));
  });
}

export function checkHttp(opts: HttpCheck): Promise<CheckResult> {
  const url = checkUrl(opts.url);
  validateTimeout('checkHttp', opts.timeoutMs);
  const method = opts.method ?? 'GET';
  if (method !== 'GET' && method !== 'HEAD') throw new TypeError(`checkHttp: method must be GET or HEAD, not ${String(method)}`);
  const expect = opts.expectStatus;
  if (expect !== undefined && (!Number.isInteger(expect) || expect < 100 || expect > 599)) {
    throw new RangeError(`checkHttp: expectStatus must be an HTTP status (100-599), not ${expect}`);
  }
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    const started = performance.now();
    let done = false;
    const finish = (result: CheckResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // No agent: destroying the request closes the connection, whatever the body still holds.
      req.destroy();
      resolve(result);
    };
    const req = client.request(url, {
      method,
      agent: false,
      rejectUnauthorized: opts.rejectUnauthorized ?? true,
      headers: { 'user-agent': 'mailagent-check', accept: '*/*', connection: 'close' },
    });
    const timer = setTimeout(() => finish(noAnswer(opts.timeoutMs)), opts.timeoutMs);
    req.on('response', (res) => {
      const responseMs = since(started);
      // The headers are the answer: the body is neither read nor waited for.
      res.on('error', () => {});
      res.destroy();
      const status = res.statusCode ?? 0;
      const ok = expect !== undefined ? status === expect : status >= 200 && status < 400;
      const text = `HTTP ${status} ${reason(status, res.statusMessage)}`.trimEnd();
      const detail = ok ? text : `${text} (expected ${expect ?? '2xx or 3xx'})`;
      finish({ reachable: true, ok, responseMs, detail, status });
    });
    req.on('error', (err) => finish(failed(err, url.hostname)));
    req.end();
  });
}

function checkUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(`checkHttp: not a valid URL: ${JSON.stringify(String(text).slice(0, 200))}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`checkHttp: the URL must start with http:// or https://, not ${url.protocol}`);
  }
  return url;
}

function validateTimeout(who: string, ms: number): void {
  // setTimeout fires at once beyond 2^31 - 1 ms.
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0 || ms > 2 ** 31 - 1) {
    throw new RangeError(`${who}: timeoutMs must be a positive number of milliseconds, not ${ms}`);
  }
}

/** Milliseconds since `started`, to 0.1 ms. */
function since(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

function noAnswer(timeoutMs: number): CheckResult {
  return { reachable: false, ok: false, responseMs: null, detail: `no answer within ${+(timeoutMs / 1000).toFixed(3)} s` };
}

function failed(err: Error, host: string): CheckResult {
  return { reachable: false, ok: false, responseMs: null, detail: networkErrorDetail(err, host) };
}

/** The standard reason phrase; the server's own (sanitised) only for a status Node does not know. */
function reason(status: number, given: string | undefined): string {
  return http.STATUS_CODES[status] ?? printable(given ?? '', 60);
}

/** Remote text for a one-line detail: control characters dropped, length bounded. */
function printable(text: string, max: number): string {
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '');
  return clean.length > max ? clean.slice(0, max - 1) + '…' : clean;
}

const SYSTEM_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  EHOSTDOWN: 'host down',
  ENETUNREACH: 'network unreachable',
  ENETDOWN: 'network down',
  EADDRNOTAVAIL: 'address not available',
  ECONNABORTED: 'connection aborted',
};

const DNS_ERRORS: Record<string, string> = {
  ENOTFOUND: 'name not found',
  EAI_NONAME: 'name not found',
  EAI_AGAIN: 'temporary DNS failure',
  EAI_FAIL: 'DNS failure',
  EAI_NODATA: 'no address for the name',
  EAI_ADDRFAMILY: 'no address for the name',
};

/** One line for a connection failure: "connection refused", "DNS lookup of x failed: …", "TLS error: …". */
export function networkErrorDetail(err: Error, host: string): string {
  // With several addresses tried (IPv6 and IPv4), the error of the first attempt speaks for all.
  const first = err instanceof AggregateError && !(err as NodeJS.ErrnoException).code && err.errors.length > 0 ? (err.errors[0] as Error) : err;
  const code = String((first as NodeJS.ErrnoException).code ?? '');
  const message = printable(first.message ?? String(first), 200);
  if (Object.hasOwn(DNS_ERRORS, code)) return `DNS lookup of ${printable(host, 100)} failed: ${DNS_ERRORS[code]} (${code})`;
  if (message === 'socket hang up') return 'connection closed without an answer';
  if (Object.hasOwn(SYSTEM_ERRORS, code)) return SYSTEM_ERRORS[code];
  // OpenSSL's own errors (EPROTO…) carry "…:SSL routines:function:reason:file:line:" in the message.
  const openssl = /SSL routines:[^:]*:([^:]+)/.exec(message);
  if (openssl || /^(ERR_TLS_|ERR_SSL_)|CERT|SELF_SIGNED|ISSUER|LEAF_SIGNATURE|HOSTNAME_MISMATCH/.test(code) || 'library' in first) {
    return `TLS error: ${openssl ? openssl[1] : message}${code ? ` (${code})` : ''}`;
  }
  if (code.startsWith('HPE_')) return `not a valid HTTP answer (${code})`;
  return code ? `${message} (${code})` : message;
}
