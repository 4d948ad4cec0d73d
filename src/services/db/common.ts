import { CommandError, UserError } from '../../core/errors';

/** Settings every engine needs besides its own section of the config. */
export interface EngineOptions {
  /** The database's name in config, used in messages. */
  name: string;
  /** Statement timeout in milliseconds. */
  timeoutMs: number;
  /** The config file: secrets and relative paths resolve against its folder. */
  configFile: string;
}

export const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(3))} s`;

/** Driver values made fit for a reply: dates as ISO text, binary as hex, JSON as text. */
export function cell(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? String(value) : value.toISOString();
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    const bytes = Buffer.from(value as Uint8Array);
    return bytes.length <= 1024 ? `\\x${bytes.toString('hex')}` : `<${bytes.length} bytes>`;
  }
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return String(value);
  }
}

export const cells = (row: unknown[]): unknown[] => row.map(cell);

/** Collects the first `max` rows and counts them all. */
export class RowCollector {
  rows: unknown[][] = [];
  total = 0;
  constructor(private readonly max: number) {}
  add(row: unknown[]): void {
    this.total++;
    if (this.rows.length < this.max) this.rows.push(cells(row));
  }
}

/** Secret resolution problems are the sender's to read about, not a crash. */
export function secretOrCommandError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof UserError) throw new CommandError(err.message);
    throw err;
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE',
  'PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_CON_COUNT_ERROR', 'HANDSHAKE_SSL_ERROR',
]);

export type ErrorKind = 'unreachable' | 'login' | 'timeout' | 'read-only' | 'constraint' | 'value' | 'sql' | 'other';

/** What went wrong, in the words the sender of the mail needs; the message never carries a secret. */
export function describeError(kind: ErrorKind, message: string, opts: EngineOptions & { secret?: string; changes?: boolean }): CommandError {
  let text = message.replace(/\s+/g, ' ').trim();
  if (opts.secret && opts.secret.length >= 3) text = text.split(opts.secret).join('***');
  const undone = opts.changes ? '; rolled back, nothing was changed' : '';
  switch (kind) {
    case 'unreachable':
      return new CommandError(`database ${opts.name} is unreachable: ${text}`);
    case 'login':
      return new CommandError(`database ${opts.name} refused the connection: ${text}`);
    case 'timeout':
      return new CommandError(`statement timed out after ${seconds(opts.timeoutMs)}${undone}`);
    case 'read-only':
      return new CommandError(`refused by the server (read-only): ${text}`);
    case 'constraint':
      return new CommandError(`constraint violated: ${text}${undone}`);
    case 'value':
      return new CommandError(`bad value: ${text}${undone}`);
    case 'sql':
      return new CommandError(`database error: ${text}${undone}`);
    default:
      return new CommandError(`database ${opts.name}: ${text}${undone}`);
  }
}

/**
 * A READ ONLY transaction stops writes to tables, not a privileged account writing files on the
 * database host (PostgreSQL COPY … TO 'file', MariaDB SELECT … INTO OUTFILE): `db sql` runs only
 * under an account the server says cannot.
 */
export function privilegedAccount(opts: EngineOptions, account: string, privileges: string): CommandError {
  return new CommandError(
    `db sql is refused on database ${opts.name}: its account ${account} can write files on the database server (${privileges}); ` +
      'configure db sql on a database entry whose account lacks that privilege',
  );
}

/** Network-level failures common to both server drivers. */
export function isNetworkError(err: { code?: unknown; message?: string }): boolean {
  return (
    (typeof err.code === 'string' && NETWORK_CODES.has(err.code)) ||
    /Connection terminated|timeout exceeded when trying to connect|connect ETIMEDOUT|Connection lost|self[- ]signed certificate|certificate|The server does not support SSL/i.test(
      err.message ?? '',
    )
  );
}

/**
 * A client-side guard in case the server's own statement timeout did not fire (a statement can
 * override a session setting): after the limit plus a grace period `cancel` is called and the
 * statement is reported as timed out.
 */
export async function withWatchdog<T>(
  timeoutMs: number,
  run: () => Promise<T>,
  cancel: () => Promise<void> | void,
): Promise<{ value?: T; error?: unknown; fired: boolean }> {
  let fired = false;
  const timer = setTimeout(() => {
    fired = true;
    Promise.resolve()
      .then(cancel)
      .catch(() => undefined);
  }, timeoutMs + 2000);
  try {
    return { value: await run(), fired };
  } catch (error) {
    return { error, fired };
  } finally {
    clearTimeout(timer);
  }
}
