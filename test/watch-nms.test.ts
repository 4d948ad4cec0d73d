import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { dumpLogs, handledKey, killAgents, sleep, startAgentProcess, waitForAny, writeAgentConfig, type AgentProcess } from './support/agent-process';
import { tempDir } from './support/env';
import { fetchAll, sendMail, waitForCount } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';
import { startSnmpd, type SnmpServer } from './support/snmpd';

// An alert rule set by mail is checked by `mailagent watch` (the built binary) against a real
// snmpd: two agents share the state store, the value behind the rule's OID flips, and the rule's
// address gets exactly one alert mail and, once it flips back, exactly one recovery mail.
const test = suite('watch-nms');
const EVERY_S = 10;

let stack: MailStack;
let snmpd: SnmpServer;
let work: { dir: string; cleanup: () => void };

test.before(async () => {
  work = tempDir('mailagent-wnms-');
  [stack, snmpd] = await Promise.all([startMailStack(), startSnmpd()]);
});

test.after(async () => {
  await killAgents();
  await Promise.all([stack?.stop(), snmpd?.stop()]);
  work?.cleanup();
});

function startAgent(name: string, shared: string): AgentProcess {
  const config = writeAgentConfig(stack, work.dir, name, (raw) => {
    raw.security = { evidence: { 'nms:*': 'allowlist' } };
    delete raw.services.db;
    raw.state = { path: shared };
    raw.services.nms = {
      timeoutSeconds: 1,
      sampleSeconds: 0,
      objects: { testValue: { oid: snmpd.valueOid, type: 'integer' } },
      devices: { edge: { snmp: { host: '127.0.0.1', port: snmpd.port, version: '2c', community: { env: 'NMS_COMMUNITY' }, retries: 0 } } },
    };
  });
  return startAgentProcess({ config, cwd: work.dir, env: { HOME: work.dir, MAILAGENT_IMAP_PASSWORD: stack.users.agent.password, NMS_COMMUNITY: snmpd.community } });
}

const alertsTo = async (user: string) => (await fetchAll(stack, user)).filter((m) => /alert value-high/.test(m.subject));

test('two agents: one alert mail when the condition becomes true, none while it stays, one recovery mail when it clears', async () => {
  snmpd.setValue(1);
  const shared = join(work.dir, 'state.db');
  const crew = [startAgent('a', shared), startAgent('b', shared)];
  for (const a of crew) await a.waitFor((l) => l.msg === 'ready', { timeoutMs: 30_000 });
  const other = stack.users.other.address;

  const id = await sendMail(stack, { subject: 'alert', text: `nms alert set name=value-high device=edge when="testValue >= 5" every=${EVERY_S}s then="mail ${other}"\n` });
  await waitForAny(crew, handledKey(id), 30_000);
  await waitForCount(stack, 'ops', 1, { timeoutMs: 30_000, intervalMs: 100 });
  const [reply] = await fetchAll(stack, 'ops');
  assert.match(reply.text, 'alert value-high set: on edge, when testValue >= 5');

  // Let the rule be checked at least once while the value is fine: no mail for a rule that is fine.
  await sleep((EVERY_S + 2) * 1000);
  assert.is((await alertsTo('other')).length, 0);

  snmpd.setValue(7);
  await waitForCount(stack, 'other', 1, { timeoutMs: (EVERY_S * 2 + 15) * 1000, intervalMs: 200 });
  // Two more periods with the condition still true: no second alert from either agent.
  await sleep((EVERY_S * 2 + 2) * 1000);
  const firing = await alertsTo('other');
  assert.equal(firing.map((m) => m.subject), ['mailagent: alert value-high: firing'], crew.map((a) => dumpLogs(a.logs.slice(-15))).join('\n---\n'));
  assert.match(firing[0].text, 'testValue = 7');

  snmpd.setValue(2);
  await waitForCount(stack, 'other', 2, { timeoutMs: (EVERY_S * 2 + 15) * 1000, intervalMs: 200 });
  await sleep((EVERY_S + 2) * 1000);
  const all = (await alertsTo('other')).map((m) => m.subject);
  assert.equal(all, ['mailagent: alert value-high: firing', 'mailagent: alert value-high: recovered']);

  // Each check ran on one agent only: the state changes are logged once, not once per agent.
  const transitions = crew.flatMap((a) => a.logs.filter((l) => /^alert value-high: (ok|pending|firing) → /.test(l.line.msg ?? '')).map((l) => l.line.msg));
  assert.is(transitions.filter((t) => t.includes('→ firing')).length, 1, transitions.join('\n'));
  assert.is(transitions.filter((t) => t.includes('firing → ok')).length, 1, transitions.join('\n'));

  for (const a of crew) a.child.kill('SIGTERM');
  assert.equal(await Promise.all(crew.map((a) => a.exit)), [0, 0], 'both agents stop cleanly on SIGTERM');
});

test.run();
