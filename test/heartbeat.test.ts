import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { automaticReason } from '../src/auth/loops';
import { ConfigError, validateConfig } from '../src/config/load';
import type { Config, HeartbeatAlert } from '../src/config/types';
import type { Logger } from '../src/core/log';
import { parseMail } from '../src/mail/parse';
import { isOwnMessageId } from '../src/mail/reply';
import { MemoryServiceStore, SqliteServiceStore, type ServiceStore } from '../src/state/service-store';
import { HEARTBEAT_SPACE, Heartbeat, KEEP_PROBES, probeHeader } from '../src/watch/heartbeat';
import { exampleConfigObject, tempDir } from './support/env';
import { closedPort, startSmtpSink } from './support/smtp-sink';

const { dir, cleanup } = tempDir('mailagent-heartbeat-');
const EVERY_S = 5;
const TIMEOUT_S = 3;
/** A period boundary (10:00:00 UTC) plus a little. */
const T0 = Date.UTC(2026, 10, 25, 10, 0, 0) + 100;

function makeConfig(alert: HeartbeatAlert, tweak?: (raw: Record<string, any>) => void): Config {
  const raw = exampleConfigObject(dir);
  raw.smtp.host = 'smtp.example.net'; // the agent's own server; the fake `send` stands in for it
  raw.heartbeat = { everySeconds: EVERY_S, timeoutSeconds: TIMEOUT_S, alert };
  tweak?.(raw);
  return validateConfig(raw, join(dir, 'config.json'));
}

interface Entry {
  level: keyof Logger;
  message: string;
  fields?: Record<string, unknown>;
}

function recordingLog(): Logger & { entries: Entry[] } {
  const entries: Entry[] = [];
  const at = (level: keyof Logger) => (message: string, fields?: Record<string, unknown>) => void entries.push({ level, message, fields });
  return { entries, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

interface Sent {
  envelope: { from: string; to: string[] };
  raw: Buffer;
}

/** One `watch` process as far as the heartbeat is concerned; `sent` is its SMTP server (the mail is held there until a test delivers it). */
function agent(o: { owner: string; store: ServiceStore; clock: { t: number }; config: () => Config; sent: Sent[]; send?: (raw: Buffer) => Promise<void> }) {
  const log = recordingLog();
  const hb = new Heartbeat({
    config: o.config,
    owner: o.owner,
    log,
    store: async () => o.store,
    send: async (envelope, raw) => {
      if (o.send) await o.send(raw);
      o.sent.push({ envelope, raw });
    },
    now: () => o.clock.t,
  });
  return { hb, log };
}

/** Two agents sharing one SQLite state file (two connections, as two processes would have). */
function twoAgents(name: string, alert: HeartbeatAlert, extra: { send?: (raw: Buffer) => Promise<void> } = {}) {
  const path = join(dir, `${name}.db`);
  const stores = [new SqliteServiceStore(path), new SqliteServiceStore(path)];
  const clock = { t: T0 };
  let config = makeConfig(alert);
  const sent: Sent[] = [];
  const [a, b] = stores.map((store, i) => agent({ owner: `host${i}:${1000 + i}`, store, clock, config: () => config, sent, ...extra }));
  return {
    a,
    b,
    clock,
    sent,
    setConfig: (c: Config) => (config = c),
    tickBoth: () => Promise.all([a.hb.tick(), b.hb.tick()]),
    close: () => Promise.all(stores.map((s) => s.close())),
  };
}

/** A real alert command: appends "<kind>|<leak check>|<message>" to a file, or fails while a flag file exists. */
function alertScript(name: string): { command: string[]; lines: () => string[]; attempts: () => number; breakIt: () => void; fixIt: () => void } {
  const script = join(dir, `${name}.sh`);
  const out = join(dir, `${name}.out`);
  const tries = join(dir, `${name}.tries`);
  const flag = join(dir, `${name}.broken`);
  writeFileSync(
    script,
    `#!/bin/sh
echo x >> "$2"
if [ -e "$3" ]; then echo "alert channel is down" >&2; exit 3; fi
printf '%s|%s|%s\\n' "$MAILAGENT_HEARTBEAT" "\${HB_TEST_LEAK:-clean}" "$MAILAGENT_HEARTBEAT_MESSAGE" >> "$1"
echo "alert sent"
`,
  );
  chmodSync(script, 0o755);
  const read = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);
  return {
    command: [script, out, tries, flag],
    lines: () => read(out),
    attempts: () => read(tries).length,
    breakIt: () => writeFileSync(flag, ''),
    fixIt: () => rmSync(flag, { force: true }),
  };
}

test.after(() => cleanup());

test('config: defaults, the schema, and the cross-checks that keep the alert off the path it reports on', () => {
  const cfg = makeConfig({ command: ['/bin/true'] }, (raw) => delete raw.heartbeat.everySeconds);
  assert.equal(cfg.heartbeat, { everySeconds: 600, timeoutSeconds: TIMEOUT_S, alert: { command: ['/bin/true'] } });
  assert.is(makeConfig({ command: ['/bin/true'] }, (raw) => delete raw.heartbeat).heartbeat, undefined);
  const problems = (tweak: (raw: Record<string, any>) => void): string[] => {
    try {
      makeConfig({ command: ['/bin/true'] }, tweak);
      return [];
    } catch (err) {
      assert.instance(err, ConfigError);
      return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
    }
  };
  const mail = { to: 'oncall@example.org', smtp: { host: 'mail.other.example' } };
  assert.equal(problems((raw) => (raw.heartbeat.alert = { mail })), []);
  assert.equal(problems((raw) => (raw.heartbeat.alert = { mail: { ...mail, to: 'Agent@example.com' } })), ['heartbeat.alert.mail.to: must not be agent.address (the alert would go down the path it reports on)']);
  assert.equal(problems((raw) => (raw.heartbeat.alert = { mail: { ...mail, smtp: { host: 'SMTP.example.net' } } })), [
    'heartbeat.alert.mail.smtp.host: must be another SMTP server than smtp.host (the alert would go down the path it reports on)',
  ]);
  assert.equal(problems((raw) => (raw.heartbeat.alert = { mail: { ...mail, smtp: { host: 'x.example', user: 'u', oauth2: { provider: 'google', clientId: 'c' } } } })), [
    'heartbeat.alert.mail.smtp.oauth2: is not supported for the alert server: use user and password',
  ]);
  assert.equal(problems((raw) => (raw.heartbeat.alert = { command: ['/bin/true'], mail })), ['heartbeat.alert: expected one of { "command": … } or { "mail": … }']);
  assert.equal(problems((raw) => (raw.heartbeat.alert = { command: [] })), ['heartbeat.alert: expected one of { "command": … } or { "mail": … }']);
  assert.equal(problems((raw) => (raw.heartbeat.everySeconds = 0)), ['heartbeat.everySeconds: must be ≥ 1']);
  assert.equal(problems((raw) => delete raw.heartbeat.alert), ['heartbeat.alert: is required']);
});

test('one probe per period across two agents; the probe is our own, authenticated, and the pipeline would drop it', async () => {
  const t = twoAgents('period', { command: ['/bin/true'] });
  try {
    for (let i = 0; i < 4; i++) {
      await t.tickBoth();
      t.clock.t += 1000;
    }
    assert.is(t.sent.length, 1, 'one probe in the first period, whichever agent sent it');
    t.clock.t = T0 + EVERY_S * 1000;
    await t.tickBoth();
    await t.tickBoth();
    assert.is(t.sent.length, 2, 'one more in the next period');

    const config = makeConfig({ command: ['/bin/true'] });
    const { envelope, raw } = t.sent[0];
    assert.equal(envelope, { from: 'agent@example.com', to: ['agent@example.com'] });
    const mail = await parseMail(raw);
    const header = probeHeader(raw)!;
    assert.ok(header, 'the heartbeat header parses (folded or not)');
    assert.equal(mail.from.map((f) => f.address), ['agent@example.com']);
    assert.equal(mail.header('to'), ['agent@example.com']);
    assert.is(mail.subject, `mailagent heartbeat ${header.id}`);
    assert.is(header.t, T0);
    assert.equal(mail.header('auto-submitted'), ['auto-generated']);
    assert.ok(mail.messageId && isOwnMessageId(mail.messageId, 'agent@example.com'), mail.messageId);
    assert.ok(automaticReason(mail, config), 'the pipeline would drop it: accept() must come first');
  } finally {
    await t.close();
  }
});

test('the round trip is measured, whichever agent receives the probe; a duplicate changes nothing', async () => {
  const alert = alertScript('roundtrip');
  const t = twoAgents('roundtrip', { command: alert.command });
  try {
    await t.tickBoth();
    assert.equal(await t.a.hb.status(), { state: 'unknown', lastSentAt: T0 });
    t.clock.t += 1234;
    assert.ok(await t.b.hb.accept(t.sent[0].raw));
    await t.tickBoth();
    const status = await t.a.hb.status();
    assert.is(status.state, 'ok');
    assert.is(status.lastRoundTripMs, 1234);
    assert.is(status.lastArrivedAt, T0 + 1234);
    t.clock.t += 500;
    assert.ok(await t.a.hb.accept(t.sent[0].raw), 'a second copy is still ours: filed away');
    assert.is((await t.b.hb.status()).lastRoundTripMs, 1234);
    assert.equal(alert.lines(), [], 'the first probe back is no news');
  } finally {
    await t.close();
  }
});

test('a held-back probe raises exactly one alert after the timeout, with two agents ticking; the command gets a small environment', async () => {
  const alert = alertScript('held');
  const t = twoAgents('held', { command: alert.command });
  process.env.HB_TEST_LEAK = 'leaked';
  try {
    await t.tickBoth();
    t.clock.t = T0 + TIMEOUT_S * 1000;
    await t.tickBoth();
    assert.equal(alert.lines(), [], 'not before the timeout');
    t.clock.t += 1;
    await t.tickBoth();
    await t.tickBoth();
    // The outage goes on: more probes are sent, held back, overdue.
    for (let period = 1; period <= 4; period++) {
      t.clock.t = T0 + period * EVERY_S * 1000;
      await t.tickBoth();
      t.clock.t += TIMEOUT_S * 1000 + 1;
      await t.tickBoth();
    }
    const lines = alert.lines();
    assert.is(lines.length, 1, lines.join('\n'));
    const [kind, leak, message] = lines[0].split('|');
    assert.is(kind, 'failing');
    assert.is(leak, 'clean', "the agent's environment does not reach the command");
    assert.match(message, `probe ${probeHeader(t.sent[0].raw)!.id} sent at ${new Date(T0).toISOString()}`);
    assert.match(message, 'no probe has come back yet');
    assert.is((await t.b.hb.status()).state, 'failing');
    assert.is(t.sent.length, 5);
    const logged = [...t.a.log.entries, ...t.b.log.entries];
    assert.is(logged.filter((e) => e.message === 'heartbeat failing').length, 1);
    assert.ok(logged.some((e) => e.message === 'heartbeat alert command ran' && e.fields?.stdout === 'alert sent'), 'its output is logged');
  } finally {
    delete process.env.HB_TEST_LEAK;
    await t.close();
  }
});

test('a later probe coming back reports the recovery exactly once; the overdue one arriving late changes nothing more', async () => {
  const alert = alertScript('later');
  const t = twoAgents('later', { command: alert.command });
  try {
    await t.tickBoth();
    t.clock.t = T0 + TIMEOUT_S * 1000 + 1;
    await t.tickBoth();
    t.clock.t = T0 + EVERY_S * 1000;
    await t.tickBoth();
    assert.is(t.sent.length, 2);
    t.clock.t += 700;
    assert.ok(await t.b.hb.accept(t.sent[1].raw));
    for (let i = 0; i < 3; i++) await t.tickBoth();
    assert.equal(alert.lines().map((l) => l.split('|')[0]), ['failing', 'recovered'], 'the lost probe no longer counts once a later one is back');
    t.clock.t += 1000;
    assert.ok(await t.a.hb.accept(t.sent[0].raw), 'the overdue probe, late');
    for (let i = 0; i < 3; i++) await t.tickBoth();
    const lines = alert.lines();
    assert.equal(lines.map((l) => l.split('|')[0]), ['failing', 'recovered'], lines.join('\n'));
    assert.match(lines[1], 'round trip 700 ms');
    assert.match(lines[1], `failing since ${new Date(T0 + TIMEOUT_S * 1000 + 1).toISOString()}`);
    assert.is((await t.a.hb.status()).state, 'ok');
  } finally {
    await t.close();
  }
});

test('the overdue probe itself arriving late is a recovery too', async () => {
  const alert = alertScript('late');
  const t = twoAgents('late', { command: alert.command });
  try {
    await t.tickBoth();
    t.clock.t = T0 + TIMEOUT_S * 1000 + 1;
    await t.tickBoth();
    t.clock.t += 500;
    assert.ok(await t.a.hb.accept(t.sent[0].raw));
    await t.tickBoth();
    await t.tickBoth();
    assert.equal(alert.lines().map((l) => l.split('|')[0]), ['failing', 'recovered']);
    assert.match(alert.lines()[1], `round trip ${TIMEOUT_S * 1000 + 501} ms`);
  } finally {
    await t.close();
  }
});

test('forged probes are not accepted: a wrong MAC, an altered field, another key or mailbox, the header in the body or twice', async () => {
  const store = new MemoryServiceStore();
  let storeUsed = 0;
  const clock = { t: T0 };
  const config = makeConfig({ command: ['/bin/true'] });
  const sent: Sent[] = [];
  const log = recordingLog();
  const hb = new Heartbeat({ config: () => config, owner: 'me', log, store: async () => (storeUsed++, store), send: async (envelope, raw) => void sent.push({ envelope, raw }), now: () => clock.t });
  await hb.tick();
  const genuine = sent[0].raw;
  const text = genuine.toString('latin1');
  const { id, t, mac } = probeHeader(genuine)!;
  const swap = (from: string, to: string) => Buffer.from(text.replace(from, to), 'latin1');
  const flip = (hex: string) => hex.slice(0, -1) + (hex.endsWith('0') ? '1' : '0');

  const other = new Heartbeat({ config: () => config, owner: 'other', log: recordingLog(), store: async () => new MemoryServiceStore(), send: async (envelope, raw) => void sent.push({ envelope, raw }), now: () => clock.t });
  await other.tick();
  const otherKey = sent[1].raw;

  const before = storeUsed;
  assert.not.ok(await hb.accept(Buffer.from('From: someone@example.org\r\nSubject: hello\r\n\r\nuptime\r\n')));
  assert.is(storeUsed, before, 'mail without the header never touches the store');
  const forged: [string, Buffer][] = [
    ['random MAC', swap(mac, 'ab'.repeat(32))],
    ['t altered', swap(`t=${t}`, `t=${t + 1}`)],
    ['id altered', swap(`${id};`, `${flip(id)};`)],
    ['MAC altered', swap(mac, flip(mac))],
    ['signed with another key', otherKey],
    ['header only in the body', Buffer.from(`From: agent@example.com\r\nSubject: x\r\n\r\nX-Mailagent-Heartbeat: ${id}; t=${t}; mac=${mac}\r\n`)],
    ['header twice', Buffer.from(`X-Mailagent-Heartbeat: ${id}; t=${t}; mac=${'ab'.repeat(32)}\r\n${text}`, 'latin1')],
  ];
  for (const [what, raw] of forged) assert.not.ok(await hb.accept(raw), what);
  const elsewhere = new Heartbeat({ config: () => makeConfig({ command: ['/bin/true'] }, (raw) => (raw.agent.address = 'other@example.com')), owner: 'x', log: recordingLog(), store: async () => store, send: async () => undefined, now: () => clock.t });
  assert.not.ok(await elsewhere.accept(genuine), 'a probe of another mailbox (same key)');
  assert.is((await hb.status()).lastArrivedAt, undefined, 'no forgery counted as an arrival');
  assert.ok(log.entries.some((e) => e.level === 'debug' && e.message === 'heartbeat header with a wrong MAC: not a probe'));
  clock.t += 10;
  assert.ok(await hb.accept(genuine), 'the genuine one still is');
  assert.is((await hb.status()).lastRoundTripMs, 10);
});

test('a failing alert command is logged and retried with a growing delay, and delivered once it works; the agent never sees an exception', async () => {
  const alert = alertScript('broken');
  alert.breakIt();
  const t = twoAgents('broken', { command: alert.command });
  try {
    await t.tickBoth();
    t.clock.t = T0 + TIMEOUT_S * 1000 + 1;
    await t.tickBoth();
    assert.is(alert.attempts(), 1);
    assert.is((await t.a.hb.status()).alertPending, 'failing');
    const errors = [...t.a.log.entries, ...t.b.log.entries].filter((e) => e.message === 'heartbeat alert not delivered; tried again later');
    assert.is(errors.length, 1);
    assert.is(errors[0].fields?.retryInMs, 15_000);
    assert.ok([...t.a.log.entries, ...t.b.log.entries].some((e) => e.message === 'heartbeat alert command failed' && e.fields?.stderr === 'alert channel is down'));
    t.clock.t += 14_000;
    await t.tickBoth();
    assert.is(alert.attempts(), 1, 'not before the retry is due');
    t.clock.t += 1000;
    await t.tickBoth();
    assert.is(alert.attempts(), 2);
    alert.fixIt();
    t.clock.t += 29_000;
    await t.tickBoth();
    assert.is(alert.attempts(), 2, 'the second delay is 30 s');
    t.clock.t += 1000;
    await t.tickBoth();
    await t.tickBoth();
    assert.is(alert.attempts(), 3);
    assert.equal(alert.lines().map((l) => l.split('|')[0]), ['failing']);
    assert.is((await t.a.hb.status()).alertPending, undefined);
    t.clock.t += 60_000;
    await t.tickBoth();
    assert.is(alert.attempts(), 3, 'delivered: not sent again');
  } finally {
    await t.close();
  }
});

test('a state store that cannot be opened is logged, not thrown', async () => {
  const log = recordingLog();
  const hb = new Heartbeat({ config: () => makeConfig({ command: ['/bin/true'] }), owner: 'me', log, store: () => Promise.reject(new Error('database is locked')), send: async () => undefined });
  await hb.tick();
  await hb.tick();
  assert.equal(log.entries.map((e) => e.message), ['heartbeat: state store unavailable'], 'said once, not every second');
});

test('mail alerts go through their own SMTP server (password from a secret); a dead one is retried, then the alert and the recovery arrive once each', async () => {
  const sink = await startSmtpSink();
  process.env.HB_TEST_SMTP_PASSWORD = 'alert-pass-123';
  const mailAlert = (port: number): HeartbeatAlert => ({
    mail: { to: 'oncall@example.org', smtp: { host: '127.0.0.1', port, user: 'alerts', password: { env: 'HB_TEST_SMTP_PASSWORD' }, timeoutSeconds: 5 } },
  });
  const t = twoAgents('mail', mailAlert(await closedPort()));
  try {
    await t.tickBoth();
    t.clock.t = T0 + TIMEOUT_S * 1000 + 1;
    await t.tickBoth();
    const failed = [...t.a.log.entries, ...t.b.log.entries].filter((e) => e.message === 'heartbeat alert not delivered; tried again later');
    assert.is(failed.length, 1);
    assert.match(String(failed[0].fields?.err), 'SMTP server 127.0.0.1');
    assert.not.match(JSON.stringify(failed), 'alert-pass-123');
    t.setConfig(makeConfig(mailAlert(sink.port)));
    await t.tickBoth();
    assert.is(sink.received.length, 0, 'the retry waits its delay');
    t.clock.t += 15_000;
    await t.tickBoth();
    await t.tickBoth();
    assert.is(sink.received.length, 1);
    const first = sink.received[0];
    assert.is(first.login, 'alerts:alert-pass-123');
    assert.is(first.from, 'agent@example.com');
    assert.equal(first.to, ['oncall@example.org']);
    const alertMail = await parseMail(first.raw);
    assert.is(alertMail.subject, 'mailagent heartbeat: probe overdue (agent@example.com)');
    assert.equal(alertMail.header('auto-submitted'), ['auto-generated']);
    assert.match(alertMail.body, `probe ${probeHeader(t.sent[0].raw)!.id} sent at`);

    t.clock.t += 200;
    assert.ok(await t.b.hb.accept(t.sent[0].raw));
    await t.tickBoth();
    await t.tickBoth();
    assert.is(sink.received.length, 2);
    assert.is((await parseMail(sink.received[1].raw)).subject, 'mailagent heartbeat: recovered (agent@example.com)');
  } finally {
    delete process.env.HB_TEST_SMTP_PASSWORD;
    await t.close();
    await sink.close();
  }
});

test('a probe the SMTP server refuses is overdue like a lost one, and the alert says why', async () => {
  const alert = alertScript('refused');
  const t = twoAgents('refused', { command: alert.command }, { send: () => Promise.reject(new Error('454 4.7.1 relay access denied')) });
  try {
    await t.tickBoth();
    assert.is(t.sent.length, 0);
    t.clock.t = T0 + TIMEOUT_S * 1000 + 1;
    await t.tickBoth();
    const lines = alert.lines();
    assert.is(lines.length, 1);
    assert.match(lines[0], 'the SMTP server did not take it: 454 4.7.1 relay access denied');
  } finally {
    await t.close();
  }
});

test('a probe sent before the agent started gets the whole timeout from the start (it may wait in the mailbox for the first sync)', async () => {
  const alert = alertScript('restart');
  const store = new MemoryServiceStore();
  const clock = { t: T0 };
  const config = makeConfig({ command: alert.command });
  const sent: Sent[] = [];
  const before = agent({ owner: 'old', store, clock, config: () => config, sent });
  await before.hb.tick(); // then the process stops with its probe in flight
  clock.t = T0 + 3600_000 + 2000; // an hour later, mid-period
  const after = agent({ owner: 'new', store, clock, config: () => config, sent });
  await after.hb.tick();
  assert.is(sent.length, 2, 'the new agent sends its own probe at once');
  clock.t += 1000; // the first sync finds both
  assert.ok(await after.hb.accept(sent[0].raw));
  assert.ok(await after.hb.accept(sent[1].raw));
  clock.t += TIMEOUT_S * 1000;
  await after.hb.tick();
  assert.equal(alert.lines(), []);
  assert.is((await after.hb.status()).state, 'ok');
  // Without the arrival it would have been reported, from the start on.
  const quiet = agent({ owner: 'third', store: new MemoryServiceStore(), clock, config: () => config, sent });
  await quiet.hb.tick();
  clock.t += TIMEOUT_S * 1000 + 1;
  await quiet.hb.tick();
  assert.equal(alert.lines().map((l) => l.split('|')[0]), ['failing']);
});

test(`old probe records are pruned (the last ${KEEP_PROBES} kept); start() ticks on its own and stop() ends it`, async () => {
  const store = new MemoryServiceStore();
  const clock = { t: T0 };
  const config = makeConfig({ command: ['/bin/true'] });
  const sent: Sent[] = [];
  const { hb } = agent({ owner: 'me', store, clock, config: () => config, sent });
  for (let i = 0; i < KEEP_PROBES + 10; i++) {
    await hb.tick();
    clock.t += 100;
    assert.ok(await hb.accept(sent[sent.length - 1].raw));
    clock.t += EVERY_S * 1000 - 100;
  }
  assert.is(sent.length, KEEP_PROBES + 10);
  const probes = (await store.listRecords(HEARTBEAT_SPACE)).filter((r) => r.key.startsWith('probe:'));
  assert.is(probes.length, KEEP_PROBES);
  assert.ok(await hb.accept(sent[0].raw), 'a pruned probe that turns up is still ours, filed away');

  hb.start();
  await new Promise((resolve) => setTimeout(resolve, 100));
  await hb.stop();
  assert.is(sent.length, KEEP_PROBES + 11, 'the timer ticked');
});

test.run();
