import type { Config } from '../config/types';
import { SqliteStore } from './sqlite-store';
import type { StateStore } from './store';

/**
 * The state store the config asks for: PostgreSQL when `state.postgres` is set (agents on several
 * hosts share journal, outbox, replay cache and leases), otherwise the SQLite file.
 */
export async function openStateStore(config: Config): Promise<StateStore> {
  if (config.state.postgres) {
    const { PgStore } = require('./pg-store') as typeof import('./pg-store');
    return PgStore.open(config);
  }
  return new SqliteStore(config.state.path);
}
