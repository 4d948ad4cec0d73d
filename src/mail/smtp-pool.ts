import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import type XOAuth2 from 'nodemailer/lib/xoauth2';

export type Envelope = { from: string; to: string[] };

/** How SmtpPool logs in: a password, or XOAUTH2 with a token asked for at each login (`renew` once the server refused one). */
export type SmtpLogin =
  | { user: string; pass: string }
  | { user: string; token: (renew: boolean) => Promise<{ accessToken: string; expiresAt?: number }> };

export interface SmtpPoolOptions {
  /** Host, port, TLS and timeouts, as SMTPConnection takes them. */
  connection: SMTPConnection.Options;
  login?: SmtpLogin;
  /** Connections open at the same time at most; more sends wait for one. */
  size: number;
  /** A connection is closed after this many messages (default 1000) and a new one opened. */
  maxMessages?: number;
}

interface Pooled {
  connection: SMTPConnection;
  messages: number;
  /** The server or the network ended it. */
  gone: boolean;
  loggedIn: boolean;
  /** Ends the send in progress: SMTPConnection.close() forgets it without calling back. */
  abortSend?: (err: SMTPConnection.SMTPError) => void;
}

/**
 * The message as SMTPConnection takes a stream: it pipes it into its DATA stream only once the
 * server answered 354, so `handedOver` tells whether any of it can have reached the server.
 */
class MessageSource {
  handedOver = false;

  constructor(private readonly raw: Buffer) {}

  pipe<T extends NodeJS.WritableStream>(data: T): T {
    this.handedOver = true;
    data.end(this.raw);
    return data;
  }
}

/** Failures of the connection itself (not a refusal of this message): nodemailer's isTransientError. */
const connectionFailed = (err: SMTPConnection.SMTPError) =>
  err.responseCode === 421 || err.code === 'ECONNECTION' || err.code === 'ESOCKET' || err.code === 'ETIMEDOUT';

/**
 * Sends composed messages byte for byte over a few kept SMTP connections (nodemailer's
 * SMTPConnection, which pipelines the envelope and DATA). The message is never compiled again:
 * nodemailer's Mailer would build a MIME tree, a Message-ID and a stream pipeline around a raw
 * message only to hand over the same bytes: about 290 µs of CPU per message, where the
 * conversation alone takes 100.
 *
 * A kept connection the server has dropped meanwhile (servers end idle sessions) fails before any
 * of the message is handed over: the message then goes out once more on a new connection, as
 * nodemailer's pool does. A refused envelope leaves the connection in use (RSET).
 */
export class SmtpPool {
  readonly connections: number;
  private readonly idle: Pooled[] = [];
  private readonly open = new Set<Pooled>();
  private readonly waiting: (() => void)[] = [];
  private free: number;
  private closed = false;

  constructor(private readonly options: SmtpPoolOptions) {
    this.connections = Math.max(1, Math.floor(options.size));
    this.free = this.connections;
  }

  async send(envelope: Envelope, raw: Buffer): Promise<void> {
    await this.takeSlot();
    try {
      if (this.closed) throw new Error('the SMTP connection pool is closed');
      for (let fresh = false; ; fresh = true) {
        const pooled = fresh ? await this.connect() : (this.takeIdle() ?? (await this.connect()));
        const reused = pooled.messages > 0;
        const source = new MessageSource(raw);
        const err = await this.sendOn(pooled, envelope, source);
        if (!err) {
          this.putBack(pooled);
          return;
        }
        if (connectionFailed(err)) {
          this.drop(pooled);
          // Nothing of it went out on a connection that was stale: a new one sends it.
          if (reused && !source.handedOver && !fresh && !this.closed) continue;
        } else {
          // The server refused this message (or its envelope): the session itself is usable.
          await this.resetOrDrop(pooled);
        }
        throw err;
      }
    } finally {
      this.giveSlot();
    }
  }

  /** Connects and logs in once, then says QUIT: what `test-service` checks. */
  async verify(): Promise<void> {
    const pooled = await this.connect();
    this.open.delete(pooled);
    pooled.connection.quit();
    // Sending goes on without AUTH, as nodemailer does (the server decides); a check says so.
    if (this.options.login && !pooled.loggedIn) throw new Error('the server offers no AUTH on this connection, so no login was made (STARTTLS first? set smtp.requireTLS)');
  }

  /** Closes every connection; sends in progress fail. */
  close(): void {
    this.closed = true;
    for (const pooled of [...this.open]) this.drop(pooled);
    this.idle.length = 0;
  }

  private takeSlot(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the SMTP connection pool is closed'));
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private giveSlot(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }

  private takeIdle(): Pooled | undefined {
    for (let pooled = this.idle.pop(); pooled; pooled = this.idle.pop()) if (!pooled.gone) return pooled;
    return undefined;
  }

  private putBack(pooled: Pooled): void {
    if (this.closed || pooled.gone || pooled.messages >= (this.options.maxMessages ?? 1000)) {
      this.open.delete(pooled);
      if (!pooled.gone) pooled.connection.quit();
      return;
    }
    this.idle.push(pooled);
  }

  private drop(pooled: Pooled): void {
    pooled.gone = true;
    this.open.delete(pooled);
    pooled.connection.close();
    pooled.abortSend?.(Object.assign(new Error('the SMTP connection was closed before the server confirmed the message'), { code: 'ECONNECTION' }));
  }

  private resetOrDrop(pooled: Pooled): Promise<void> {
    if (pooled.gone || this.closed) return Promise.resolve(this.drop(pooled));
    return new Promise((resolve) =>
      pooled.connection.reset((err) => {
        if (err) this.drop(pooled);
        else this.putBack(pooled);
        resolve();
      }),
    );
  }

  private sendOn(pooled: Pooled, envelope: Envelope, source: MessageSource): Promise<SMTPConnection.SMTPError | undefined> {
    return new Promise((resolve) => {
      pooled.messages++;
      const done = (err?: SMTPConnection.SMTPError) => {
        pooled.abortSend = undefined;
        resolve(err);
      };
      pooled.abortSend = done;
      // A copy: SMTPConnection keeps its own state on the envelope object it is given.
      // It pipes anything with a pipe() method; its types know Buffers and Readables.
      pooled.connection.send({ from: envelope.from, to: [...envelope.to] }, source as unknown as Buffer, (err) => done(err ?? undefined));
    });
  }

  private connect(): Promise<Pooled> {
    const SMTPConnectionClass = require('nodemailer/lib/smtp-connection') as typeof SMTPConnection;
    const connection = new SMTPConnectionClass({ ...this.options.connection });
    const pooled: Pooled = { connection, messages: 0, gone: false, loggedIn: false };
    this.open.add(pooled);
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        this.drop(pooled);
        reject(err);
      };
      // Errors of a send reach its callback as well; one on an idle connection is followed by 'end'.
      connection.on('error', fail);
      connection.once('end', () => {
        pooled.gone = true;
        this.open.delete(pooled);
        fail(new Error('the SMTP server closed the connection'));
      });
      connection.connect((err?: Error) => {
        if (err) return fail(err);
        const login = this.options.login;
        const ready = () => {
          if (settled) return;
          settled = true;
          resolve(pooled);
        };
        // As nodemailer does: no AUTH offered (say, before STARTTLS was required), no login.
        if (!login || !connection.allowsAuth) return ready();
        connection.login(loginData(login), (loginErr) => {
          if (loginErr) return fail(loginErr);
          pooled.loggedIn = true;
          ready();
        });
      });
    });
  }
}

function loginData(login: SmtpLogin): Parameters<SMTPConnection['login']>[0] {
  if ('pass' in login) return { user: login.user, pass: login.pass };
  const XOAuth2Class = require('nodemailer/lib/xoauth2') as typeof XOAuth2;
  const provisionCallback = (_user: string, renew: boolean, done: (err: Error | null, token?: string, expires?: number) => void) => {
    login.token(renew).then(
      (t) => done(null, t.accessToken, t.expiresAt),
      (err: Error) => done(err),
    );
  };
  return { user: login.user, method: 'XOAUTH2', oauth2: new XOAuth2Class({ user: login.user, provisionCallback }) } as Parameters<SMTPConnection['login']>[0];
}
