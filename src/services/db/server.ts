import { readFileSync } from 'node:fs';
import { CommandError } from '../../core/errors';
import { resolveSecret } from '../../config/secrets';
import type { DbTls, ServerDatabase } from '../../config/types';
import { secretOrCommandError, type EngineOptions } from './common';

/** What the PostgreSQL and MySQL engines share: credentials, TLS, row-count policy. */

/** Tables whose estimated size is below this are counted exactly by `db tables`. */
export const EXACT_COUNT_BELOW = 100_000;

export function serverPassword(cfg: ServerDatabase, opts: EngineOptions, kind: string): string | undefined {
  if (!cfg.password) return undefined;
  return secretOrCommandError(() => resolveSecret(cfg.password!, opts.configFile, `services.db.databases.${opts.name}.${kind}.password`));
}

export function tlsOptions(ssl: DbTls | undefined): { rejectUnauthorized?: boolean; ca?: string } | undefined {
  if (!ssl) return undefined;
  if (ssl === true) return { rejectUnauthorized: true };
  let ca: string | undefined;
  if (ssl.ca) {
    try {
      ca = readFileSync(ssl.ca, 'utf8');
    } catch (err) {
      throw new CommandError(`cannot read the CA file ${ssl.ca}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return { rejectUnauthorized: ssl.rejectUnauthorized ?? true, ...(ca !== undefined && { ca }) };
}

/** Text of an error; Node's AggregateError (several addresses tried) has an empty message of its own. */
export function errorText(err: unknown): string {
  const e = err as Error & { errors?: unknown[]; code?: string };
  if (e?.message) return e.message;
  if (Array.isArray(e?.errors) && e.errors.length) return [...new Set(e.errors.map(errorText))].join('; ');
  return e?.code ?? String(err);
}

export const tableType = (raw: string): string =>
  ({ 'BASE TABLE': 'table', VIEW: 'view', 'SYSTEM VIEW': 'view', FOREIGN: 'foreign table', 'LOCAL TEMPORARY': 'temporary table', SEQUENCE: 'sequence', 'SYSTEM VERSIONED': 'table' })[raw] ??
  raw.toLowerCase();
