import { readFileSync } from 'node:fs';
import { isAbsolute, join, dirname } from 'node:path';
import { EXIT, UserError } from '../core/errors';
import type { SecretRef } from './types';

/**
 * Secrets are references resolved when they are needed, so a config can be validated (and
 * `run --print` used) on a machine that does not hold them. The value never reaches argv or logs.
 */
export function resolveSecret(ref: SecretRef, configFile: string, where: string): string {
  if ('env' in ref) {
    const value = process.env[ref.env];
    if (value === undefined || value === '') {
      throw new UserError(`${where}: environment variable ${ref.env} is not set`, EXIT.CONFIG);
    }
    return value;
  }
  const path = secretFilePath(ref, configFile);
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new UserError(`${where}: cannot read secret file ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`, EXIT.CONFIG);
  }
}

export const isSecretRef = (value: unknown): value is SecretRef =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length === 1 &&
  (typeof (value as { env?: unknown }).env === 'string' || typeof (value as { file?: unknown }).file === 'string');

/** A JSON path as config errors write it: `services.db.databases.crm.postgres.password`, `users[0]`. */
const childPath = (path: string, key: string | number) => (typeof key === 'number' ? `${path}[${key}]` : path ? `${path}.${key}` : key);

/** Every secret reference in a config (or part of one), with its JSON path. */
export function secretRefs(value: unknown, path = '', found: [string, SecretRef][] = []): [string, SecretRef][] {
  if (isSecretRef(value)) found.push([path, value]);
  else if (Array.isArray(value)) value.forEach((v, i) => secretRefs(v, childPath(path, i), found));
  else if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) secretRefs(v, childPath(path, k), found);
  return found;
}

/** Where a secret file reference points (relative to the config file's folder). */
export function secretFilePath(ref: { file: string }, configFile: string): string {
  return isAbsolute(ref.file) ? ref.file : join(dirname(configFile), ref.file);
}

/**
 * Every secret the config refers to that can be read here (env, file), for scrubbing text that
 * a driver may have built from them (an error message quoting a connection string, say).
 */
export function secretValues(config: { file: string }): string[] {
  const found = new Set<string>();
  for (const [path, ref] of secretRefs(config)) {
    try {
      const secret = resolveSecret(ref, config.file, path);
      if (secret.length >= 4) found.add(secret);
    } catch {
      // unreadable here: then no text can contain it either
    }
  }
  return [...found].sort((a, b) => b.length - a.length);
}

/** The text with each secret (and any password in a URL) replaced by [redacted]. */
export function withoutSecrets(text: string, secrets: string[]): string {
  let out = text.replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):[^\s@/]*@/gi, '$1:[redacted]@');
  for (const secret of secrets) out = out.split(secret).join('[redacted]');
  return out;
}
