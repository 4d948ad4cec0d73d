import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { killAgents, startAgentProcess, writeAgentConfig } from './support/agent-process';
import { tempDir } from './support/env';
import { startMailStack, type MailStack } from './support/mailstack';

// `watch` as systemd's Type=notify service sees it: a NOTIFY_SOCKET of the test's own records
// every notification (through systemd-notify, as in production). READY=1 after the first sync;
// WATCHDOG=1 pings while IMAP works, none while Dovecot is frozen, again once it is thawed.
const test = suite('systemd notify');

let stack: MailStack;
let work: { dir: string; cleanup: () => void };
let recorder: ChildProcess | undefined;

/** A unix datagram socket that appends each message, with its arrival time, as one JSON line. */
const RECORDER = `
import socket, sys, json, time, os
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o777)
print("ready", flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(64))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for i in range(0, len(payload) - len(payload) % 4, 4):
                os.close(int.from_bytes(payload[i:i + 4], sys.byteorder))
    with open(out, "a") as f:
        f.write(json.dumps({"at": time.time() * 1000, "msg": data.decode()}) + "\\n")
`;

test.before(async () => {
  work = tempDir('mailagent-notify-');
  stack = await startMailStack();
});

test.after(async () => {
  await killAgents();
  recorder?.kill();
  await stack?.stop();
  work?.cleanup();
});

const notifications = (file: string): { at: number; msg: string }[] =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
const pings = (file: string, after = 0) => notifications(file).filter((n) => n.at > after && n.msg.split('\n').includes('WATCHDOG=1'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('READY=1 after the first sync, watchdog pings only while IMAP works, STATUS with the last sync and the outbox', async () => {
  const socketPath = join(work.dir, 'notify.sock');
  const out = join(work.dir, 'notify.jsonl');
  recorder = spawn('python3', ['-c', RECORDER, socketPath, out], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    recorder!.stdout!.once('data', () => resolve());
    recorder!.once('exit', (code) => reject(new Error(`recorder exited ${code}`)));
  });
  const config = writeAgentConfig(stack, work.dir, 'a', (raw) => {
    raw.health = { imapCheckSeconds: 1, degradedAfterSeconds: 3, downAfterSeconds: 10 };
    delete raw.services.jobs;
  });
  const agent = startAgentProcess({
    config,
    cwd: work.dir,
    env: { HOME: work.dir, MAILAGENT_IMAP_PASSWORD: stack.users.agent.password, NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '2000000' },
  });
  await agent.waitFor((l) => l.msg === 'ready', { timeoutMs: 30_000 });
  await sleep(3000);
  const first = notifications(out);
  const ready = first.find((n) => n.msg.split('\n').includes('READY=1'));
  assert.ok(ready, JSON.stringify(first));
  assert.match(ready!.msg, /STATUS=\w+, synced \d+ s ago; outbox 0 waiting; 0 handled/);
  assert.ok(pings(out).length >= 2, `pings every second while healthy: ${JSON.stringify(first)}`);

  const frozen = stack.pids();
  for (const pid of frozen) process.kill(pid, 'SIGSTOP');
  const frozenAt = Date.now();
  try {
    // degradedAfterSeconds is 3: after that (and one interval for a ping in flight) there are none.
    await sleep(7000);
    const quietFrom = frozenAt + 3000 + 1500;
    assert.is(pings(out, quietFrom).length, 0, `no watchdog ping while Dovecot is frozen: ${JSON.stringify(pings(out, frozenAt))}`);
  } finally {
    for (const pid of frozen) process.kill(pid, 'SIGCONT');
  }
  const thawedAt = Date.now();
  const deadline = Date.now() + 20_000;
  while (pings(out, thawedAt).length < 2 && Date.now() < deadline) await sleep(250);
  assert.ok(pings(out, thawedAt).length >= 2, 'the pings come back once IMAP works again');

  agent.child.kill('SIGTERM');
  assert.is(await agent.exit, 0);
  assert.ok(notifications(out).some((n) => n.msg.split('\n').includes('STOPPING=1')));
});

test.run();
