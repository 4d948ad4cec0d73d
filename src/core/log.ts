/**
 * Structured logs on stderr: one JSON object per line for journald, files and log shippers, or
 * readable lines when a person watches a terminal. Secrets never get through: fields whose name
 * says they are one are replaced, and credentials inside URLs are masked.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;
export type LogFn = (message: string, fields?: LogFields) => void;

export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** JSON lines; default: when stderr is not a terminal. */
  json?: boolean;
  /** Where lines go (default stderr). */
  write?: (line: string) => void;
  now?: () => Date;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
export const LOG_LEVELS = Object.keys(RANK) as LogLevel[];

/** Field names that hold secrets, whatever their case or prefix (smtpPassword, x-otp, apiToken). */
const SECRET_NAME = /pass(word)?$|passwd|secret|otp$|token|credential|authorization|^pass$/i;
/** scheme://user:password@host → scheme://user:***@host */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):[^\s@/]*@/gi;
export const REDACTED = '[redacted]';

/** Secret values known at run time (OAuth2 tokens): never written, whatever field or message holds them. */
const runtimeSecrets = new Set<string>();

/** From now on `value` is replaced by [redacted] wherever it would appear in a log line. */
export function neverLog(value: string | undefined): void {
  // Short strings would redact ordinary words; tokens are long.
  if (value && value.length >= 16) runtimeSecrets.add(value);
}

function withoutRuntimeSecrets(text: string): string {
  let out = text;
  for (const secret of runtimeSecrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out;
}

function redactValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return withoutRuntimeSecrets(value.replace(URL_CREDENTIALS, '$1:***@'));
  if (value instanceof Error) {
    const out: LogFields = { message: redactValue(value.message, depth) };
    const code = (value as NodeJS.ErrnoException).code;
    if (code) out.code = code;
    return out;
  }
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value)) return `<${value.length} bytes>`;
  if (depth > 5) return '[…]';
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  return redactFields(value as LogFields, depth + 1);
}

/** A copy of `fields` that is safe to write anywhere. */
export function redactFields(fields: LogFields, depth = 0): LogFields {
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    out[key] = SECRET_NAME.test(key) ? REDACTED : redactValue(value, depth);
  }
  return out;
}

function readable(time: Date, level: LogLevel, message: string, fields: LogFields): string {
  const parts = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' && !/[\s"=]/.test(v) && v !== '' ? v : JSON.stringify(v)}`);
  const clock = time.toISOString().slice(11, 23);
  return `${clock} ${level.toUpperCase().padEnd(5)} ${message}${parts.length ? `  ${parts.join(' ')}` : ''}`;
}

/** One for all loggers, so their lines keep their order. */
let stderrWriter: ((line: string) => void) | undefined;

/**
 * Lines for stderr, written together once per turn of the event loop: a write to a pipe is a
 * system call that also wakes its reader (journald), and a busy agent logs a few lines per
 * message. What is pending is written before the process exits, however it exits.
 */
function stderrByTurn(): (line: string) => void {
  let pending: string[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending.length === 0) return;
    const text = pending.join('');
    pending = [];
    process.stderr.write(text);
  };
  process.on('exit', flush);
  return (line) => {
    pending.push(line);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const threshold = RANK[options.level ?? 'info'];
  const json = options.json ?? !process.stderr.isTTY;
  const write = options.write ?? (stderrWriter ??= stderrByTurn());
  const now = options.now ?? (() => new Date());
  const at = (level: LogLevel): LogFn => (message, fields = {}) => {
    if (RANK[level] < threshold) return;
    const time = now();
    const safe = redactFields(fields);
    const text = redactValue(message, 0) as string;
    // time, level and msg come first, and a field of the same name cannot replace them.
    const line = json ? JSON.stringify({ time: time.toISOString(), level, msg: text, ...withoutReserved(safe) }) : readable(time, level, text, safe);
    write(`${line}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function withoutReserved(fields: LogFields): LogFields {
  const { time: _t, level: _l, msg: _m, ...rest } = fields;
  return rest;
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
