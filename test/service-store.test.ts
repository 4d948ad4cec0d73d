import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Config } from '../src/config/types';
import { closeServiceStores } from '../src/services/jobs';
import { startScheduler } from '../src/services/scheduler';
import type { Notice, Service, TimedContext } from '../src/services/types';
import { MemoryServiceStore, openServiceStore, type ServiceStore } from '../src/state/service-store';
import { demoConfig, tempDir } from './support/env';
import { PG_URL, dropSchema, postgresReachable } from './support/pg';

const { dir, cleanup } = tempDir('mailagent-sstore-');
const PG_SCHEMA = `mailagent_sstore_${process.pid}_${Date.now().toString(36)}`;

const config = (name: string, pg = false): Config =>
  demoConfig(dir, (raw) => {
    raw.state.path = join(dir, `${name}.db`);
    if (pg) raw.state.postgres = { url: PG_URL, schema: PG_SCHEMA };
  });

/** The same contract for every store: records with compare-and-set, time series with pruning. */
async function contract(open: () => Promise<ServiceStore>): Promise<void> {
  const a = await open();
  const b = await open();
  try {
    assert.is(await a.getRecord('nms.alert', 'uplink'), undefined);
    assert.ok(await a.putRecord('nms.alert', 'uplink', { when: 'x', state: 'ok' }, 0), 'created when absent');
    assert.not.ok(await b.putRecord('nms.alert', 'uplink', { when: 'y' }, 0), 'a second create loses');
    const first = await b.getRecord<{ when: string; state: string }>('nms.alert', 'uplink');
    assert.equal(first?.value, { when: 'x', state: 'ok' });
    assert.is(first?.version, 1);
    // Two writers read version 1; one update wins, the other learns it lost.
    const results = await Promise.all([a.putRecord('nms.alert', 'uplink', { state: 'firing' }, 1), b.putRecord('nms.alert', 'uplink', { state: 'ok2' }, 1)]);
    assert.equal(results.filter(Boolean).length, 1);
    const second = await a.getRecord<{ state: string }>('nms.alert', 'uplink');
    assert.is(second?.version, 2);
    assert.ok(['firing', 'ok2'].includes(second!.value.state));
    assert.ok(await a.putRecord('nms.alert', 'uplink', { state: 'forced' }), 'an unconditional write always lands');
    assert.is((await b.getRecord('nms.alert', 'uplink'))?.version, 3);
    await a.putRecord('nms.alert', 'a-first', { n: 1 });
    await a.putRecord('other.space', 'uplink', { n: 2 });
    assert.equal((await b.listRecords('nms.alert')).map((r) => r.key), ['a-first', 'uplink'], 'one space, ordered by key');
    assert.ok(await b.deleteRecord('nms.alert', 'a-first'));
    assert.not.ok(await b.deleteRecord('nms.alert', 'a-first'));
    assert.is((await a.getRecord('other.space', 'uplink'))?.version, 1, 'spaces are apart');
    assert.is(await a.getRecord('nms.alert', '__proto__'), undefined);

    for (const at of [3000, 1000, 2000]) await a.appendSample('nms.sample', 'router', at, { up: at !== 2000, counters: { '2': [at, '18446744073709551615'] } });
    await a.appendSample('nms.sample', 'switch', 1500, { up: true });
    assert.equal(
      (await b.listSamples<{ up: boolean }>('nms.sample', 'router', 1500)).map((s) => [s.at, s.value.up]),
      [[2000, false], [3000, true]],
      'oldest first, from `since` on, one key',
    );
    assert.equal((await b.listSamples('nms.sample', 'router', 0))[0].value, { up: true, counters: { '2': [1000, '18446744073709551615'] } });
    assert.is(await a.pruneSamples('nms.sample', 2000), 2, 'router 1000 and switch 1500');
    assert.equal((await b.listSamples('nms.sample', 'router', 0)).map((s) => s.at), [2000, 3000]);
  } finally {
    await a.close();
    await b.close();
  }
}

test('records and samples: memory store', async () => {
  const shared = new MemoryServiceStore();
  await contract(async () => Object.assign(Object.create(shared), { close: async () => undefined }));
});

test('records and samples: SQLite state file, two connections', async () => {
  const cfg = config('sqlite');
  await contract(() => openServiceStore(cfg));
});

test('records and samples: PostgreSQL state server, two connections', async () => {
  if (!(await postgresReachable())) {
    if (process.env.CI) assert.unreachable(`PostgreSQL at ${PG_URL} is required in CI`);
    console.log('  (PostgreSQL unreachable: skipped)');
    return;
  }
  const cfg = config('pg', true);
  await contract(() => openServiceStore(cfg));
});

/** A service with one periodic task and one cron task, recording each firing and its notice. */
function probeService(fired: { owner: string; key: string; at: number }[]): (owner: string) => Service {
  return (owner) => ({
    name: 'jobs', // a configured section is what turns a service's timed work on
    summary: 'test',
    actions: {},
    checkConfig: () => [],
    probe: async () => [],
    timed: async () => ({
      tasks: [
        {
          key: 'probe:every',
          title: 'probe every',
          when: { everyMs: 1000 },
          quietMisses: true,
          fire: async (ctx: TimedContext) => {
            fired.push({ owner, key: 'every', at: ctx.scheduledAt.getTime() });
            await ctx.notify?.(`probe:every#${ctx.scheduledAt.getTime()}`, { to: 'ops@example.com', subject: 'tick', command: 'probe', outcome: { ok: true, result: { kind: 'text', text: 'ok' } } });
          },
        },
      ],
      ignored: [{ key: 'probe:gone', message: 'probe gone ignored' }],
    }),
  });
}

test('the one scheduler: periodic tasks of any service fire once per period across two agents, with one notice each', async () => {
  const cfg = demoConfig(dir, (raw) => {
    raw.state.path = join(dir, 'sched.db');
    raw.services.jobs = { jobs: { noop: { command: ['/bin/true'] } } };
  });
  const fired: { owner: string; key: string; at: number }[] = [];
  const notices: { key: string; notice: Notice }[] = [];
  const logs: string[] = [];
  let clock = Date.parse('2026-12-01T00:00:00.500Z');
  const service = probeService(fired);
  const schedulers = ['a', 'b'].map((owner) =>
    startScheduler({
      config: cfg,
      owner,
      now: () => new Date(clock),
      log: (level, message) => logs.push(`${owner} ${level} ${message}`),
      intervalMs: 10,
      services: { jobs: service(owner) },
      notify: async (key, notice) => void notices.push({ key, notice }),
    }),
  );
  try {
    for (let i = 0; i < 5; i++) {
      clock += 1000;
      await new Promise((r) => setTimeout(r, 120));
    }
    // A pause of an hour: one firing, no warning (quiet misses).
    clock += 3_600_000;
    await new Promise((r) => setTimeout(r, 120));
  } finally {
    await Promise.all(schedulers.map((s) => s.stop()));
  }
  const times = fired.map((f) => f.at);
  assert.is(new Set(times).size, times.length, `no period fired twice: ${JSON.stringify(fired)}`);
  assert.ok(times.length >= 5 && times.length <= 7, `one firing per period: ${JSON.stringify(fired)}`);
  for (const t of times) assert.is(t % 1000, 0, 'periods are aligned to the epoch');
  assert.is(notices.length, fired.length, 'one notice per firing');
  assert.is(logs.filter((l) => l.includes('probe gone ignored')).length, 2, 'an ignored entry is logged once per agent');
  assert.not.ok(logs.some((l) => l.includes('missed')), logs.join('\n'));
});

test.after(async () => {
  await closeServiceStores();
  await dropSchema(PG_SCHEMA);
  cleanup();
  assert.not.ok(existsSync(dir));
});
test.run();
