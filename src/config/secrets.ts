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
  const path = isAbsolute(ref.file) ? ref.file : join(dirname(configFile), ref.file);
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new UserError(`${where}: cannot read secret file ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`, EXIT.CONFIG);
  }
}
