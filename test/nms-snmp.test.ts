import { execFileSync } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { IF_OPER_STATUS, nameOf, resolveName, type ResolvedName } from '../src/services/nms/mib';
import { openSnmp, SnmpError, type SnmpSession, type SnmpTarget, type SnmpV3Credentials, type Varbind } from '../src/services/nms/snmp';
import { freeUdpPort, startSnmpd, type SnmpServer } from './support/snmpd';

// The SNMP client against a private real snmpd on loopback: v2c and v3 (authPriv) GET, walks of
// the interface tables, 64-bit counters, SET of writable and read-only objects, a value that
// changes on the device, and the errors a user sees: timeouts, refused credentials, read-only
// objects, never with a community or key in them. Plus the name table (resolveName, nameOf).

let agent: SnmpServer;
const sessions: SnmpSession[] = [];
/** Every error message the tests provoked, checked at the end for secrets. */
const messages: string[] = [];
const WRONG_AUTH = 'wrong-auth-key-123';
const WRONG_PRIV = 'wrong-priv-key-456';

test.before(async () => {
  agent = await startSnmpd();
});

test.after(async () => {
  for (const s of sessions) s.close();
  await agent?.stop();
});

function v2c(community = agent.community, more: Partial<SnmpTarget> = {}): SnmpSession {
  const s = openSnmp({ host: agent.host, port: agent.port, version: '2c', community, timeoutMs: 2000, retries: 0, ...more });
  sessions.push(s);
  return s;
}

function v3(keys: { authKey?: string; privKey?: string; name?: string } = {}, more: Partial<SnmpTarget> = {}): SnmpSession {
  const s = openSnmp({
    host: agent.host, port: agent.port, version: '3', timeoutMs: 2000, retries: 0,
    user: { name: keys.name ?? agent.v3.name, level: 'authPriv', authProtocol: 'sha', authKey: keys.authKey ?? agent.v3.authKey, privProtocol: 'aes', privKey: keys.privKey ?? agent.v3.privKey },
    ...more,
  });
  sessions.push(s);
  return s;
}

/** The error a promise rejects with (failing the test when it resolves); its message is kept for the secrets check. */
async function failure(p: Promise<unknown>): Promise<SnmpError> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, SnmpError);
    const e = err as SnmpError;
    assert.not.match(e.message, /\n/, 'one line');
    messages.push(e.message);
    return e;
  }
  assert.unreachable('expected an error');
  throw new Error('unreachable');
}

function resolved(ref: string, extra?: Record<string, { oid: string }>): ResolvedName {
  const r = resolveName(ref, extra);
  if (typeof r === 'string') assert.unreachable(`${ref}: ${r}`);
  return r as ResolvedName;
}

const oidOf = (ref: string) => resolved(ref).oid;

/** Rows of a walk by column name: { ifDescr: { '1': 'lo', ... }, ... }. */
function columns(rows: Varbind[]): Record<string, Record<string, Varbind>> {
  const out: Record<string, Record<string, Varbind>> = {};
  for (const vb of rows) {
    const [column, ...index] = nameOf(vb.oid).split('.');
    (out[column] ??= {})[index.join('.')] = vb;
  }
  return out;
}

test('v2c get: sysDescr, sysUpTime, sysObjectID; missing objects come back as noSuch*', async () => {
  const s = v2c();
  const [descr, upTime, objectId, none, noInstance] = await s.get([oidOf('sysDescr'), oidOf('sysUpTime'), oidOf('sysObjectID'), '1.3.6.1.2.1.1.99.0', '.1.3.6.1.2.1.1.1.5']);
  assert.equal({ oid: descr.oid, type: descr.type }, { oid: '1.3.6.1.2.1.1.1.0', type: 'OctetString' });
  assert.type(descr.value, 'string');
  assert.match(descr.value as string, /Linux/);
  assert.is(upTime.type, 'TimeTicks');
  assert.type(upTime.value, 'number');
  assert.ok((upTime.value as number) >= 0);
  assert.equal(objectId, { oid: '1.3.6.1.2.1.1.2.0', type: 'ObjectIdentifier', value: '1.3.6.1.4.1.8072.3.2.10' });
  assert.equal(none, { oid: '1.3.6.1.2.1.1.99.0', type: 'noSuchObject', value: null });
  assert.equal(noInstance, { oid: '1.3.6.1.2.1.1.1.5', type: 'noSuchInstance', value: null });
  // TimeTicks are hundredths of a second: 300 ms later the agent's clock has moved by about 30.
  await new Promise((r) => setTimeout(r, 300));
  const [later] = await s.get([oidOf('sysUpTime.0')]);
  const moved = (later.value as number) - (upTime.value as number);
  assert.ok(moved >= 20 && moved <= 1000, `sysUpTime moved by ${moved}`);
});

test('walk ifTable: one row per interface, lo among them, only the subtree, maxRows honoured', async () => {
  const s = v2c();
  const base = oidOf('ifTable');
  const rows = await s.walk(base);
  assert.ok(rows.length > 0);
  assert.ok(rows.every((vb) => vb.oid.startsWith(`${base}.`)), 'nothing outside ifTable');
  const table = columns(rows);
  const descr = Object.values(table.ifDescr ?? {}).map((vb) => vb.value);
  assert.ok(descr.includes('lo'), `ifDescr: ${descr.join(', ')}`);
  const lo = Object.keys(table.ifDescr).find((i) => table.ifDescr[i].value === 'lo')!;
  assert.equal(table.ifIndex[lo].value, Number(lo));
  assert.is(table.ifType[lo].value, 24, 'softwareLoopback');
  assert.is(IF_OPER_STATUS[table.ifOperStatus[lo].value as number], 'up');
  // Hex for MAC addresses (lo has none: empty), whatever the bytes look like.
  for (const vb of Object.values(table.ifPhysAddress)) assert.match(vb.value as string, /^([0-9a-f]{2}(:[0-9a-f]{2})*)?$/);
  assert.is(table.ifPhysAddress[lo].value, '');
  assert.is(Object.keys(table.ifDescr).length, Object.keys(table.ifOperStatus).length);

  const few = await s.walk(base, 5);
  assert.equal(few.map((vb) => vb.oid), rows.slice(0, 5).map((vb) => vb.oid));
  // A column alone, and an instance (nothing below it: its own value, like snmpwalk).
  const opStatus = await s.walk(oidOf('ifOperStatus'));
  assert.is(opStatus.length, Object.keys(table.ifOperStatus).length);
  const single = await s.walk(oidOf('sysDescr'));
  assert.equal(single.map((vb) => nameOf(vb.oid)), ['sysDescr.0']);
  assert.equal(await s.walk('1.3.6.1.2.1.1.77'), []);
});

test('Counter64 (ifHCInOctets) comes back as a bigint, consistent with the 32-bit counter', async () => {
  const s = v2c();
  const descr = await s.walk(oidOf('ifDescr'));
  const lo = nameOf(descr.find((vb) => vb.value === 'lo')!.oid).split('.')[1];
  // One request, so both come from the same snapshot: ifInOctets is ifHCInOctets modulo 2^32.
  const [hc, low] = await s.get([oidOf(`ifHCInOctets.${lo}`), oidOf(`ifInOctets.${lo}`)]);
  assert.is(hc.type, 'Counter64');
  assert.ok(typeof hc.value === 'bigint', `${typeof hc.value}`);
  assert.is(low.type, 'Counter32');
  assert.ok((hc.value as bigint) > 0n, 'our own requests travel over lo');
  assert.is((hc.value as bigint) % 2n ** 32n, BigInt(low.value as number));
  const all = await s.walk(oidOf('ifHCOutOctets'));
  assert.ok(all.length > 0 && all.every((vb) => vb.type === 'Counter64' && typeof vb.value === 'bigint'));
});

test('OctetString: UTF-8 text as text, binary bytes as hex', async () => {
  const [binary, text, mac] = await v2c().get([agent.binaryOid, agent.textOid, agent.macOid]);
  assert.equal(binary, { oid: agent.binaryOid, type: 'OctetString', value: agent.binaryHex });
  assert.equal(text, { oid: agent.textOid, type: 'OctetString', value: agent.text });
  // Valid UTF-8, but control characters: not text.
  assert.equal(mac, { oid: agent.macOid, type: 'OctetString', value: agent.macHex });
});

test('v3 authPriv (SHA + AES) get', async () => {
  const [name, descr] = await v3().get([oidOf('sysName'), oidOf('sysDescr')]);
  const [viaV2c] = await v2c().get([oidOf('sysDescr')]);
  assert.is(name.type, 'OctetString');
  assert.ok(typeof name.value === 'string' && name.value.length > 0);
  assert.is(descr.value, viaV2c.value);
  const rows = await v3().walk(oidOf('ifXTable'), 50);
  assert.ok(rows.some((vb) => nameOf(vb.oid).startsWith('ifName.') && vb.value === 'lo'));
});

test('v3 refused: wrong auth key, unknown user, security level not allowed, wrong privacy key', async () => {
  const started = Date.now();
  const auth = await failure(v3({ authKey: WRONG_AUTH }).get([oidOf('sysName')]));
  assert.is(auth.message, `SNMPv3 authentication failed at 127.0.0.1:${agent.port} for user "${agent.v3.name}": wrong authentication key or protocol`);
  assert.is(auth.code, 'auth');
  assert.ok(Date.now() - started < 1500, 'a report, not a timeout');
  const unknown = await failure(v3({ name: 'nobody' }).get([oidOf('sysName')]));
  assert.is(unknown.message, `127.0.0.1:${agent.port} does not know the SNMPv3 user "nobody"`);
  // rwuser ... authPriv: the same user without privacy is not let in.
  const level = openSnmp({ host: agent.host, port: agent.port, version: '3', timeoutMs: 2000, retries: 0, user: { ...agent.v3, level: 'authNoPriv' } });
  sessions.push(level);
  const denied = await failure(level.get([oidOf('sysName')]));
  assert.match(denied.message, `SNMPv3 user "${agent.v3.name}" at level authNoPriv may not read sysName on 127.0.0.1:${agent.port}`);
  assert.is(denied.code, 'denied');
  // snmpd cannot decrypt such a request, so it cannot answer it: a timeout that names credentials.
  const priv = await failure(v3({ privKey: WRONG_PRIV }, { timeoutMs: 500 }).get([oidOf('sysName')]));
  assert.is(priv.message, `no answer from 127.0.0.1:${agent.port} within 0.5 s (down, or wrong community/credentials)`);
  assert.is(priv.code, 'timeout');
});

test('wrong community: a timeout that says why it may be', async () => {
  const started = Date.now();
  const err = await failure(v2c('not-the-community', { timeoutMs: 500, retries: 0 }).get([oidOf('sysDescr')]));
  const took = Date.now() - started;
  assert.is(err.message, `no answer from 127.0.0.1:${agent.port} within 0.5 s (down, or wrong community/credentials)`);
  assert.is(err.code, 'timeout');
  assert.ok(took >= 450 && took < 5000, `took ${took} ms`);
  const retried = await failure(v2c('not-the-community', { timeoutMs: 300, retries: 1 }).walk(oidOf('ifTable')));
  assert.match(retried.message, /^no answer from 127\.0\.0\.1:\d+ within 0\.6 s \(down, or wrong community\/credentials\)$/);
});

test('set sysLocation and sysContact via v3 and via the read-write community, read back', async () => {
  const ro = v2c();
  const [location, contact] = await ro.get([oidOf('sysLocation'), oidOf('sysContact')]);
  // snmpd's defaults (nothing set in its config, so they are writable).
  assert.ok(typeof location.value === 'string' && location.value.length > 0);
  assert.ok(typeof contact.value === 'string' && contact.value.length > 0);

  const stamp = Date.now().toString(36);
  await v3().set(oidOf('sysLocation'), 'string', `Rack ${stamp}, Zürich`);
  assert.is((await ro.get([oidOf('sysLocation')]))[0].value, `Rack ${stamp}, Zürich`);
  await v2c(agent.writeCommunity).set(oidOf('sysLocation'), 'string', `Room ${stamp}`);
  assert.is((await v3().get([oidOf('sysLocation')]))[0].value, `Room ${stamp}`);
  await v2c(agent.writeCommunity).set('.1.3.6.1.2.1.1.4.0', 'string', `ops-${stamp}@example.com`);
  assert.is((await ro.get([oidOf('sysContact')]))[0].value, `ops-${stamp}@example.com`);

  // The read-only community may not, and the wrong type is refused: nothing changes.
  const denied = await failure(ro.set(oidOf('sysLocation'), 'string', 'nope'));
  assert.is(denied.message, 'sysLocation is not writable on the device (or the community has no write access to it)');
  const wrongType = await failure(v3().set(oidOf('sysLocation'), 'integer', 5));
  assert.is(wrongType.message, 'sysLocation does not take an integer (wrongType)');
  assert.is(wrongType.code, 'bad-value');
  const tooLong = await failure(v3().set(oidOf('sysLocation'), 'string', 'x'.repeat(300)));
  assert.is(tooLong.message, 'the value is too long or too short for sysLocation (wrongLength)');
  const notInteger = await failure(v3().set(oidOf('sysLocation'), 'integer', 'five'));
  assert.match(notInteger.message, /"five" is not a whole number/);
  assert.is((await ro.get([oidOf('sysLocation')]))[0].value, `Room ${stamp}`);
});

test('set on a read-only object: "not writable on the device"', async () => {
  for (const s of [v3(), v2c(agent.writeCommunity)]) {
    const err = await failure(s.set(oidOf('sysDescr'), 'string', 'hacked'));
    assert.is(err.message, 'sysDescr is not writable on the device');
    assert.is(err.code, 'not-writable');
  }
  const cell = await failure(v3().set(oidOf('ifDescr.1'), 'string', 'x'));
  assert.is(cell.message, 'ifDescr.1 is not writable on the device');
  const passValue = await failure(v3().set(agent.valueOid, 'integer', 3));
  assert.is(passValue.message, `${agent.valueOid} is not writable on the device`);
  assert.match((await v2c().get([oidOf('sysDescr')]))[0].value as string, /Linux/);
});

test('a value the device changes: the pass OID follows setValue()', async () => {
  const s = v2c();
  for (const n of [7, -3, 2147483647, 0]) {
    agent.setValue(n);
    assert.equal(await s.get([agent.valueOid]), [{ oid: agent.valueOid, type: 'Integer', value: n }]);
  }
  agent.setValue(41);
  const rows = await v3().walk('1.3.6.1.4.1.8072.9999');
  assert.equal(rows.map((vb) => [vb.oid, vb.value]), [[agent.valueOid, 41], [agent.binaryOid, agent.binaryHex], [agent.textOid, agent.text], [agent.macOid, agent.macHex]]);
});

test('nothing listening, and an agent that was stopped: timeouts', async () => {
  const port = await freeUdpPort();
  const absent = openSnmp({ host: '127.0.0.1', port, version: '2c', community: 'x-community', timeoutMs: 500, retries: 0 });
  sessions.push(absent);
  const err = await failure(absent.get([oidOf('sysUpTime')]));
  assert.is(err.message, `no answer from 127.0.0.1:${port} within 0.5 s (down, or wrong community/credentials)`);

  const other = await startSnmpd();
  let stopped = false;
  try {
    const s = openSnmp({ host: other.host, port: other.port, version: '2c', community: other.community, timeoutMs: 500, retries: 0 });
    sessions.push(s);
    assert.is((await s.get([oidOf('sysUpTime')]))[0].type, 'TimeTicks');
    await s.get([other.valueOid]); // starts its pass_persist script, which stop() must end too
    assert.ok(other.pids().length >= 2, `pids ${other.pids()}`);
    await other.stop();
    stopped = true;
    assert.not.ok(existsSync(other.dir), 'temp dir removed');
    assert.equal(other.pids(), []);
    const gone = await failure(s.get([oidOf('sysUpTime')]));
    assert.is(gone.message, `no answer from 127.0.0.1:${other.port} within 0.5 s (down, or wrong community/credentials)`);
  } finally {
    if (!stopped) await other.stop();
  }
});

test('close(): pending requests end at once, later ones fail, closing twice is fine', async () => {
  const port = await freeUdpPort();
  const s = openSnmp({ host: '127.0.0.1', port, version: '2c', community: 'x-community', timeoutMs: 10000, retries: 0 });
  const started = Date.now();
  const pending = s.get([oidOf('sysUpTime')]);
  setTimeout(() => s.close(), 50);
  const err = await failure(pending);
  assert.is(err.code, 'closed');
  assert.ok(Date.now() - started < 2000, 'not the 10 s timeout');
  s.close();
  const later = await failure(s.walk(oidOf('ifTable')));
  assert.is(later.message, `the SNMP session to 127.0.0.1:${port} is closed`);
});

test('bad targets and OIDs are refused before anything is sent', async () => {
  const base = { host: '127.0.0.1', port: agent.port, timeoutMs: 1000, retries: 0 } as const;
  const refused = (t: SnmpTarget): string => {
    try {
      openSnmp(t).close();
    } catch (err) {
      assert.instance(err, SnmpError);
      messages.push((err as Error).message);
      return (err as Error).message;
    }
    assert.unreachable('accepted');
    return '';
  };
  assert.match(refused({ ...base, version: '2c' }), 'SNMP v2c needs a community');
  assert.match(refused({ ...base, version: '3', user: { name: 'u', level: 'authPriv', authKey: 'short', privKey: 'long-enough-key' } }), 'authentication key of at least 8 characters');
  assert.match(refused({ ...base, version: '3', user: { name: 'u', level: 'authPriv', authKey: 'long-enough-key', privKey: '' } }), 'privacy key of at least 8 characters');
  assert.match(refused({ ...base, port: 70000, version: '2c', community: 'c-secret-1' }), 'port must be a number from 1 to 65535');
  const sha1 = { name: 'u', level: 'authNoPriv', authProtocol: 'sha1', authKey: 'long-enough-key' } as unknown as SnmpV3Credentials;
  assert.match(refused({ ...base, version: '3', user: sha1 }), 'unknown authentication protocol "sha1" (use md5, sha, sha224, sha256, sha384, sha512)');
  const s = v2c();
  assert.match((await failure(s.get(['sysDescr']))).message, 'is not a numeric OID');
  assert.match((await failure(s.get(['1.3.6.1.2.1.1.1.0', '3.1.2']))).message, 'cannot exist');
  assert.match((await failure(s.walk(oidOf('ifTable'), 0))).message, 'maxRows');
});

test('resolveName and nameOf', () => {
  assert.equal(resolved('ifOperStatus.2'), { oid: '1.3.6.1.2.1.2.2.1.8.2', name: 'ifOperStatus.2', enumeration: IF_OPER_STATUS, object: resolved('ifOperStatus.2').object });
  assert.is(resolved('ifOperStatus.2').enumeration?.[7], 'lowerLayerDown');
  assert.is(resolved('ifAdminStatus.1').enumeration?.[2], 'down');
  assert.is(resolved('sysUpTime').oid, '1.3.6.1.2.1.1.3.0');
  assert.is(resolved('sysUpTime').name, 'sysUpTime.0');
  assert.is(resolved('sysUpTime.0').oid, '1.3.6.1.2.1.1.3.0');
  assert.is(resolved('1.3.6.1.2.1.1.5.0').name, 'sysName.0');
  assert.is(resolved('.1.3.6.1.2.1.1.5.0').oid, '1.3.6.1.2.1.1.5.0');
  assert.is(resolved('.1.3.6.1.2.1.2.2.1.8.3').enumeration?.[1], 'up');
  assert.is(resolved('1.3.6.1.4.1.9.9.1').name, '1.3.6.1.4.1.9.9.1');
  assert.is(resolved('ifHCInOctets.4').oid, '1.3.6.1.2.1.31.1.1.1.6.4');
  assert.is(resolved('ifAlias').oid, '1.3.6.1.2.1.31.1.1.1.18');
  assert.is(resolved('ifTable').oid, '1.3.6.1.2.1.2.2');
  const extra = { upsLoad: { oid: '.1.3.6.1.4.1.318.1.1.1.4.2.3.0' }, upsTable: { oid: '1.3.6.1.4.1.318.1.1.1.12' } };
  assert.is(resolved('upsLoad', extra).oid, '1.3.6.1.4.1.318.1.1.1.4.2.3.0');
  assert.is(resolved('upsTable.2.1', extra).oid, '1.3.6.1.4.1.318.1.1.1.12.2.1');
  assert.is(nameOf('1.3.6.1.4.1.318.1.1.1.12.2.1', extra), 'upsTable.2.1');

  assert.is(nameOf('1.3.6.1.2.1.2.2.1.8.2'), 'ifOperStatus.2');
  assert.is(nameOf('.1.3.6.1.2.1.1.3.0'), 'sysUpTime.0');
  assert.is(nameOf('1.3.6.1.2.1.31.1.1.1.10.3'), 'ifHCOutOctets.3');
  assert.is(nameOf('1.3.6.1.2.1.1.9.1.2.1'), '1.3.6.1.2.1.1.9.1.2.1');
  assert.is(nameOf('1.3.6.1.2.1.2.2'), 'ifTable');

  const unknown = (ref: string, extraObjects?: Record<string, { oid: string }>) => {
    const r = resolveName(ref, extraObjects);
    assert.type(r, 'string', `${ref} resolved to ${JSON.stringify(r)}`);
    return r as string;
  };
  for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'prototype']) {
    assert.match(unknown(name), `unknown object name "${name}"`);
    assert.match(unknown(name, extra), `unknown object name "${name}"`);
    assert.match(unknown(`${name}.1`, extra), 'unknown object name');
  }
  // A parsed config file holds "__proto__" as an own key: still not a name.
  const parsed = JSON.parse('{"__proto__": {"oid": "1.3.6.1.4.1.1"}, "constructor": {"oid": "1.3.6.1.4.1.2"}}');
  assert.match(unknown('__proto__', parsed), 'unknown object name');
  assert.match(unknown('constructor', parsed), 'unknown object name');
  assert.is(nameOf('1.3.6.1.4.1.1.5', parsed), '1.3.6.1.4.1.1.5');
  assert.match(unknown('sysUpTime.1'), 'sysUpTime is a single value');
  assert.match(unknown('ifOperStatus.x'), 'neither an object name');
  assert.match(unknown('1.3.6.1.99999999999'), 'out of range');
  assert.match(unknown(''), 'an object name or OID is needed');
  assert.match(unknown('bogus', { bogus: { oid: 'not-an-oid' } }), 'the configured object bogus has a bad OID');
});

test('loading the client does not load net-snmp', () => {
  const code = `
    const m = require(${JSON.stringify(`${process.cwd()}/src/services/nms/snmp.ts`)});
    const loaded = () => Object.keys(require.cache).some((k) => k.includes('/node_modules/net-snmp/'));
    const before = loaded();
    m.openSnmp({ host: '127.0.0.1', port: 9, version: '2c', community: 'c', timeoutMs: 10, retries: 0 }).close();
    console.log(JSON.stringify({ before, after: loaded() }));`;
  const out = execFileSync(process.execPath, ['-r', 'tsx', '-e', code], { encoding: 'utf8' });
  assert.equal(JSON.parse(out.trim().split('\n').pop()!), { before: false, after: true });
});

/** A fake agent that answers each GET with the request itself, turned into a response under another community. */
function echoAgent(): Promise<{ port: number; socket: Socket }> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.on('message', (msg, from) => {
      const at = msg.indexOf(Buffer.from('c-secret-community'));
      if (at < 0) return;
      const reply = Buffer.from(msg);
      reply.write('x'.repeat(18), at);
      reply[at + 18] = 0xa2; // GetRequest -> GetResponse
      socket.send(reply, from.port, from.address);
    });
    socket.bind(0, '127.0.0.1', () => resolve({ port: socket.address().port, socket }));
  });
}

test('secrets never appear in error messages', async () => {
  // net-snmp's own text for this answer quotes the community: it must not reach the user.
  const { port, socket } = await echoAgent();
  try {
    const s = openSnmp({ host: '127.0.0.1', port, version: '2c', community: 'c-secret-community', timeoutMs: 1000, retries: 0 });
    sessions.push(s);
    const err = await failure(s.get([oidOf('sysUpTime')]));
    assert.is(err.message, `unexpected answer from 127.0.0.1:${port} (community does not match)`);
  } finally {
    socket.close();
  }
  assert.ok(messages.length >= 20, `${messages.length} messages collected`);
  const secrets = [agent.community, agent.writeCommunity, agent.v3.authKey, agent.v3.privKey, WRONG_AUTH, WRONG_PRIV, 'not-the-community', 'x-community', 'c-secret', 'long-enough-key'];
  for (const m of messages) for (const secret of secrets) assert.not.ok(m.includes(secret), `"${m}" contains a secret`);
});

test.run();
