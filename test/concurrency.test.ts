import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { generateSync } from 'otplib';
import type { Client } from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bodyHash } from '../src/auth/replay';
import { saveTotpSecret } from '../src/auth/secrets-file';
import type { Config } from '../src/config/types';
import type { Outcome } from '../src/core/outcome';
import { processMessage } from '../src/core/pipeline';
import { parseMail } from '../src/mail/parse';
import { PgStore } from '../src/state/pg-store';
import { SqliteStore } from '../src/state/sqlite-store';
import { MemoryStore, type StateStore } from '../src/state/store';
import { demoConfig, mail, tempDir, testDeps } from './support/env';
import { recordingServices } from './support/hostile';
import { PG_URL, connectPgAdmin } from './support/pg';
import { readReply } from './support/reply';

/*
 * One message handled twice at the same time (delivered twice into one `watch` batch, or two
 * `mailagent run` processes fed the same mail): the journal's compare-and-set lets exactly one
 * handling run the commands and answer; the other stays silent. The interleavings are forced
 * with gates around the store calls, so each test meets the race it is about on every run.
 */

const PG_SCHEMA = `mailagent_concurrency_test_${process.pid}_${randomBytes(4).toString('hex')}`;

const { dir, cleanup } = tempDir('mailagent-concurrency-');
/** `db touch` changes data; allowed on the allow list alone, so no evidence gets in the way. */
const config = demoConfig(dir, (raw) => (raw.security = { evidence: { 'db:touch': 'allowlist' } }));
/** `db touch` needs a one-time code; other messages only the allow list. */
const TOTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const totpConfig = demoConfig(dir, (raw) => {
  raw.security = { evidence: { 'db:touch': 'totp' } };
  raw.secretsFile = join(dir, 'secrets.json');
});
saveTotpSecret(join(dir, 'secrets.json'), 'ops@example.com', TOTP_SECRET, new Date());

interface Engine {
  name: string;
  /** Returns why the engine cannot be tested here, if it cannot. */
  open(): Promise<string | undefined>;
  store(): StateStore;
  close(): Promise<void>;
}

const memoryEngine = (): Engine => {
  const store = new MemoryStore();
  return { name: 'MemoryStore', open: async () => undefined, store: () => store, close: async () => undefined };
};

const sqliteEngine = (): Engine => {
  let store: SqliteStore | undefined;
  return {
    name: 'SqliteStore',
    open: async () => void (store = new SqliteStore(join(dir, 'concurrency-state.db'))),
    store: () => store!,
    close: async () => store?.close(),
  };
};

const pgEngine = (): Engine => {
  let admin: Client | undefined;
  let store: PgStore | undefined;
  return {
    name: 'PgStore',
    open: async () => {
      const client = await connectPgAdmin();
      if (typeof client === 'string') return client;
      admin = client;
      store = await PgStore.open({ file: join(dir, 'config.json'), state: { path: '', postgres: { url: PG_URL, schema: PG_SCHEMA } } } as unknown as Config);
      return undefined;
    },
    store: () => store!,
    close: async () => {
      await store?.close();
      await admin?.query(`DROP SCHEMA IF EXISTS ${PG_SCHEMA} CASCADE`).catch(() => undefined);
      await admin?.end().catch(() => undefined);
    },
  };
};

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * The store as one handling sees it: gates run around its calls of get, begin (numbered from 1)
 * and saveReply, so a test decides which handling reads, begins or answers when.
 */
function gated(
  store: StateStore,
  gates: { beforeGet?: () => Promise<void>; afterGet?: () => Promise<void>; beforeBegin?: (n: number) => Promise<void>; afterBegin?: (n: number) => void; beforeSaveReply?: () => Promise<void> },
): StateStore {
  let begins = 0;
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'get') {
        return async (key: string) => {
          await gates.beforeGet?.();
          const entry = await target.get(key);
          await gates.afterGet?.();
          return entry;
        };
      }
      if (prop === 'begin') {
        return async (...args: Parameters<StateStore['begin']>) => {
          const n = ++begins;
          await gates.beforeBegin?.(n);
          const won = await target.begin(...args);
          gates.afterBegin?.(n);
          return won;
        };
      }
      if (prop === 'saveReply') {
        return async (...args: Parameters<StateStore['saveReply']>) => {
          await gates.beforeSaveReply?.();
          return target.saveReply(...args);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Gates that hold every handling after its journal read until all `parties` have read: all see the journal as it was. */
function readTogether(parties: number) {
  const everyone = deferred();
  let arrived = 0;
  // A handling that never reads would otherwise hang the test; the count below then fails it.
  const timer = setTimeout(everyone.resolve, 10_000);
  return {
    afterGet: async () => {
      if (++arrived === parties) everyone.resolve();
      await everyone.promise;
    },
    arrived: () => arrived,
    done: () => clearTimeout(timer),
  };
}

const silentReason = 'the same message is being handled by another process';

function engineSuite(engine: Engine) {
  const s = suite(`${engine.name}: one message handled twice at the same time`);
  let skip: string | undefined;
  let broken: unknown;
  s.before(async () => {
    try {
      skip = await engine.open();
      if (skip && !process.env.CI) process.stdout.write(`\n  ${engine.name}: skipped, ${skip}\n`);
    } catch (err) {
      broken = err;
    }
  });
  s.after(async () => {
    await engine.close().catch((err) => process.stderr.write(`\n  ${engine.name}: clean-up failed: ${(err as Error).message}\n`));
  });
  const test = (name: string, fn: (store: StateStore) => Promise<void>) =>
    s(name, async () => {
      if (broken) throw broken;
      if (skip && process.env.CI) throw new Error(`${skip} (CI is set, so this engine must be tested)`);
      if (!skip) await fn(engine.store());
    });

  /** Both handlings read the journal before either begins: the insert race. */
  async function handleTogether(store: StateStore, message: Buffer, ran: string[], parties = 2) {
    const together = readTogether(parties);
    try {
      const handlings = Array.from({ length: parties }, () => testDeps(config, { store: gated(store, together), services: recordingServices(ran) }));
      const outcomes = await Promise.all(handlings.map((deps) => processMessage(message, deps)));
      assert.is(together.arrived(), parties, 'every handling read the journal');
      return { outcomes, audits: handlings.flatMap((d) => d.audits), errors: handlings.flatMap((d) => d.errors) };
    } finally {
      together.done();
    }
  }

  const replies = (outcomes: Outcome[]) => outcomes.filter((o) => o.kind === 'reply');
  const silences = (outcomes: Outcome[]) => outcomes.filter((o) => o.kind === 'silent');

  test('a change sent once, handled twice at once: it runs once, one reply, the other handling is silent', async (store) => {
    const ran: string[] = [];
    const message = mail('db touch', { 'Message-ID': `<twice-${randomBytes(6).toString('hex')}@example.com>` });
    const { outcomes, audits, errors } = await handleTogether(store, message, ran);
    assert.equal(ran, ['db touch']);
    assert.is(replies(outcomes).length, 1);
    assert.match((await readReply(replies(outcomes)[0])).text!, '> db touch\ntouched');
    assert.equal(silences(outcomes), [{ kind: 'silent', reason: silentReason }]);
    assert.equal(audits.map((a) => a.decision).sort(), ['duplicate', 'executed']);
    assert.is(audits.find((a) => a.decision === 'duplicate')!.reason, 'being handled by another process');
    assert.equal(errors, []);
  });

  test('five handlings of one read-only request at once: one runs and answers', async (store) => {
    const ran: string[] = [];
    const message = mail('db tables', { 'Message-ID': `<five-${randomBytes(6).toString('hex')}@example.com>` });
    const { outcomes } = await handleTogether(store, message, ran, 5);
    assert.equal(ran, ['db tables']);
    assert.is(replies(outcomes).length, 1);
    assert.is(silences(outcomes).length, 4);
  });

  test('a handling that took over a read-only entry meanwhile stops the first one before its change runs', async (store) => {
    // First begins (entry: executing, read-only); second then reads that entry (as a crash
    // would leave it) and takes over; only then does first try to record its change.
    const ran: string[] = [];
    const message = mail('db touch', { 'Message-ID': `<takeover-${randomBytes(6).toString('hex')}@example.com>` });
    const firstBegun = deferred();
    const secondBegun = deferred();
    const first = testDeps(config, {
      store: gated(store, { afterBegin: (n) => n === 1 && firstBegun.resolve(), beforeBegin: async (n) => void (n === 2 && (await secondBegun.promise)) }),
      services: recordingServices(ran),
    });
    const second = testDeps(config, {
      store: gated(store, { beforeGet: () => firstBegun.promise, afterBegin: (n) => n === 1 && secondBegun.resolve() }),
      services: recordingServices(ran),
    });
    const [a, b] = await Promise.all([processMessage(message, first), processMessage(message, second)]);
    assert.equal(ran, ['db touch']);
    assert.equal(a, { kind: 'silent', reason: silentReason });
    assert.is(b.kind, 'reply');
    assert.match((await readReply(b)).text!, '> db touch\ntouched');
    assert.equal(first.audits.map((r) => [r.decision, r.reason]), [['duplicate', 'being handled by another process']]);
  });

  test('a read-only request taken over while the first handling still runs it: only the last claim answers', async (store) => {
    const ran: string[] = [];
    const message = mail('db tables', { 'Message-ID': `<live-ro-${randomBytes(6).toString('hex')}@example.com>` });
    const firstBegun = deferred();
    const secondBegun = deferred();
    const first = testDeps(config, { store: gated(store, { afterBegin: () => firstBegun.resolve(), beforeSaveReply: () => secondBegun.promise }), services: recordingServices(ran) });
    const second = testDeps(config, { store: gated(store, { beforeGet: () => firstBegun.promise, afterBegin: () => secondBegun.resolve() }), services: recordingServices(ran) });
    const [a, b] = await Promise.all([processMessage(message, first), processMessage(message, second)]);
    assert.equal(a, { kind: 'silent', reason: silentReason });
    assert.is(b.kind, 'reply');
    assert.equal(ran, ['db tables', 'db tables'], 'reading twice is allowed: a crash cannot be told from a slow handling');
  });

  test('a change taken over while it runs: it ran once, and one reply says its outcome is unknown', async (store) => {
    const ran: string[] = [];
    const message = mail('db touch', { 'Message-ID': `<live-rw-${randomBytes(6).toString('hex')}@example.com>` });
    const changeRecorded = deferred();
    const secondBegun = deferred();
    const first = testDeps(config, { store: gated(store, { afterBegin: (n) => n === 2 && changeRecorded.resolve(), beforeSaveReply: () => secondBegun.promise }), services: recordingServices(ran) });
    const second = testDeps(config, { store: gated(store, { beforeGet: () => changeRecorded.promise, afterBegin: () => secondBegun.resolve() }), services: recordingServices(ran) });
    const [a, b] = await Promise.all([processMessage(message, first), processMessage(message, second)]);
    assert.equal(ran, ['db touch']);
    assert.equal(a, { kind: 'silent', reason: silentReason });
    assert.match((await readReply(b)).subject!, 'outcome unknown');
  });

  test('a change with a one-time code, handled twice at once: the code is spent by the handling that goes ahead', async (store) => {
    // The second reader claims first. Had the first spent the code before losing the claim, the
    // winner would answer "one-time code not accepted" and nothing would run.
    const ran: string[] = [];
    const message = mail(`db touch\notp=${generateSync({ secret: TOTP_SECRET })}`, { 'Message-ID': `<otp-${randomBytes(6).toString('hex')}@example.com>` });
    const together = readTogether(2);
    const secondBegun = deferred();
    try {
      const first = testDeps(totpConfig, { store: gated(store, { ...together, beforeBegin: async (n) => void (n === 1 && (await secondBegun.promise)) }), services: recordingServices(ran) });
      const second = testDeps(totpConfig, { store: gated(store, { ...together, afterBegin: (n) => n === 1 && secondBegun.resolve() }), services: recordingServices(ran) });
      const [a, b] = await Promise.all([processMessage(message, first), processMessage(message, second)]);
      assert.is(together.arrived(), 2);
      assert.equal(a, { kind: 'silent', reason: silentReason });
      assert.match((await readReply(b)).text!, '> db touch\ntouched');
      assert.equal(ran, ['db touch']);
      assert.equal(second.audits.map((r) => r.evidence), [['allowlist', 'totp']]);
    } finally {
      together.done();
    }
  });

  test('a change interrupted by a crash, redelivered twice at once: one "outcome unknown" reply, nothing runs', async (store) => {
    const ran: string[] = [];
    const message = mail('db touch', { 'Message-ID': `<crashed-${randomBytes(6).toString('hex')}@example.com>` });
    // The journal as an agent killed while running the change leaves it.
    const parsed = await parseMail(message);
    assert.is(await store.begin(`mid:${parsed.messageId!.toLowerCase()}`, { messageId: parsed.messageId, sender: 'ops@example.com', bodyHash: bodyHash(parsed), mutates: true }, { attempt: 0 }), true);
    const { outcomes } = await handleTogether(store, message, ran);
    assert.equal(ran, []);
    assert.is(replies(outcomes).length, 1);
    assert.match((await readReply(replies(outcomes)[0])).subject!, 'outcome unknown');
    assert.equal(silences(outcomes), [{ kind: 'silent', reason: silentReason }]);
  });

  return () => s.run();
}

for (const run of [engineSuite(memoryEngine()), engineSuite(sqliteEngine()), engineSuite(pgEngine())]) run();

const end = suite('clean-up');
end('temporary files removed', () => cleanup());
end.run();
