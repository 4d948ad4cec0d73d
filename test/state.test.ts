import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Client } from 'pg';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Config, SecretRef } from '../src/config/types';
import { UserError } from '../src/core/errors';
import { openStateStore } from '../src/state/open';
import { PgStore } from '../src/state/pg-store';
import { SqliteStore } from '../src/state/sqlite-store';
import { MemoryStore, type JournalEntry, type StateStore, type StoredReply } from '../src/state/store';
import { ROOT, demoConfig, exampleConfigObject, mail, tempDir } from './support/env';
import { PG_URL, connectPgAdmin } from './support/pg';
import { startSmtpSink } from './support/smtp-sink';

/*
 * One contract for every state store engine (memory, SQLite file, PostgreSQL), then what only
 * the shared engines promise: another connection or process sees the same state, and concurrent
 * agents get exactly-once answers (each reply leased once, one lease winner, a token used once).
 */

/** Unique per run, dropped at the end of every suite that uses it. */
const PG_SCHEMA = `mailagent_state_test_${process.pid}_${randomBytes(4).toString('hex')}`;
const WORKER = join(__dirname, 'support', 'state-worker.ts');

const pgConfig = (url: string | SecretRef, schema?: string): Config =>
  ({ file: join(__dirname, 'config.json'), state: { path: '', postgres: { url, ...(schema && { schema }) } } }) as unknown as Config;

interface Engine {
  name: string;
  /** Prepares the engine; returns why it cannot be tested here, if it cannot. */
  start(): Promise<string | undefined>;
  /** A new, empty store. */
  fresh(): Promise<StateStore>;
  finish(): Promise<void>;
}

/** An engine whose state lives outside the process: a second instance or process shares it. */
interface SharedEngine extends Engine {
  /** Another instance on the store fresh() made last. */
  open(): Promise<StateStore>;
  /** That store's location, for a worker process. */
  target(): object;
}

const memoryEngine = (): Engine => ({
  name: 'MemoryStore',
  start: async () => undefined,
  fresh: async () => new MemoryStore(),
  finish: async () => undefined,
});

function sqliteEngine(): SharedEngine {
  let temp: ReturnType<typeof tempDir> | undefined;
  let path = '';
  let n = 0;
  return {
    name: 'SqliteStore',
    start: async () => {
      temp = tempDir('mailagent-state-');
      return undefined;
    },
    fresh: async () => new SqliteStore((path = join(temp!.dir, `state-${++n}.db`))),
    open: async () => new SqliteStore(path),
    target: () => ({ sqlite: path }),
    finish: async () => temp?.cleanup(),
  };
}

function pgEngine(): SharedEngine {
  let admin: Client | undefined;
  return {
    name: 'PgStore',
    start: async () => {
      const client = await connectPgAdmin();
      if (typeof client === 'string') return client;
      admin = client;
      await dropSchemasOfDeadRuns(client);
      return undefined;
    },
    fresh: async () => {
      await admin!.query(`DROP SCHEMA IF EXISTS ${PG_SCHEMA} CASCADE`);
      return PgStore.open(pgConfig(PG_URL, PG_SCHEMA));
    },
    open: () => PgStore.open(pgConfig(PG_URL, PG_SCHEMA)),
    target: () => ({ postgres: { url: PG_URL, schema: PG_SCHEMA } }),
    finish: async () => {
      if (!admin) return;
      await admin.query(`DROP SCHEMA IF EXISTS ${PG_SCHEMA} CASCADE`).catch(() => undefined);
      await admin.end().catch(() => undefined);
      admin = undefined;
    },
  };
}

/** A test process that crashed could not drop its schemas: whoever runs next does. */
async function dropSchemasOfDeadRuns(admin: Client) {
  const { rows } = await admin.query<{ name: string }>(`SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE 'mailagent\\_state\\_test\\_%'`);
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  };
  for (const { name } of rows) {
    const pid = Number(name.split('_')[3]);
    if (Number.isInteger(pid) && pid > 0 && !alive(pid)) await admin.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
  }
}

/**
 * A uvu suite on one engine. When the engine cannot be reached its tests are skipped with the
 * reason shown, except under CI, where every one of them fails with that reason. uvu does not
 * report errors thrown by hooks, so a failed set-up fails each test instead.
 */
function engineSuite<E extends Engine>(engine: E, title: string, hooks: { before?: () => Promise<void>; after?: () => Promise<void> } = {}) {
  const s = suite(`${engine.name}: ${title}`);
  let skip: string | undefined;
  let broken: unknown;
  s.before(async () => {
    try {
      skip = await engine.start();
      if (skip && !process.env.CI) process.stdout.write(`\n  ${engine.name} ${title}: skipped, ${skip}\n`);
      if (!skip) await hooks.before?.();
    } catch (err) {
      broken = err;
    }
  });
  s.after(async () => {
    try {
      if (!skip) await hooks.after?.();
    } catch (err) {
      process.stderr.write(`\n  ${engine.name} ${title}: clean-up failed: ${(err as Error).message}\n`);
    }
    await engine.finish().catch((err) => process.stderr.write(`\n  ${engine.name}: clean-up failed: ${(err as Error).message}\n`));
  });
  const test = (name: string, fn: () => Promise<void>) =>
    s(name, async () => {
      if (broken) throw broken;
      if (skip && process.env.CI) throw new Error(`${skip} (CI is set, so this engine must be tested)`);
      if (!skip) await fn();
    });
  /** The test gets a fresh store, closed afterwards whatever happens. */
  const withStore = (name: string, fn: (store: StateStore) => Promise<void>) =>
    test(name, async () => {
      const store = await engine.fresh();
      try {
        await fn(store);
      } finally {
        await store.close();
      }
    });
  return { test, withStore, run: () => s.run() };
}

const reply = (n: number): StoredReply => ({ messageId: `<reply-${n}@agent.example>`, from: 'agent@example.com', to: [`user${n}@example.com`], raw: Buffer.from(`reply ${n}\r\n\0\xff`, 'latin1') });
/** An entry with every field present, so engines that leave `reply` out compare equal to those that set it undefined. */
const view = (entry: JournalEntry | undefined) => entry && { ...entry, reply: entry.reply };
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ─── the contract, for every engine ─────────────────────────────────────────────────────────

function contract(engine: Engine) {
  const { withStore, run } = engineSuite(engine, 'contract');

  withStore('journal: executing → reply-pending → replied, and a retried message starts over', async (store) => {
    assert.is(await store.get('k1'), undefined);
    assert.is(await store.begin('k1', { messageId: '<m1@example.com>', sender: 'ops@example.com', bodyHash: 'h1', mutates: false }, { attempt: 0 }), true);
    assert.equal(view(await store.get('k1')), { key: 'k1', state: 'executing', sender: 'ops@example.com', bodyHash: 'h1', mutates: false, attempt: 1, reply: undefined });
    await store.saveReply('k1', reply(1));
    const pending = await store.get('k1');
    assert.is(pending?.state, 'reply-pending');
    assert.equal(pending?.reply?.to, ['user1@example.com']);
    assert.is(pending?.reply?.messageId, '<reply-1@agent.example>');
    assert.ok(pending?.reply?.raw.equals(reply(1).raw), 'the stored reply comes back byte for byte');
    await store.begin('k2', { sender: 'ops@example.com', bodyHash: 'h2', mutates: true }, { attempt: 0 });
    assert.equal(await store.counts(), { executing: 1, 'reply-pending': 1, replied: 0 });
    await store.markReplied('k1');
    assert.equal(view(await store.get('k1')), { key: 'k1', state: 'replied', sender: 'ops@example.com', bodyHash: 'h1', mutates: false, attempt: 1, reply: undefined });
    assert.is(await store.begin('k1', { sender: 'ops@example.com', bodyHash: 'h1', mutates: true }, { attempt: 1 }), true);
    assert.equal(view(await store.get('k1')), { key: 'k1', state: 'executing', sender: 'ops@example.com', bodyHash: 'h1', mutates: true, attempt: 2, reply: undefined });
    assert.equal(await store.counts(), { executing: 2, 'reply-pending': 0, replied: 0 });
  });

  withStore('journal: begin is a compare-and-set on the attempt that was read', async (store) => {
    const info = { messageId: '<m1@example.com>', sender: 'ops@example.com', bodyHash: 'h1', mutates: false };
    assert.is(await store.begin('k1', info, { attempt: 1 }), false, 'no entry: only attempt 0 may insert');
    assert.is(await store.get('k1'), undefined);
    assert.is(await store.begin('k1', info, { attempt: 0 }), true);
    assert.is(await store.begin('k1', { ...info, mutates: true }, { attempt: 0 }), false, 'a second insert of the same message loses');
    assert.equal(view(await store.get('k1')), { key: 'k1', state: 'executing', sender: 'ops@example.com', bodyHash: 'h1', mutates: false, attempt: 1, reply: undefined }, 'the loser changed nothing');
    assert.is(await store.begin('k1', { ...info, mutates: true }, { attempt: 1 }), true, 'the holder of attempt 1 records the change');
    assert.is(await store.begin('k1', { ...info, mutates: true }, { attempt: 1 }), false, 'attempt 1 is used up');
    assert.is(await store.begin('k1', info, { attempt: 3 }), false, 'an attempt from the future is refused too');
    assert.is((await store.get('k1'))?.attempt, 2);
    await store.saveReply('k1', reply(1));
    assert.is(await store.begin('k1', info, { attempt: 1 }), false, 'a stale attempt cannot take back a reply-pending entry');
    assert.is((await store.get('k1'))?.state, 'reply-pending');
    assert.is(await store.begin('k3', info, { attempt: 0 }), true);
    assert.is(await store.begin('k3', info, { attempt: 1 }), true, 'taken over');
    assert.is(await store.saveReply('k3', reply(3), { attempt: 1 }), false, 'the handling that was taken over cannot store its reply');
    assert.is((await store.get('k3'))?.state, 'executing');
    assert.is(await store.saveReply('k3', reply(3), { attempt: 2 }), true);
    assert.is((await store.get('k3'))?.state, 'reply-pending');
    assert.is(await store.saveReply('k4', reply(4)), false, 'no entry, no reply');
    const won = await Promise.all(Array.from({ length: 10 }, () => store.begin('k2', info, { attempt: 0 })));
    assert.is(won.filter(Boolean).length, 1, 'ten handlings at once: one winner');
    const next = await Promise.all(Array.from({ length: 10 }, (_, i) => store.begin('k2', { ...info, mutates: i % 2 === 0 }, { attempt: 1 })));
    assert.is(next.filter(Boolean).length, 1);
    assert.is((await store.get('k2'))?.attempt, 2);
  });

  withStore('outbox: due replies oldest first, leased until the lease ends, deferred with the error, gone once replied', async (store) => {
    assert.equal(await store.outboxStats(), { depth: 0 });
    const before = Date.now();
    for (const n of [1, 2, 3]) {
      await store.begin(`k${n}`, { sender: 'ops@example.com', bodyHash: `h${n}`, mutates: false }, { attempt: 0 });
      await store.saveReply(`k${n}`, reply(n));
      await pause(3); // distinct queue times, so "oldest first" is defined
    }
    const stats = await store.outboxStats();
    assert.is(stats.depth, 3);
    assert.ok(stats.oldestQueuedAt! >= before && stats.oldestQueuedAt! <= Date.now(), 'oldest queue time is when k1 was saved');

    const now = Date.now();
    const first = await store.takeDueReplies(now, 60_000, 2);
    assert.equal(first.map((e) => e.key), ['k1', 'k2']);
    assert.is(first[0].attempts, 0);
    assert.is(first[0].lastError, undefined);
    assert.ok(first[0].queuedAt < first[1].queuedAt);
    assert.ok(first[1].reply.raw.equals(reply(2).raw));
    assert.equal(first[1].reply.to, ['user2@example.com']);
    assert.equal((await store.takeDueReplies(now, 60_000, 10)).map((e) => e.key), ['k3'], 'leased replies are not handed out again');
    assert.equal(await store.takeDueReplies(now + 59_999, 60_000, 10), []);
    assert.equal((await store.takeDueReplies(now + 60_000, 60_000, 10)).map((e) => e.key), ['k1', 'k2', 'k3'], 'an expired lease (the agent died) frees the reply');

    await store.deferReply('k2', now + 200_000, 'connect ECONNREFUSED 127.0.0.1:25');
    await store.markReplied('k1');
    assert.equal((await store.takeDueReplies(now + 120_000, 60_000, 10)).map((e) => e.key), ['k3']);
    const retried = await store.takeDueReplies(now + 200_000, 60_000, 10);
    assert.equal(retried.map((e) => e.key), ['k2', 'k3']);
    assert.is(retried[0].attempts, 1);
    assert.is(retried[0].lastError, 'connect ECONNREFUSED 127.0.0.1:25');
    assert.is((await store.outboxStats()).depth, 2);
    await store.markReplied('k2');
    await store.markReplied('k3');
    assert.equal(await store.outboxStats(), { depth: 0 });
    assert.equal(await store.takeDueReplies(now + 10_000_000, 60_000, 10), []);
  });

  withStore('TOTP: each time step works once per address, and never an older one', async (store) => {
    assert.is(await store.useTotpStep('ops@example.com', 100), true);
    assert.is(await store.useTotpStep('ops@example.com', 100), false);
    assert.is(await store.useTotpStep('ops@example.com', 99), false);
    assert.is(await store.useTotpStep('ops@example.com', 101), true);
    assert.is(await store.useTotpStep('dba@example.com', 100), true);
  });

  withStore('confirmations: a token releases its commands once, and only to its owner', async (store) => {
    const pending = { token: 'a'.repeat(32), sender: 'ops@example.com', commands: ['db query name=open_tickets', 'db tables'], expiresAt: 1_800_000_000_000 };
    await store.saveConfirmation(pending);
    await store.saveConfirmation({ ...pending, token: 'b'.repeat(32) });
    assert.is(await store.takeConfirmation('a'.repeat(32), 'helpdesk@example.com'), undefined, 'another user cannot take it');
    assert.equal(await store.takeConfirmation('a'.repeat(32), 'ops@example.com'), pending, 'nor burn it for its owner');
    assert.is(await store.takeConfirmation('a'.repeat(32), 'ops@example.com'), undefined);
    assert.is(await store.takeConfirmation('c'.repeat(32), 'ops@example.com'), undefined);
    assert.is((await store.takeConfirmation('b'.repeat(32), 'ops@example.com'))?.sender, 'ops@example.com');
  });

  withStore('events: counted by kind, subject and time', async (store) => {
    const t = 1_795_000_000_000;
    await store.recordEvent('message', 'ops@example.com', t);
    await store.recordEvent('message', 'ops@example.com', t + 1_000);
    await store.recordEvent('message', 'dba@example.com', t + 2_000);
    await store.recordEvent('reply', 'ops@example.com', t + 3_000);
    assert.is(await store.countEvents('message', 'ops@example.com', t), 2);
    assert.is(await store.countEvents('message', 'ops@example.com', t + 1), 1);
    assert.is(await store.countEvents('message', undefined, t), 3);
    assert.is(await store.countEvents('reply', undefined, t), 1);
    assert.is(await store.countEvents('reply', 'dba@example.com', t), 0);
    assert.is(await store.countEvents('message', undefined, t + 5_000), 0);
  });

  withStore('claims: one owner at a time, renewable by it, free once expired or released', async (store) => {
    assert.is(await store.claim('outbox', 'agent-a', 1_000, 2_000), true);
    assert.is(await store.claim('outbox', 'agent-b', 1_500, 2_500), false);
    assert.is(await store.claim('other', 'agent-b', 1_500, 2_500), true, 'leases are per name');
    assert.is(await store.claim('outbox', 'agent-a', 1_900, 3_000), true, 'the owner renews');
    assert.is(await store.claim('outbox', 'agent-b', 2_999, 4_000), false);
    assert.is(await store.claim('outbox', 'agent-b', 3_000, 4_000), true, 'an expired lease goes to the next agent');
    await store.release('outbox', 'agent-a');
    assert.is(await store.claim('outbox', 'agent-a', 3_001, 5_000), false, 'only the owner can release');
    await store.release('outbox', 'agent-b');
    assert.is(await store.claim('outbox', 'agent-a', 3_002, 5_000), true);
  });

  return run;
}

// ─── shared engines: a second instance, a second process ────────────────────────────────────

/** A store in another process (test/support/state-worker.ts). */
class WorkerStore {
  private nextId = 0;
  private waiting = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private ready: Promise<void>;

  private constructor(private child: ChildProcessWithoutNullStreams) {
    let markReady: () => void;
    let failStart: (e: Error) => void;
    this.ready = new Promise((resolve, reject) => ((markReady = resolve), (failStart = reject)));
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const message = JSON.parse(line);
      if (message.ready) return markReady();
      const pending = this.waiting.get(message.id)!;
      this.waiting.delete(message.id);
      if ('error' in message) pending.reject(new Error(message.error));
      else pending.resolve(message.value);
    });
    const stderr: Buffer[] = [];
    child.stderr.on('data', (c) => stderr.push(c));
    child.on('close', (code) => {
      const error = new Error(`state worker exited (${code}): ${Buffer.concat(stderr).toString().trim()}`);
      failStart(error);
      for (const pending of this.waiting.values()) pending.reject(error);
      this.waiting.clear();
    });
  }

  static async start(target: object): Promise<WorkerStore> {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify(target)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    const worker = new WorkerStore(child);
    child.on('error', () => undefined); // a failed spawn also ends in 'close', which rejects ready
    try {
      await worker.ready;
    } catch (err) {
      await worker.stop();
      throw err;
    }
    return worker;
  }

  call<T = any>(method: keyof StateStore, ...args: unknown[]): Promise<T> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.stdin.write(`${JSON.stringify({ id, method, args })}\n`);
    });
  }

  /** Closes stdin (the worker closes its store and exits); killed if it does not. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('close', resolve));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

function shared(engine: SharedEngine) {
  const { withStore, run } = engineSuite(engine, 'shared by instances');

  withStore('a second instance sees what the first wrote, and reopening keeps everything', async (first) => {
    await first.begin('k1', { sender: 'ops@example.com', bodyHash: 'h1', mutates: true }, { attempt: 0 });
    await first.saveReply('k1', reply(1));
    await first.useTotpStep('ops@example.com', 7);
    await first.claim('outbox', 'agent-a', 1_000, 2_000);
    const second = await engine.open();
    try {
      assert.is((await second.get('k1'))?.state, 'reply-pending');
      assert.ok((await second.get('k1'))?.reply?.raw.equals(reply(1).raw));
      assert.is(await second.useTotpStep('ops@example.com', 7), false);
      assert.is(await second.claim('outbox', 'agent-b', 1_500, 2_500), false);
      assert.is((await second.takeDueReplies(Date.now(), 60_000, 10)).length, 1);
      assert.equal(await first.takeDueReplies(Date.now(), 60_000, 10), [], 'the lease taken by the second instance holds for the first');
    } finally {
      await second.close();
    }
    await first.close();
    const reopened = await engine.open();
    try {
      assert.equal(await reopened.counts(), { executing: 0, 'reply-pending': 1, replied: 0 });
    } finally {
      await reopened.close();
    }
  });

  withStore('events older than a day are pruned when new ones are recorded, at most once a minute', async (store) => {
    const t = 1_795_000_000_000;
    await store.recordEvent('message', 'ops@example.com', t);
    await store.recordEvent('message', 'ops@example.com', t + 86_400_000);
    assert.is(await store.countEvents('message', undefined, 0), 2, 'exactly a day old is kept');
    await store.recordEvent('reply', 'ops@example.com', t + 86_400_001);
    assert.is(await store.countEvents('message', undefined, 0), 2, 'pruned a moment ago: not again yet');
    await store.recordEvent('reply', 'ops@example.com', t + 86_400_000 + 60_000);
    assert.is(await store.countEvents('message', undefined, 0), 1);
    assert.is(await store.countEvents('reply', undefined, 0), 2);
  });

  return run;
}

function concurrency(engine: SharedEngine) {
  let parent: StateStore | undefined;
  let workers: WorkerStore[] = [];
  const { test, run } = engineSuite(engine, 'two agent processes at once', {
    before: async () => {
      parent = await engine.fresh();
      const started = await Promise.allSettled([WorkerStore.start(engine.target()), WorkerStore.start(engine.target())]);
      workers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
      const failed = started.find((s) => s.status === 'rejected') as PromiseRejectedResult | undefined;
      if (failed) throw failed.reason;
    },
    after: async () => {
      await Promise.all(workers.map((w) => w.stop()));
      await parent?.close();
    },
  });
  /** Calls spread over both workers (even on the first, odd on the second), all sent at once. */
  const spread = <T>(n: number, call: (worker: WorkerStore, i: number) => Promise<T>) => Promise.all(Array.from({ length: n }, (_, i) => call(workers[i % 2], i)));

  test('200 queued replies, both agents taking batches: each reply is leased exactly once', async () => {
    for (let n = 0; n < 200; n++) {
      await parent!.begin(`k${n}`, { sender: 'ops@example.com', bodyHash: `h${n}`, mutates: false }, { attempt: 0 });
      await parent!.saveReply(`k${n}`, reply(n));
    }
    const now = Date.now();
    const drain = async (worker: WorkerStore) => {
      const keys: string[] = [];
      // Batches of 7, several requests in flight per agent, like an agent's parallel senders.
      for (;;) {
        const batches = await Promise.all([1, 2, 3].map(() => worker.call<{ key: string }[]>('takeDueReplies', now, 600_000, 7)));
        const taken = batches.flat().map((e) => e.key);
        if (taken.length === 0) return keys;
        keys.push(...taken);
      }
    };
    const [a, b] = await Promise.all(workers.map(drain));
    const all = [...a, ...b];
    assert.is(new Set(all).size, all.length, `replies leased twice: ${[...new Set(all.filter((k, i) => all.indexOf(k) !== i))].slice(0, 10).join(', ')}…`);
    assert.is(all.length, 200);
    assert.equal(await parent!.takeDueReplies(now, 600_000, 500), []);
    assert.is((await parent!.outboxStats()).depth, 200, 'leased replies are still in the outbox until sent');
  });

  test('50 simultaneous claims of one lease: exactly one winner, and it holds the lease', async () => {
    const won = await spread(50, (w, i) => w.call<boolean>('claim', 'imap-sync', `agent-${i}`, 5_000, 65_000));
    const winners = won.flatMap((ok, i) => (ok ? [`agent-${i}`] : []));
    assert.is(winners.length, 1, `winners: ${winners.join(', ')}`);
    assert.is(await parent!.claim('imap-sync', 'agent-x', 6_000, 66_000), false);
    assert.is(await parent!.claim('imap-sync', winners[0], 6_000, 66_000), true);
  });

  test('one message begun 40 times at once by both agents: exactly one handling goes ahead, and then one retry', async () => {
    for (let n = 0; n < 5; n++) {
      const key = `race-${n}`;
      const info = (i: number) => ({ messageId: `<race-${n}@example.com>`, sender: 'ops@example.com', bodyHash: 'h', mutates: i % 3 === 0 });
      const first = await spread(40, (w, i) => w.call<boolean>('begin', key, info(i), { attempt: 0 }));
      assert.is(first.filter(Boolean).length, 1, `${key}: ${first.filter(Boolean).length} handlings began`);
      const winner = first.indexOf(true);
      assert.equal((await parent!.get(key))?.mutates, info(winner).mutates, 'the entry is the winner’s');
      const retry = await spread(40, (w, i) => w.call<boolean>('begin', key, info(i), { attempt: 1 }));
      assert.is(retry.filter(Boolean).length, 1, `${key}: ${retry.filter(Boolean).length} retries began`);
      assert.is((await parent!.get(key))?.attempt, 2);
    }
  });

  test('a confirmation token taken by both agents at once works for one of them', async () => {
    for (let n = 0; n < 20; n++) {
      await parent!.saveConfirmation({ token: `token-${n}`, sender: 'ops@example.com', commands: [`jobs run job-${n}`], expiresAt: 1_800_000_000_000 });
    }
    const taken = await spread(80, (w, i) => w.call<{ token: string } | null>('takeConfirmation', `token-${i % 20}`, 'ops@example.com'));
    for (let n = 0; n < 20; n++) {
      const got = taken.filter((p, i) => i % 20 === n && p !== null);
      assert.is(got.length, 1, `token-${n} was released ${got.length} times`);
      assert.is(got[0]!.token, `token-${n}`);
    }
  });

  test('the same TOTP step sent to both agents at once is accepted once', async () => {
    const accepted = await spread(40, (w, i) => w.call<boolean>('useTotpStep', `user${i % 4}@example.com`, 59_833_333));
    for (let u = 0; u < 4; u++) {
      assert.is(accepted.filter((ok, i) => ok && i % 4 === u).length, 1, `user${u}`);
    }
    assert.is(await parent!.useTotpStep('user0@example.com', 59_833_333), false);
    assert.is(await parent!.useTotpStep('user0@example.com', 59_833_334), true);
  });

  return run;
}

// ─── SQLite journals written by earlier versions ─────────────────────────────────────────────

function earlierSqliteJournals() {
  const s = suite('SqliteStore: journals written by earlier versions');
  const formats: [string, string][] = [
    ['the first format (no outbox, no attempt counter)', ''],
    ['the outbox format (no attempt counter)', ', queued_at INTEGER, next_attempt_at INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT'],
  ];
  for (const [name, outboxColumns] of formats) {
    s(`${name} opens and works`, async () => {
      const { dir, cleanup } = tempDir('mailagent-state-old-');
      try {
        const path = join(dir, 'state.db');
        const Database = require('better-sqlite3') as typeof import('better-sqlite3');
        const old = new Database(path);
        old.exec(`CREATE TABLE journal (
          key TEXT PRIMARY KEY, message_id TEXT, sender TEXT NOT NULL, body_hash TEXT NOT NULL, mutates INTEGER NOT NULL, state TEXT NOT NULL,
          reply_id TEXT, reply_from TEXT, reply_to TEXT, reply_raw BLOB${outboxColumns},
          created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')), updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))`);
        old.prepare(`INSERT INTO journal (key, sender, body_hash, mutates, state) VALUES ('old-ro', 'ops@example.com', 'h1', 0, 'executing'), ('old-done', 'ops@example.com', 'h2', 0, 'replied')`).run();
        old.close();
        const store = new SqliteStore(path);
        try {
          assert.equal(view(await store.get('old-ro')), { key: 'old-ro', state: 'executing', sender: 'ops@example.com', bodyHash: 'h1', mutates: false, attempt: 0, reply: undefined });
          assert.is(await store.begin('old-ro', { sender: 'ops@example.com', bodyHash: 'h1', mutates: false }, { attempt: 0 }), true, 'an entry left executing by the old version is taken over once');
          assert.is(await store.begin('old-ro', { sender: 'ops@example.com', bodyHash: 'h1', mutates: false }, { attempt: 0 }), false);
          await store.saveReply('old-ro', reply(1));
          assert.equal((await store.takeDueReplies(Date.now(), 60_000, 10)).map((e) => e.key), ['old-ro']);
          assert.is((await store.get('old-done'))?.state, 'replied');
          assert.equal(await store.counts(), { executing: 0, 'reply-pending': 1, replied: 1 });
        } finally {
          await store.close();
        }
      } finally {
        cleanup();
      }
    });
  }
  return () => s.run();
}

// ─── PostgreSQL only: start-up, configuration, failures ─────────────────────────────────────

function postgresOnly() {
  const admin = pgEngine();
  const extra = `${PG_SCHEMA}_boot`;
  let adminClient: Client | undefined;
  const { test, run } = engineSuite(admin, 'start-up and failures', {
    before: async () => {
      const pg = require('pg') as typeof import('pg');
      adminClient = new pg.Client(PG_URL);
      adminClient.on('error', () => undefined);
      await adminClient.connect();
    },
    after: async () => {
      await adminClient?.query(`DROP SCHEMA IF EXISTS ${extra} CASCADE`).catch(() => undefined);
      await adminClient?.end().catch(() => undefined);
    },
  });

  test('three agents starting together on an empty database create the schema once, then share it', async () => {
    const opened = await Promise.allSettled([1, 2, 3].map(() => PgStore.open(pgConfig(PG_URL, extra))));
    const stores = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    try {
      assert.equal(opened.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason)), []);
      assert.is(await stores[0].claim('first', 'agent-0', 1, 2), true);
      assert.is(await stores[1].claim('first', 'agent-1', 1, 2), false);
      const { rows } = await adminClient!.query('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1', [extra]);
      assert.equal(rows.map((r) => r.tablename), ['mailagent_confirmations', 'mailagent_events', 'mailagent_journal', 'mailagent_leases', 'mailagent_totp_used']);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  test('a journal table from before the attempt counter gets the column when a store opens, and its entries go on', async () => {
    const before = await PgStore.open(pgConfig(PG_URL, extra));
    await before.close();
    await adminClient!.query(`ALTER TABLE ${extra}.mailagent_journal DROP COLUMN attempt`);
    await adminClient!.query(
      `INSERT INTO ${extra}.mailagent_journal (key, sender, body_hash, mutates, state) VALUES ('old-ro', 'ops@example.com', 'h1', false, 'executing'), ('old-done', 'ops@example.com', 'h2', false, 'replied')`,
    );
    const store = await PgStore.open(pgConfig(PG_URL, extra));
    try {
      assert.is((await store.get('old-ro'))?.attempt, 0);
      assert.is(await store.begin('old-ro', { sender: 'ops@example.com', bodyHash: 'h1', mutates: false }, { attempt: 0 }), true, 'an entry left executing by the old version is taken over once');
      assert.is(await store.begin('old-ro', { sender: 'ops@example.com', bodyHash: 'h1', mutates: false }, { attempt: 0 }), false);
      assert.is((await store.get('old-done'))?.state, 'replied');
      assert.is(await store.begin('new', { sender: 'ops@example.com', bodyHash: 'h3', mutates: true }, { attempt: 0 }), true);
    } finally {
      await store.close();
    }
  });

  test('state.postgres in the config selects the PostgreSQL store (URL from an environment variable)', async () => {
    const { dir, cleanup } = tempDir();
    process.env.MAILAGENT_TEST_STATE_URL = PG_URL;
    try {
      const config = demoConfig(dir, (raw) => (raw.state.postgres = { url: { env: 'MAILAGENT_TEST_STATE_URL' }, schema: extra }));
      const store = await openStateStore(config);
      try {
        assert.instance(store, PgStore);
        assert.is(await store.begin('k1', { sender: 'ops@example.com', bodyHash: 'h1', mutates: false }, { attempt: 0 }), true);
        const { rows } = await adminClient!.query(`SELECT state FROM ${extra}.mailagent_journal WHERE key = 'k1'`);
        assert.equal(rows, [{ state: 'executing' }]);
      } finally {
        await store.close();
      }
      const sqlite = await openStateStore(demoConfig(dir));
      assert.instance(sqlite, SqliteStore);
      await sqlite.close();
    } finally {
      delete process.env.MAILAGENT_TEST_STATE_URL;
      cleanup();
    }
  });

  test('an unreachable server is a temporary failure (exit 75) that names the store without its password', async () => {
    process.env.MAILAGENT_TEST_STATE_URL = 'postgres://agent:Secret%21Pw@127.0.0.1:1/state?password=OtherSecret';
    try {
      await PgStore.open(pgConfig({ env: 'MAILAGENT_TEST_STATE_URL' }));
      assert.unreachable('opened a store on a closed port');
    } catch (err) {
      assert.instance(err, UserError);
      const e = err as UserError;
      assert.is(e.exitCode, 75);
      assert.match(e.message, 'cannot connect to the PostgreSQL state store postgres://agent:***@127.0.0.1:1/state?password=***: ');
      assert.match(e.message, 'ECONNREFUSED');
      for (const secret of ['Secret', 'OtherSecret']) assert.not.match(e.message + (e.hint ?? ''), secret);
    } finally {
      delete process.env.MAILAGENT_TEST_STATE_URL;
    }
  });

  test('a missing database is a temporary failure with the server’s reason', async () => {
    const err = await PgStore.open(pgConfig('postgres://postgres@127.0.0.1:5432/mailagent_no_such_db')).catch((e) => e);
    assert.instance(err, UserError);
    assert.is(err.exitCode, 75);
    assert.match(err.message, 'database "mailagent_no_such_db" does not exist');
  });

  test('a password written inline in the config is refused (exit 78) and not echoed', async () => {
    const err = await PgStore.open(pgConfig('postgres://agent:Hunter2Secret@127.0.0.1:5432/test')).catch((e) => e);
    assert.instance(err, UserError);
    assert.is(err.exitCode, 78);
    assert.match(err.message, 'postgres://agent:***@127.0.0.1:5432/test');
    assert.not.match(err.message, 'Hunter2Secret');
    assert.match(err.hint, '"env"');
  });

  test('idle connections killed by the server do not crash the agent; the next call reconnects', async () => {
    const store = await PgStore.open(pgConfig(PG_URL, extra));
    try {
      await Promise.all([1, 2, 3].map((n) => store.useTotpStep(`user${n}@example.com`, 1))); // several pooled connections, now idle
      // This store's connections only (their last statement names this run's schema): other
      // test runs may be using the server at the same time.
      const { rows } = await adminClient!.query(
        `SELECT pid FROM pg_stat_activity WHERE application_name = 'mailagent-state' AND state = 'idle' AND position($1 IN query) > 0`,
        [extra],
      );
      assert.ok(rows.length >= 1);
      const pids = rows.map((r) => r.pid);
      await adminClient!.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
      // Wait until the server has ended them; their sockets have been closed by then.
      for (let i = 0; i < 100; i++) {
        const left = await adminClient!.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY ($1::int[])', [pids]);
        if (left.rows[0].n === 0) break;
        await pause(50);
      }
      await pause(50);
      assert.is(await store.useTotpStep('user1@example.com', 2), true);
      assert.is(await store.useTotpStep('user1@example.com', 2), false);
    } finally {
      await store.close();
    }
  });

  test('losing the tables under a running store is a temporary failure, not a crash', async () => {
    const store = await PgStore.open(pgConfig(PG_URL, extra));
    try {
      await adminClient!.query(`DROP SCHEMA ${extra} CASCADE`);
      const err = await store.get('k1').catch((e) => e);
      assert.instance(err, UserError);
      assert.is(err.exitCode, 75);
      assert.match(err.message, `the PostgreSQL state store failed ${PG_URL}: relation "${extra}.mailagent_journal" does not exist`);
    } finally {
      await store.close();
    }
  });

  test('mailagent run with state.postgres answers once; the MTA retrying the message gets no second reply', async () => {
    const { dir, cleanup } = tempDir();
    const sink = await startSmtpSink();
    try {
      require('../examples/demo-db.mjs').createDemoDatabase(join(dir, 'demo.db'));
      const raw = exampleConfigObject(dir);
      raw.smtp = { host: '127.0.0.1', port: sink.port };
      raw.state.postgres = { url: { env: 'STATE_URL' }, schema: extra };
      const file = join(dir, 'config.json');
      writeFileSync(file, JSON.stringify(raw));
      const message = mail('db tables', { 'Message-ID': '<pg-run-1@example.com>' });
      const first = await runCli(['run', '--config', file], message, { HOME: dir, STATE_URL: PG_URL });
      assert.is(first.status, 0, first.stderr);
      assert.is(sink.received.length, 1);
      const again = await runCli(['run', '--config', file], message, { HOME: dir, STATE_URL: PG_URL });
      assert.is(again.status, 0, again.stderr);
      assert.is(sink.received.length, 1, 'a message already answered is not answered again');
      const { rows } = await adminClient!.query(`SELECT state FROM ${extra}.mailagent_journal`);
      assert.equal(rows, [{ state: 'replied' }]);

      const down = await runCli(['run', '--config', file], mail('db tables'), { HOME: dir, STATE_URL: 'postgres://agent:Run%2DSecret@127.0.0.1:1/state' });
      assert.is(down.status, 75, 'state store down: the MTA keeps the message and retries');
      assert.match(down.stderr, 'mailagent: cannot connect to the PostgreSQL state store postgres://agent:***@127.0.0.1:1/state');
      assert.not.match(down.stderr, 'Secret');
    } finally {
      await sink.close();
      cleanup();
    }
  });

  return run;
}

/** `mailagent run` from the sources, without blocking this process (its SMTP sink must answer). */
function runCli(args: string[], input: Buffer, env: Record<string, string>): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), ...args], { cwd: ROOT, env: { PATH: process.env.PATH!, ...env } });
    const err: Buffer[] = [];
    child.stdout.resume();
    child.stderr.on('data', (c) => err.push(c));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stderr: Buffer.concat(err).toString() }));
    child.stdin.end(input);
  });
}

// uvu runs suites in the order their run() is called.
const runs = [
  contract(memoryEngine()),
  contract(sqliteEngine()),
  contract(pgEngine()),
  shared(sqliteEngine()),
  shared(pgEngine()),
  concurrency(sqliteEngine()),
  concurrency(pgEngine()),
  earlierSqliteJournals(),
  postgresOnly(),
];
for (const run of runs) run();
