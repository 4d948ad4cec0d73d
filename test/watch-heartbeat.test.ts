import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { dumpLogs, killAgents, sleep, startAgentProcess, writeAgentConfig } from './support/agent-process';
import { tempDir } from './support/env';
import { fetchAll, folderCounts } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';

// The heartbeat through the real path: `watch` mails probes to its own mailbox over Postfix and
// reads them back from Dovecot. With Dovecot stopped they cannot come back: the alert command runs
// once; once Dovecot is back the probes return and the recovery runs once. Probes never reach a
// user and are filed in Processed.
const test = suite('watch heartbeat');

let stack: MailStack;
let work: { dir: string; cleanup: () => void };

test.before(async () => {
  work = tempDir('mailagent-wbeat-');
  stack = await startMailStack();
});

test.after(async () => {
  await killAgents();
  await stack?.stop();
  work?.cleanup();
});

test('probes go round; Dovecot down: one alert; back: one recovery; no user sees a probe', async () => {
  const out = join(work.dir, 'alerts.log');
  const script = join(work.dir, 'alert.sh');
  writeFileSync(script, `#!/bin/sh\necho "$MAILAGENT_HEARTBEAT $MAILAGENT_HEARTBEAT_MESSAGE" >> '${out}'\n`);
  chmodSync(script, 0o755);
  const config = writeAgentConfig(stack, work.dir, 'a', (raw) => {
    delete raw.services.jobs;
    raw.heartbeat = { everySeconds: 2, timeoutSeconds: 5, alert: { command: [script] } };
  });
  const agent = startAgentProcess({ config, cwd: work.dir, env: { HOME: work.dir, MAILAGENT_IMAP_PASSWORD: stack.users.agent.password } });
  await agent.waitFor((l) => l.msg === 'ready', { timeoutMs: 30_000 });
  const alerts = () => (existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean) : []);

  // A few periods with everything up: probes come back, nothing is raised.
  await sleep(8000);
  assert.equal(alerts(), [], dumpLogs(agent.logs.slice(-20)));
  const filed = await folderCounts(stack, 'agent', ['INBOX', 'Processed']);
  assert.ok(filed.Processed >= 2, `probes filed in Processed: ${JSON.stringify(filed)}`);

  await stack.stopDovecot();
  const deadline = Date.now() + 30_000;
  while (alerts().length === 0 && Date.now() < deadline) await sleep(250);
  // Well past the first alert: still one.
  await sleep(6000);
  assert.is(alerts().length, 1, alerts().join('\n'));
  assert.match(alerts()[0], /^failing /);

  await stack.startDovecot();
  const back = Date.now() + 60_000;
  while (alerts().length < 2 && Date.now() < back) await sleep(250);
  await sleep(5000);
  assert.is(alerts().length, 2, `${alerts().join('\n')}\n${dumpLogs(agent.logs.slice(-20))}`);
  assert.match(alerts()[1], /^recovered /);

  const opsMail = await fetchAll(stack, 'ops');
  assert.not.ok(opsMail.some((m) => /heartbeat/i.test(m.subject)), 'no probe or answer to one reached a user');
  agent.child.kill('SIGTERM');
  assert.is(await agent.exit, 0);
});

test.run();
