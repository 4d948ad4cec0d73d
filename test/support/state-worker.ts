/**
 * A state store in a process of its own, driven over stdin/stdout (one JSON object a line), so
 * tests can make two processes compete for the same SQLite file or PostgreSQL schema.
 *   argv[2]: {"sqlite": path} or {"postgres": {url, schema}}
 *   in:  {"id": 1, "method": "claim", "args": [...]}   out: {"id": 1, "value": ...} or {"id": 1, "error": "..."}
 * Requests are served as they arrive, not one after another, as an agent's concurrent work would be.
 */
import { createInterface } from 'node:readline';
import type { Config } from '../../src/config/types';
import { PgStore } from '../../src/state/pg-store';
import { SqliteStore } from '../../src/state/sqlite-store';
import type { StateStore } from '../../src/state/store';

async function main() {
  const target = JSON.parse(process.argv[2]) as { sqlite?: string; postgres?: { url: string; schema: string } };
  const store: StateStore = target.postgres
    ? await PgStore.open({ file: '/dev/null', state: { path: '', postgres: target.postgres } } as unknown as Config)
    : new SqliteStore(target.sqlite!);
  const send = (message: object) => process.stdout.write(`${JSON.stringify(message)}\n`);
  send({ ready: true });
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const { id, method, args } = JSON.parse(line) as { id: number; method: keyof StateStore; args: unknown[] };
    (store[method] as (...a: unknown[]) => Promise<unknown>)
      .apply(store, args)
      .then((value) => send({ id, value: value ?? null }))
      .catch((err: Error) => send({ id, error: err.message }));
  });
  lines.on('close', () => void store.close());
}

main().catch((err) => {
  process.stderr.write(`state worker: ${(err as Error).message}\n`);
  process.exit(1);
});
