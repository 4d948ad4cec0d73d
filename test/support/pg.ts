import type { Client } from 'pg';

/** The PostgreSQL the tests use (the machine's, trust auth, database test) unless told otherwise. */
export const PG_URL = process.env.MAILAGENT_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** An admin connection for setting up and dropping test schemas, or why there is none. */
export async function connectPgAdmin(): Promise<Client | string> {
  const pg = require('pg') as typeof import('pg');
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return client;
  } catch (err) {
    await client.end().catch(() => undefined);
    return `PostgreSQL at ${PG_URL} is not reachable: ${(err as Error).message || (err as { code?: string }).code}`;
  }
}

export async function postgresReachable(): Promise<boolean> {
  const client = await connectPgAdmin();
  if (typeof client === 'string') return false;
  await client.end().catch(() => undefined);
  return true;
}

/** Removes a test's schema; nothing to do when the server cannot be reached (nothing was created). */
export async function dropSchema(schema: string): Promise<void> {
  const client = await connectPgAdmin();
  if (typeof client === 'string') return;
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema.replace(/"/g, '""')}" CASCADE`);
  } finally {
    await client.end().catch(() => undefined);
  }
}
