import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, utils, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { alive, portBindable, portListening } from './support/mailstack';
import { publicKeyBlob, sha256Fingerprint, startSshServer, type SshServer } from './support/sshd';
import { ROOT } from './support/env';

const test = suite('sshd harness');
let server: SshServer;

test.before(async () => {
  server = await startSshServer();
});
test.after(async () => {
  await server?.stop();
});

/** Connect with the client key, pinning the host key to `expected`; resolves once authenticated. */
function connect(s: SshServer, expected: string, seen?: string[]): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const config: ConnectConfig = {
      host: s.host,
      port: s.port,
      username: s.user,
      privateKey: s.clientKey,
      readyTimeout: 10_000,
      // Without hostHash, ssh2 hands the raw key blob to the verifier.
      hostVerifier: (key: Buffer) => {
        const got = sha256Fingerprint(key);
        seen?.push(got);
        return got === expected;
      },
    };
    client.once('ready', () => resolve(client));
    client.once('error', (err) => { client.end(); reject(err); });
    client.connect(config);
  });
}

function sftpOf(client: Client): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => client.sftp((err, sftp) => (err ? reject(err) : resolve(sftp))));
}

const call = <T>(fn: (cb: (err: Error | null | undefined, v: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));

test('the pinned fingerprint is ssh-keygen\'s, and differs from the other key\'s', () => {
  assert.match(server.hostKeyFingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  assert.is(sha256Fingerprint(publicKeyBlob(server.hostPublicKey)), server.hostKeyFingerprint);
  assert.match(server.hostPublicKey, /^ssh-ed25519 AAAA/);
  assert.match(server.otherHostKeyFingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  assert.is.not(server.otherHostKeyFingerprint, server.hostKeyFingerprint);
  assert.match(server.clientKey, /^-----BEGIN OPENSSH PRIVATE KEY-----/);
  assert.is(readFileSync(server.clientKeyPath, 'utf8'), server.clientKey);
  assert.is(server.host, '127.0.0.1');
  assert.ok(portListening(server.port));
});

test('a real ssh2 client logs in with the key, pins the host key and writes, lists, reads and deletes over SFTP', async () => {
  const seen: string[] = [];
  const client = await connect(server, server.hostKeyFingerprint, seen);
  try {
    assert.equal(seen, [server.hostKeyFingerprint]);
    const sftp = await sftpOf(client);
    const path = `${server.root}/hello.txt`;
    const body = 'hello over sftp\nline 2\n';
    await call<void>((cb) => sftp.writeFile(path, body, (err) => cb(err, undefined)));
    assert.is(readFileSync(join(server.root, 'hello.txt'), 'utf8'), body, 'the file is on the server\'s disk');

    const list = await call<{ filename: string; attrs: { size: number } }[]>((cb) => sftp.readdir(server.root, cb));
    assert.equal(list.map((e) => e.filename), ['hello.txt']);
    assert.is(list[0].attrs.size, Buffer.byteLength(body));

    const back = await call<Buffer>((cb) => sftp.readFile(path, cb));
    assert.is(back.toString('utf8'), body);

    await call<void>((cb) => sftp.unlink(path, (err) => cb(err, undefined)));
    assert.equal(readdirSync(server.root), []);
    assert.match(readFileSync(server.logFile, 'utf8'), /Accepted publickey for root from 127\.0\.0\.1/);
  } finally {
    client.end();
  }
});

test('a client expecting the other fingerprint refuses the server and writes nothing', async () => {
  const seen: string[] = [];
  const logins = () => readFileSync(server.logFile, 'utf8').split('Accepted publickey').length - 1;
  const before = logins();
  let client: Client | undefined;
  try {
    client = await connect(server, server.otherHostKeyFingerprint, seen);
    assert.unreachable('connected despite the wrong host key');
  } catch (e: any) {
    assert.ok(!client, String(e.message));
    assert.match(String(e.message), /verification failed/i);
  } finally {
    client?.end();
  }
  assert.equal(seen, [server.hostKeyFingerprint], 'the verifier saw the real key and said no');
  assert.equal(readdirSync(server.root), []);
  assert.is(logins(), before, 'no login happened');
});

test('password and unknown-key logins are refused', async () => {
  const attempt = (auth: Partial<ConnectConfig>) => new Promise<Error>((resolve) => {
    const c = new Client();
    c.once('ready', () => { c.end(); resolve(new Error('logged in')); });
    c.once('error', (err) => { c.end(); resolve(err); });
    c.connect({ host: server.host, port: server.port, username: server.user, readyTimeout: 10_000, ...auth });
  });
  const refused = /All configured authentication methods failed/;
  assert.match((await attempt({ password: 'x' })).message, refused);
  const other = utils.generateKeyPairSync('ed25519');
  assert.match((await attempt({ privateKey: other.private })).message, refused);
});

test('stop() ends sshd and its live sessions, frees the port and removes the dir', async () => {
  const client = await connect(server, server.hostKeyFingerprint);
  const sftp = await sftpOf(client);
  await call<unknown>((cb) => sftp.readdir(server.root, cb));
  const pids = server.pids();
  assert.ok(pids.length >= 2, `listener and session processes (${pids.length})`);
  const closed = new Promise<void>((r) => client.once('close', () => r()));
  const { port, dir } = server;
  await server.stop();
  await closed;
  assert.equal(pids.filter(alive), [], 'no process left');
  assert.ok(await portBindable(port), 'port free');
  assert.not.ok(existsSync(dir));
  await server.stop(); // idempotent
});

test('a server left behind by a SIGKILLed test process is reaped by the next start', async () => {
  const work = mkdtempSync(join(tmpdir(), 'mailagent-owner-'));
  const script = join(work, 'owner.ts');
  writeFileSync(script, `
    import { startSshServer } from ${JSON.stringify(join(ROOT, 'test/support/sshd'))};
    startSshServer().then((s) => {
      process.stdout.write(JSON.stringify({ dir: s.dir, pids: s.pids(), port: s.port }) + '\\n');
      setInterval(() => {}, 1000);
    });
  `);
  // node --import tsx, not the tsx CLI: the CLI runs the script in a child that would survive our SIGKILL.
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let second: SshServer | undefined;
  try {
    const info = await new Promise<{ dir: string; pids: number[]; port: number }>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (c) => {
        out += c;
        if (out.includes('\n')) resolve(JSON.parse(out));
      });
      child.once('exit', (code) => reject(new Error(`owner exited with ${code} before starting its server`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.ok(info.pids.some(alive), 'sshd outlives its owner');

    second = await startSshServer();
    assert.equal(info.pids.filter(alive), [], 'the orphaned sshd is gone');
    assert.not.ok(existsSync(info.dir), 'its dir is removed');
    assert.ok(await portBindable(info.port));
    // The new one works.
    const client = await connect(second, second.hostKeyFingerprint);
    client.end();
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    child.stdout!.destroy();
    await second?.stop();
    rmSync(work, { recursive: true, force: true });
  }
});

test.run();
