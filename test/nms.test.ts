import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Config } from '../src/config/types';
import { processMessage } from '../src/core/pipeline';
import { drainWork } from '../src/services/follow-up';
import { nms } from '../src/services/nms';
import { SAMPLE_SPACE } from '../src/services/nms';
import type { DeviceSample } from '../src/services/nms/devices';
import { closeServiceStores, serviceStoreFor } from '../src/services/stores';
import type { Notice, TimedContext, TimedTask } from '../src/services/types';
import { demoConfig, mail, tempDir, testDeps } from './support/env';
import { decodePng } from './support/png';
import { readReply } from './support/reply';
import { startSnmpd, type SnmpServer } from './support/snmpd';

const { dir, cleanup } = tempDir('mailagent-nms-');
let snmpd: SnmpServer;
let config: Config;
const servers: (HttpServer | TcpServer)[] = [];
const sockets = new Set<Socket>();

const listen = (server: HttpServer | TcpServer) =>
  new Promise<number>((resolve) => {
    servers.push(server);
    server.on('connection', (s: Socket) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
  });

/** A port nothing listens on: bound once, then closed. */
async function closedPort(): Promise<number> {
  const server = createTcpServer();
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
  await new Promise((r) => server.close(r));
  return port;
}

test.before(async () => {
  snmpd = await startSnmpd();
  writeFileSync(join(dir, 'community'), snmpd.community);
  writeFileSync(join(dir, 'write-community'), snmpd.writeCommunity);
  process.env.NMS_TEST_AUTH = snmpd.v3.authKey;
  process.env.NMS_TEST_PRIV = snmpd.v3.privKey;
  const tcpOpen = await listen(createTcpServer((s) => s.end()));
  const httpOk = await listen(createHttpServer((_req, res) => res.end('fine')));
  // Accepts and never answers: the check must give up at its timeout.
  const httpSlow = await listen(createHttpServer(() => undefined));
  const tcpDown = await closedPort();
  config = demoConfig(dir, (raw) => {
    raw.state.path = join(dir, 'state.db');
    raw.security = { evidence: { 'nms:*': 'allowlist' } };
    raw.roles.noc = ['nms:status', 'nms:config', 'nms:stats', 'nms:alerts'];
    raw.users.push({ address: 'noc@example.com', roles: ['noc'] });
    raw.services.nms = {
      timeoutSeconds: 0.5,
      sampleSeconds: 60,
      objects: { testValue: { oid: snmpd.valueOid, type: 'integer' } },
      devices: {
        router: {
          description: 'SNMP v2c',
          snmp: { host: '127.0.0.1', port: snmpd.port, version: '2c', community: { file: 'community' }, writeCommunity: { file: 'write-community' }, retries: 0, writable: ['sysLocation'] },
        },
        switch3: {
          snmp: {
            host: '127.0.0.1', port: snmpd.port, version: '3', retries: 0, writable: ['sysContact', 'sysLocation'],
            user: { name: snmpd.v3.name, level: 'authPriv', authProtocol: 'sha', authKey: { env: 'NMS_TEST_AUTH' }, privProtocol: 'aes', privKey: { env: 'NMS_TEST_PRIV' } },
          },
        },
        web: { tcp: { host: '127.0.0.1', port: tcpOpen }, http: { url: `http://127.0.0.1:${httpOk}/health`, expectStatus: 200 } },
        slowweb: { http: { url: `http://127.0.0.1:${httpSlow}/` } },
        gone: { tcp: { host: '127.0.0.1', port: tcpDown } },
      },
    };
  });
});

const send = async (body: string, from?: string) => readReply(await processMessage(mail(body, from ? { From: from } : {}), testDeps(config)));

test('nms status: every device in parallel, one row per check; the down and the slow one are failed rows, not a failed request', async () => {
  const started = Date.now();
  const reply = await send('nms status', 'noc@example.com');
  const elapsed = Date.now() - started;
  assert.match(reply.subject!, 'processed (1 ok, 0 failed)');
  const text = reply.text!;
  assert.match(text, /^router\s+snmp\s+yes\s+[\d.]+ ms\s+\d.*\s+\d+ up, \d+ down(, \d+ disabled)?\s+answered$/m);
  assert.match(text, /^switch3\s+snmp\s+yes\s+[\d.]+ ms/m);
  assert.match(text, /^web\s+tcp\s+yes\s+[\d.]+ ms\s+connected$/m);
  assert.match(text, /^web\s+http\s+yes\s+[\d.]+ ms\s+HTTP 200 OK$/m);
  assert.match(text, /^slowweb\s+http\s+NO\s+no answer within 0\.5 s$/m);
  assert.match(text, /^gone\s+tcp\s+NO\s+connection refused$/m);
  assert.match(text, 'not reachable: slowweb, gone');
  // In parallel: the slow device's timeout is paid once, not once per device (a bound, not a benchmark).
  assert.ok(elapsed < 5000, `${elapsed} ms`);
});

test('nms config: system fields and the interface table; over SNMPv3 authPriv too', async () => {
  for (const device of ['router', 'switch3']) {
    const reply = await send(`nms config device=${device}`, 'noc@example.com');
      const text = reply.text!;
    assert.match(text, /^sysDescr: +Linux /m);
    assert.match(text, /^sysUpTime: +\S/m);
    assert.match(text, /^ifIndex\s+ifDescr\s+ifOperStatus\s+ifAdminStatus\s+ifSpeed$/m);
    assert.match(text, /^\s*1\s+lo\s+up\s+up\s+/m);
  }
  const noSnmp = await send('nms config device=web');
  assert.match(noSnmp.text!, 'device web has no SNMP access configured (checks: tcp, http)');
});

test('nms get: names, columns (walked) and numeric OIDs; only for roles that grant nms:get', async () => {
  const reply = await send(`nms get device=router oid=sysUpTime\nnms get router ifDescr\nnms get device=switch3 oid=.${snmpd.valueOid}`);
  const text = reply.text!;
  assert.match(text, /^sysUpTime\.0\s+1\.3\.6\.1\.2\.1\.1\.3\.0\s+TimeTicks\s+\d+$/m);
  assert.match(text, /^ifDescr\.1\s+1\.3\.6\.1\.2\.1\.2\.2\.1\.2\.1\s+OctetString\s+lo$/m);
  assert.match(text, new RegExp(`^testValue\\s+${snmpd.valueOid.replace(/\./g, '\\.')}\\s+Integer\\s+-?\\d+$`, 'm'));
  const denied = await send('nms get device=router oid=sysUpTime', 'noc@example.com');
  assert.match(denied.subject!, 'not processed');
  const bad = await send('nms get device=router oid=noSuchThing\nnms get device=__proto__ oid=sysName\nnms get device=constructor oid=sysName');
  assert.match(bad.text!, 'unknown object name "noSuchThing"');
  assert.match(bad.text!, 'device=__proto__: does not match the allowed form');
  assert.match(bad.text!, 'no device named "constructor"');
});

test('nms set: a writable object changes and reads back changed (v2c write community and v3); others are refused before anything runs', async () => {
  const v2 = await send('nms set device=router sysLocation="rack 4, room 2"');
  assert.match(v2.subject!, 'processed (1 ok, 0 failed)');
  assert.match(v2.text!, /^sysLocation\s+.*\s+rack 4, room 2$/m);
  const read = await send('nms get device=switch3 oid=sysLocation.0');
  assert.match(read.text!, /^sysLocation\.0\s+\S+\s+OctetString\s+rack 4, room 2$/m);
  const v3 = await send('nms set device=switch3 sysContact="noc@example.com" sysLocation=cage-9');
  assert.match(v3.text!, /^sysContact\s+.*noc@example\.com$/m);
  assert.match(v3.text!, /^sysLocation\s+rack 4, room 2\s+cage-9$/m);

  const refused = await send('nms set device=router sysContact=x\nnms set device=router sysDescr=x\nnms set device=router');
  assert.match(refused.subject!, 'not processed');
  assert.match(refused.text!, 'unknown argument "sysContact": not writable on device router (writable: sysLocation)');
  assert.match(refused.text!, 'unknown argument "sysDescr": not writable on device router');
  assert.match(refused.text!, 'nothing to set');
  const after = await send('nms get device=router oid=sysContact');
  assert.match(after.text!, /noc@example\.com/, 'nothing of the refused message ran');
});

/** The sampling task of the one scheduler, fired by hand at chosen times. */
async function sampleAt(at: number): Promise<void> {
  const store = await serviceStoreFor(config);
  const list = await nms.timed!(config, store);
  const task = list.tasks.find((t) => t.key === 'nms:sample')!;
  await task.fire({ config, store, now: () => new Date(at), log: () => undefined, scheduledAt: new Date(at) });
}

test('nms stats: body table, CSV rows equal to the stored samples, and a PNG chart of the stated size', async () => {
  const t0 = Date.now() - 10 * 60_000;
  for (let i = 0; i < 5; i++) {
    // Traffic on lo between samples, so its counters move.
    await send('nms status device=router');
    await sampleAt(t0 + i * 60_000);
  }
  const store = await serviceStoreFor(config);
  const stored = await store.listSamples<DeviceSample>(SAMPLE_SPACE, 'router', 0);
  assert.is(stored.length, 5);
  assert.ok(stored.every((s) => s.value.reachable && s.value.interfaces?.['1']?.descr === 'lo'));

  const reply = await send('nms stats device=router interface=lo since=1h', 'noc@example.com');
  assert.match(reply.subject!, 'processed (1 ok, 0 failed)');
  const text = reply.text!;
  assert.match(text, 'device router, 5 samples from');
  assert.match(text, 'availability: 100 % (0 of 5 samples unreachable)');
  assert.match(text, /^ifIndex\s+ifDescr\s+status\s+in avg\s+in max\s+out avg\s+out max\s+in errors\s+out errors$/m);
  assert.match(text, /^\s*1\s+lo\s+up\s+[\d.]+ [kM]?bit\/s/m);

  const csv = reply.attachments.find((a) => a.filename === 'router-if1.csv')!;
  const rows = csv.content.toString('utf8').trim().split('\r\n').map((line) => line.split(','));
  assert.equal(rows[0], ['time', 'reachable', 'response_ms', 'in_bps', 'out_bps', 'in_errors', 'out_errors', 'oper_status']);
  assert.is(rows.length - 1, stored.length, 'one CSV row per stored sample');
  rows.slice(1).forEach((row, i) => {
    const s = stored[i];
    assert.is(row[0], new Date(s.at).toISOString());
    assert.is(row[1], 'true');
    assert.is(Number(row[2]), s.value.responseMs);
    if (i === 0) assert.is(row[3], '', 'no rate before the second sample');
    else {
      const octets = Number(BigInt(s.value.interfaces!['1'].inOctets!) - BigInt(stored[i - 1].value.interfaces!['1'].inOctets!));
      assert.is(Number(row[3]), Math.round((octets * 8) / ((s.at - stored[i - 1].at) / 1000)), `in_bps of row ${i}`);
    }
    assert.is(row[7], 'up');
  });
  const png = reply.attachments.find((a) => a.filename === 'router-if1.png')!;
  assert.is(png.contentType, 'image/png');
  const image = decodePng(png.content);
  assert.equal([image.width, image.height], [640, 320]);

  const none = await send('nms stats device=web since=2m');
  assert.match(none.text!, /no samples of device web since .*: watch stores one every 60 s/);
  const badSpan = await send('nms stats device=router since=forever');
  assert.match(badSpan.text!, 'since=forever: a span like 90m, 24h or 7d is needed');
});

/** Fires the alert task of `name` as the scheduler would, collecting its notices. */
async function checkAlert(name: string, at: number, notices: Notice[]): Promise<void> {
  const store = await serviceStoreFor(config);
  const list = await nms.timed!(config, store);
  const task: TimedTask | undefined = list.tasks.find((t) => t.key === `nms.alert:${name}`);
  assert.ok(task, `task of alert ${name}`);
  const ctx: TimedContext = { config, store, now: () => new Date(at), log: () => undefined, scheduledAt: new Date(at), notify: async (_key, notice) => void notices.push(notice) };
  await task!.fire(ctx);
}

test('alert rules: set by mail, one alert mail when the condition becomes true, none while it stays, one recovery mail; cleared by mail', async () => {
  snmpd.setValue(1);
  const set = await send('nms alert set name=value-high device=switch3 when="testValue >= 5 or not reachable" every=10s then="mail oncall@example.com"');
  assert.match(set.text!, 'alert value-high set: on switch3, when testValue >= 5 or not reachable, checked every 10 s by watch; then mail oncall@example.com');
  const notices: Notice[] = [];
  let at = Date.now();
  await checkAlert('value-high', (at += 10_000), notices);
  assert.is(notices.length, 0, 'a new rule that is fine says nothing');
  snmpd.setValue(7);
  await checkAlert('value-high', (at += 10_000), notices);
  await checkAlert('value-high', (at += 10_000), notices);
  assert.is(notices.length, 1, 'one alert while it stays true');
  assert.is(notices[0].to, 'oncall@example.com');
  assert.is(notices[0].subject, 'alert value-high: firing');
  assert.ok(notices[0].outcome.ok && notices[0].outcome.result.kind === 'text' && notices[0].outcome.result.text.includes('testValue = 7'));
  snmpd.setValue(2);
  await checkAlert('value-high', (at += 10_000), notices);
  await checkAlert('value-high', (at += 10_000), notices);
  assert.equal(notices.map((n) => n.subject), ['alert value-high: firing', 'alert value-high: recovered']);

  const listed = await send('nms alerts', 'noc@example.com');
  assert.match(listed.text!, /^value-high\s+switch3\s+testValue >= 5 or not reachable\s+10 s\s+mail oncall@example\.com\s+ok\s+/m);
  const cleared = await send('nms alert clear name=value-high\nnms alert clear name=value-high');
  assert.match(cleared.text!, 'alert value-high is cleared');
  assert.match(cleared.text!, 'no alert rule named "value-high" (nothing changed)');
});

test('a flapping rule is held: one mail says so, then silence until it settles', async () => {
  snmpd.setValue(1);
  await send('nms alert set name=flappy device=router when="testValue > 3" every=10s then="mail oncall@example.com"');
  const notices: Notice[] = [];
  let at = Date.now() + 3_600_000;
  await checkAlert('flappy', (at += 10_000), notices);
  for (let i = 0; i < 6; i++) {
    snmpd.setValue(i % 2 ? 1 : 9);
    await checkAlert('flappy', (at += 10_000), notices);
  }
  assert.equal(notices.map((n) => n.subject), ['alert flappy: firing', 'alert flappy: recovered', 'alert flappy: firing', 'alert flappy: flapping']);
  // An hour later the changes have aged out: it is released and says where it stands, once.
  snmpd.setValue(9);
  await checkAlert('flappy', (at += 3_700_000), notices);
  await checkAlert('flappy', (at += 10_000), notices);
  assert.equal(notices.slice(4).map((n) => n.subject), ['alert flappy: firing']);
  await send('nms alert clear name=flappy');
});

test('an alert whose action is a job runs it once through the jobs service (in its run log) and tells whoever set the rule', async () => {
  snmpd.setValue(1);
  await send('nms alert set name=restart device=router when="testValue > 3" every=10s then="job uptime"');
  const notices: Notice[] = [];
  let at = Date.now() + 7_200_000;
  await checkAlert('restart', (at += 10_000), notices);
  snmpd.setValue(8);
  await checkAlert('restart', (at += 10_000), notices);
  await checkAlert('restart', (at += 10_000), notices);
  await drainWork(10_000);
  assert.equal(notices.map((n) => [n.to, n.subject]), [['ops@example.com', 'alert restart: firing']]);
  const text = notices[0].outcome.ok && notices[0].outcome.result.kind === 'text' ? notices[0].outcome.result.text : '';
  const runId = /started run (\d+)/.exec(text)?.[1];
  assert.ok(runId, text);
  const log = await send(`jobs log run=${runId}`);
  assert.match(log.text!, `run ${runId} of job uptime, by alert restart`);
  assert.match(log.text!, 'result: exit 0');
  await send('nms alert clear name=restart');
});

test('help names every nms action and the devices', async () => {
  const help = await send('help nms');
  for (const action of ['status', 'config', 'get', 'set', 'stats', 'alerts', 'alert']) assert.match(help.text!, `nms ${action}`);
  assert.match(help.text!, /router - SNMP v2c \(snmp; writable: sysLocation\)/);
});

test('bad alert rules are refused with the position of the problem', async () => {
  const reply = await send(
    'nms alert set name=a device=router when="ifOperStatus.2 !! up" then="mail x@example.com"\n' +
      'nms alert set name=b device=web when="ifOperStatus.2 != up" then="mail x@example.com"\n' +
      'nms alert set name=c device=router when="ifOperStatus.2 != sideways" then="mail x@example.com"\n' +
      'nms alert set name=d device=router when="reachable" every=1s then="page me"\n' +
      'nms alert set name=e device=web when="http.status != 200" then="job nosuch"',
  );
  const text = reply.text!;
  assert.match(reply.subject!, 'not processed');
  assert.match(text, /when="ifOperStatus\.2 !! up": .*column 16/);
  assert.match(text, '"ifOperStatus.2" needs SNMP, which device web does not have');
  assert.match(text, /sideways/);
  assert.match(text, 'every=1s: between 10s and 1d');
  assert.match(text, 'then="page me": expected "mail <address>" or "job <name>"');
  assert.match(text, 'no job named "nosuch"');
});

test('secrets never reach a reply: a wrong community is a timeout without the community', async () => {
  const wrong = demoConfig(dir, (raw) => {
    raw.security = { evidence: { 'nms:*': 'allowlist' } };
    raw.services.nms = { timeoutSeconds: 0.3, devices: { r: { snmp: { host: '127.0.0.1', port: snmpd.port, version: '2c', community: { env: 'NMS_WRONG_COMMUNITY' }, retries: 0 } } } };
  });
  process.env.NMS_WRONG_COMMUNITY = 'very-secret-community';
  const reply = await readReply(await processMessage(mail('nms status\nnms config device=r'), testDeps(wrong)));
  assert.match(reply.text!, /no answer from 127\.0\.0\.1:\d+ within 0\.3 s/);
  assert.not.match(reply.text!, 'very-secret-community');
  const raw = (await simpleParser(Buffer.from(reply.text!))).text ?? '';
  assert.not.match(raw, snmpd.community);
});

test.after(async () => {
  await drainWork(5000);
  await closeServiceStores();
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await snmpd?.stop();
  cleanup();
});
test.run();
