import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SmtpPool, type SmtpLogin } from '../src/mail/smtp-pool';

// The pool that hands replies to the SMTP server, against a real SMTP server (smtp-server) whose
// handlers can refuse, drop a connection at a chosen step, and check logins.
const test = suite('SMTP connection pool');

interface Server {
  port: number;
  /** Messages received, byte for byte, with their session's number. */
  received: { session: number; to: string[]; raw: Buffer }[];
  /** Sessions opened (connections accepted). */
  sessions: () => number;
  /** Drops a session's socket at once, without an answer. */
  drop: (session: SMTPServerSession) => void;
  close: () => Promise<void>;
}

async function startServer(handlers: Partial<SMTPServerOptions> = {}, port = 0): Promise<Server> {
  const received: Server['received'] = [];
  let sessions = 0;
  const numbers = new Map<string, number>();
  const server: SMTPServer = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    disableReverseLookup: true, // no DNS here; the lookup would only wait for its timeout
    onConnect(session, callback) {
      numbers.set(session.id, ++sessions);
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push({ session: numbers.get(session.id)!, to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks) });
        callback();
      });
    },
    ...handlers,
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const drop = (session: SMTPServerSession) => {
    const connections = (server as unknown as { connections: Set<{ session: SMTPServerSession; _socket: { destroy(): void } }> }).connections;
    for (const c of connections) if (c.session === session) c._socket.destroy();
  };
  return { port: (server.server.address() as AddressInfo).port, received, sessions: () => sessions, drop, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const connection = (port: number) => ({ host: '127.0.0.1', port, secure: false, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 5000 });
const message = (n: number) => Buffer.from(`From: a@example.com\r\nTo: b@example.com\r\nSubject: ${n}\r\n\r\nline ${n}\r\n.starts with a dot\r\n`);
/** The error a promise rejects with; undefined when it resolves. */
const failure = (p: Promise<unknown>) => p.then(
  () => undefined,
  (e: Error & { code?: string; responseCode?: number }) => e,
);
const envelope = { from: 'a@example.com', to: ['b@example.com'] };

test('messages go out byte for byte over at most `size` kept connections', async () => {
  const server = await startServer();
  const pool = new SmtpPool({ connection: connection(server.port), size: 2 });
  try {
    await Promise.all(Array.from({ length: 12 }, (_, i) => pool.send(envelope, message(i))));
    await Promise.all(Array.from({ length: 4 }, (_, i) => pool.send(envelope, message(12 + i))));
    assert.is(server.received.length, 16);
    const bySubject = new Map(server.received.map((r) => [/Subject: (\d+)/.exec(r.raw.toString())![1], r.raw]));
    for (let i = 0; i < 16; i++) assert.equal(bySubject.get(String(i)), message(i), `message ${i} unchanged (dot-stuffing undone by the server)`);
    assert.is(server.sessions(), 2, 'two connections, kept between the bursts');
  } finally {
    pool.close();
    await server.close();
  }
});

test('a connection is replaced after maxMessages', async () => {
  const server = await startServer();
  const pool = new SmtpPool({ connection: connection(server.port), size: 1, maxMessages: 3 });
  try {
    for (let i = 0; i < 7; i++) await pool.send(envelope, message(i));
    assert.equal(server.received.map((r) => r.session), [1, 1, 1, 2, 2, 2, 3]);
  } finally {
    pool.close();
    await server.close();
  }
});

test('a kept connection dropped before the message went out: sent once on a new connection', async () => {
  let dropNext = false;
  const server: Server = await startServer({
    onMailFrom(_address, session, callback) {
      if (dropNext) {
        dropNext = false;
        return server.drop(session); // no answer: the socket is gone
      }
      callback();
    },
  });
  const pool = new SmtpPool({ connection: connection(server.port), size: 1 });
  try {
    await pool.send(envelope, message(1));
    dropNext = true;
    await pool.send(envelope, message(2));
    assert.equal(server.received.map((r) => r.session), [1, 2], 'the second message on a second connection');
    assert.is(server.received.length, 2, 'each message once');
  } finally {
    pool.close();
    await server.close();
  }
});

test('a connection dropped after the message was handed over: the send fails, with no second copy', async () => {
  let dropAfterData = false;
  const server: Server = await startServer({
    onData(stream, session, callback) {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        if (dropAfterData) return server.drop(session); // received, but never confirmed
        callback();
      });
    },
  });
  const pool = new SmtpPool({ connection: connection(server.port), size: 1 });
  try {
    await pool.send(envelope, message(1));
    dropAfterData = true;
    const err = await failure(pool.send(envelope, message(2)));
    assert.ok(err, 'the send fails: the server may have the message, and the outbox decides');
    assert.is(server.sessions(), 1, 'not sent again on a new connection');
    dropAfterData = false;
    await pool.send(envelope, message(3));
    assert.is(server.sessions(), 2, 'the next message opens a new connection');
  } finally {
    pool.close();
    await server.close();
  }
});

test('a refused recipient fails that send only; the connection stays in use', async () => {
  const server = await startServer({
    onRcptTo(address, _session, callback) {
      if (address.address === 'nobody@example.com') return callback(Object.assign(new Error('no such user'), { responseCode: 550 }));
      callback();
    },
  });
  const pool = new SmtpPool({ connection: connection(server.port), size: 1 });
  try {
    const err = await failure(pool.send({ from: 'a@example.com', to: ['nobody@example.com'] }, message(1)));
    assert.is(err?.responseCode, 550);
    await pool.send(envelope, message(2));
    assert.is(server.received.length, 1);
    assert.is(server.sessions(), 1, 'RSET, not a new connection');
  } finally {
    pool.close();
    await server.close();
  }
});

test('password login, and XOAUTH2 with a renewed token once the server refused the first', async () => {
  const logins: string[] = [];
  const server = await startServer({
    authMethods: ['PLAIN', 'LOGIN', 'XOAUTH2'],
    onAuth(auth, _session, callback) {
      logins.push(`${auth.method} ${auth.username} ${auth.method === 'XOAUTH2' ? auth.accessToken : auth.password}`);
      if (auth.method === 'XOAUTH2' && auth.accessToken !== 'fresh') return callback(null, { data: { status: '401' } });
      callback(null, { user: auth.username });
    },
  });
  try {
    const withPassword = new SmtpPool({ connection: connection(server.port), size: 1, login: { user: 'agent', pass: 's3cret' } });
    await withPassword.send(envelope, message(1));
    withPassword.close();
    const asked: boolean[] = [];
    const oauth: SmtpLogin = {
      user: 'agent@example.com',
      token: async (renew) => {
        asked.push(renew);
        return { accessToken: renew ? 'fresh' : 'stale', expiresAt: Date.now() + 60_000 };
      },
    };
    const withToken = new SmtpPool({ connection: connection(server.port), size: 1, login: oauth });
    await withToken.send(envelope, message(2));
    withToken.close();
    assert.equal(logins, ['PLAIN agent s3cret', 'XOAUTH2 agent@example.com stale', 'XOAUTH2 agent@example.com fresh']);
    assert.equal(asked, [false, true]);
    assert.is(server.received.length, 2);
  } finally {
    await server.close();
  }
});

test('verify: logs in and quits; a login refused, or no AUTH offered, is an error', async () => {
  const server = await startServer({
    onAuth(auth, _session, callback) {
      callback(auth.password === 'right' ? null : new Error('bad password'), { user: auth.username });
    },
  });
  const withoutAuth = await startServer({ disabledCommands: ['STARTTLS', 'AUTH'] });
  try {
    await new SmtpPool({ connection: connection(server.port), size: 1, login: { user: 'agent', pass: 'right' } }).verify();
    assert.match((await failure(new SmtpPool({ connection: connection(server.port), size: 1, login: { user: 'agent', pass: 'wrong' } }).verify()))?.message ?? '', /bad password|Invalid login/);
    assert.match((await failure(new SmtpPool({ connection: connection(withoutAuth.port), size: 1, login: { user: 'agent', pass: 'right' } }).verify()))?.message ?? '', /offers no AUTH/);
    await new SmtpPool({ connection: connection(withoutAuth.port), size: 1 }).verify();
  } finally {
    await server.close();
    await withoutAuth.close();
  }
});

test('server down: the send fails at once, and the pool works once the server is back', async () => {
  const server = await startServer();
  const port = server.port;
  await server.close();
  const pool = new SmtpPool({ connection: connection(port), size: 2 });
  try {
    assert.match((await failure(pool.send(envelope, message(1))))?.message ?? '', /ECONNREFUSED/);
    const back = await startServer({}, port);
    await pool.send(envelope, message(2));
    pool.close(); // first: the server's close waits for its clients to leave
    await back.close();
    assert.is(back.received.length, 1);
  } finally {
    pool.close();
  }
});

test('close: the send in progress and those waiting fail, and so do later ones', async () => {
  let inData: () => void;
  const dataReached = new Promise<void>((resolve) => (inData = resolve));
  const server = await startServer({
    onData(stream, _session, callback) {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        inData();
        setTimeout(callback, 2000); // answered too late: the pool is closed by then
      });
    },
  });
  const pool = new SmtpPool({ connection: connection(server.port), size: 1 });
  try {
    const first = failure(pool.send(envelope, message(1)));
    const queued = failure(pool.send(envelope, message(2)));
    await dataReached;
    pool.close();
    assert.ok(await first, 'the send in progress fails');
    assert.match((await queued)?.message ?? '', /pool is closed/);
    assert.match((await failure(pool.send(envelope, message(3))))?.message ?? '', /pool is closed/);
    assert.is(server.sessions(), 1, 'the waiting send opened no connection');
  } finally {
    await server.close();
  }
});

test.run();
