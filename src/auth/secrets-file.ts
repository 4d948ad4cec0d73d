/**
 * TOTP secrets, one per user, in a JSON file only its owner may read (mode 0600):
 *
 *   { "totp": { "ops@example.com": { "secret": "<base32>", "enrolledAt": "2026-11-25T10:00:00.000Z" } } }
 *
 * Written by `mailagent users enroll-totp`, read when a message carries a TOTP code. A file that
 * the group or others may access is refused: the secrets in it must be considered leaked.
 * Secrets are never logged; errors name the file and the address, never the value.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { EXIT, UserError } from '../core/errors';
import { isBareAddress, writeFileAtomic } from '../config/users-file';

export interface TotpEnrolment {
  /** Base32 (RFC 4648, no padding), as otplib's generateSecret returns it. */
  secret: string;
  /** ISO 8601. */
  enrolledAt: string;
}

export interface SecretsData {
  /** Lower-case address → enrolment. */
  totp: Record<string, TotpEnrolment>;
}

const SECRET = /^[A-Z2-7]{16,}=*$/;

function key(address: string): string {
  if (!isBareAddress(address)) throw new UserError(`"${address}" is not a bare e-mail address`, EXIT.USAGE);
  return address.toLowerCase();
}

function problem(path: string, message: string): UserError {
  return new UserError(`secrets file ${path}: ${message}`, EXIT.CONFIG);
}

/**
 * Reads the whole file; a missing file is an empty one. Throws a UserError (exit 78) when the
 * file is accessible to group or others, is not a regular file, or is not in the expected shape.
 */
export function readSecretsFile(path: string): SecretsData {
  const abs = resolve(path);
  let fd: number;
  try {
    fd = openSync(abs, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return { totp: {} };
    throw problem(abs, `cannot read: ${e.message}`);
  }
  let text: string;
  try {
    // Checked on the open descriptor: the file read is the file checked.
    const st = fstatSync(fd);
    if (!st.isFile()) throw problem(abs, 'is not a regular file');
    if (st.mode & 0o077) {
      throw new UserError(
        `secrets file ${abs} is accessible to group or others (mode 0${(st.mode & 0o777).toString(8)}); refusing to use it`,
        EXIT.CONFIG,
        `chmod 600 ${abs} (and consider re-enrolling: the TOTP secrets in it may have been read)`,
      );
    }
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  if (text.trim() === '') return { totp: {} };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw problem(abs, `not valid JSON (${(err as Error).message})`);
  }
  const totp = (data as { totp?: unknown } | null)?.totp;
  if (typeof data !== 'object' || data === null || Array.isArray(data) || (totp !== undefined && (typeof totp !== 'object' || totp === null || Array.isArray(totp)))) {
    throw problem(abs, 'expected { "totp": { "<address>": { "secret": …, "enrolledAt": … } } }');
  }
  const out: SecretsData = { ...(data as object), totp: {} };
  for (const [address, entry] of Object.entries((totp ?? {}) as Record<string, unknown>)) {
    const e = entry as Partial<TotpEnrolment> | null;
    if (typeof e !== 'object' || e === null || typeof e.secret !== 'string' || !SECRET.test(e.secret)) {
      throw problem(abs, `totp["${address}"]: expected { "secret": "<base32>", "enrolledAt": "<ISO date>" }`);
    }
    out.totp[address.toLowerCase()] = { secret: e.secret, enrolledAt: typeof e.enrolledAt === 'string' ? e.enrolledAt : '' };
  }
  return out;
}

/** Replaces the file atomically; always mode 0600, whatever the file had. */
function writeSecretsFile(path: string, data: SecretsData): void {
  const abs = resolve(path);
  mkdirSync(dirname(abs), { recursive: true, mode: 0o700 });
  writeFileAtomic(abs, `${JSON.stringify(data, null, 2)}\n`, 0o600);
  // writeFileAtomic keeps an existing file's mode; readSecretsFile already refused any other.
}

/** The user's TOTP secret, or undefined when not enrolled (or no secrets file yet). */
export function readTotpSecret(path: string, address: string): string | undefined {
  return readSecretsFile(path).totp[key(address)]?.secret;
}

/** The addresses (lower case) with a TOTP secret. */
export function totpEnrolled(path: string): Set<string> {
  return new Set(Object.keys(readSecretsFile(path).totp));
}

/**
 * Stores (or replaces) the user's secret; creates the file with mode 0600 when missing.
 * Returns whether a previous secret was replaced.
 */
export function saveTotpSecret(path: string, address: string, secret: string, now: Date): { replaced: boolean } {
  if (!SECRET.test(secret)) throw new UserError('a TOTP secret must be base32 (A-Z, 2-7), at least 16 characters', EXIT.USAGE);
  const data = readSecretsFile(path);
  const k = key(address);
  const replaced = k in data.totp;
  data.totp[k] = { secret, enrolledAt: now.toISOString() };
  writeSecretsFile(path, data);
  return { replaced };
}

/** Removes the user's secret; returns whether there was one. A missing file stays missing. */
export function removeTotpSecret(path: string, address: string): boolean {
  const data = readSecretsFile(path);
  const k = key(address);
  if (!(k in data.totp)) return false;
  delete data.totp[k];
  writeSecretsFile(path, data);
  return true;
}
