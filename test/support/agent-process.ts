/**
 * `mailagent watch` as a child process (the built binary), with its JSON log lines collected so a
 * test can wait for them ("ready", "handled", ...). Every agent started here is SIGKILLed by
 * killAgents() and, as a last resort, when the test process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, exampleConfigObject } from './env';
import type { MailStack } from './mailstack';

export const BINARY = join(ROOT, 'dist', 'mailagent');

export interface LogLine {
  /** When the test received the line (ms since epoch). */
  at: number;
  line: Record<string, any>;
}

export type LogMatch = (line: Record<string, any>) => boolean;

export interface AgentProcess {
  child: ChildProcess;
  logs: LogLine[];
  /** Resolves with the first matching line (from index `from` on); rejects on timeout or exit, with the log. */
  waitFor(what: LogMatch, opts?: { timeoutMs?: number; from?: number }): Promise<LogLine>;
  count(what: LogMatch): number;
  /** The exit code (null when ended by a signal). */
  exit: Promise<number | null>;
}

const running = new Set<AgentProcess>();

// A test process that dies must not leave agents behind.
process.on('exit', () => {
  for (const a of running) a.child.kill('SIGKILL');
});

export function dumpLogs(logs: LogLine[]): string {
  return logs.map((l) => JSON.stringify(l.line)).join('\n');
}

/** Starts `dist/mailagent watch --config <config>` with only the environment given (plus PATH). */
export function startAgentProcess(opts: { config: string; cwd: string; env: Record<string, string> }): AgentProcess {
  const child = spawn(BINARY, ['watch', '--config', opts.config], {
    cwd: opts.cwd,
    env: { PATH: process.env.PATH!, ...opts.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  let buffered = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    const at = Date.now();
    buffered += chunk.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let line: Record<string, any>;
      try {
        line = JSON.parse(text);
      } catch {
        line = { msg: 'not json', text };
      }
      logs.push({ at, line });
    }
    for (const w of [...waiters]) w();
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    for (const w of [...waiters]) w();
    resolve(code);
  }));
  const agent: AgentProcess = {
    child,
    logs,
    exit,
    count: (what) => logs.filter((l) => what(l.line)).length,
    waitFor: (what, { timeoutMs = 20_000, from = 0 } = {}) =>
      new Promise<LogLine>((resolve, reject) => {
        const finish = (err?: Error, hit?: LogLine) => {
          waiters.delete(check);
          clearTimeout(timer);
          if (err) reject(err);
          else resolve(hit!);
        };
        const check = () => {
          const hit = logs.slice(from).find((l) => what(l.line));
          if (hit) finish(undefined, hit);
          else if (child.exitCode !== null || child.signalCode !== null) finish(new Error(`agent exited (${child.exitCode ?? child.signalCode}); log:\n${dumpLogs(logs)}`));
        };
        const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms; log tail:\n${dumpLogs(logs.slice(-30))}`)), timeoutMs);
        waiters.add(check);
        check();
      }),
  };
  running.add(agent);
  exit.then(() => running.delete(agent));
  return agent;
}

/** Resolves with the first agent's line that matches, whichever agent logs it. */
export function waitForAny(agents: AgentProcess[], what: LogMatch, timeoutMs = 20_000): Promise<{ agent: AgentProcess; hit: LogLine }> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const poll = () => {
      for (const agent of agents) {
        const hit = agent.logs.find((l) => what(l.line));
        if (hit) return resolve({ agent, hit });
      }
      if (agents.every((a) => a.child.exitCode !== null || a.child.signalCode !== null)) {
        return reject(new Error(`every agent exited; logs:\n${agents.map((a) => dumpLogs(a.logs.slice(-30))).join('\n---\n')}`));
      }
      if (Date.now() - start > timeoutMs) {
        return reject(new Error(`timed out after ${timeoutMs} ms; log tails:\n${agents.map((a) => dumpLogs(a.logs.slice(-30))).join('\n---\n')}`));
      }
      setTimeout(poll, 50);
    };
    poll();
  });
}

/** SIGKILLs every agent still running and waits for them to be gone. */
export async function killAgents(): Promise<void> {
  for (const a of [...running]) {
    a.child.kill('SIGKILL');
    await a.exit;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Matches the agent's log line for the request with this Message-ID. */
export const handledKey = (id: string) => (l: Record<string, any>) => l.msg === 'handled' && l.key === `mid:${id.toLowerCase()}`;

/** Poll until `check` is true; the error names what was awaited. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * A watch config for agent@example.com on this stack (ops@example.com is the one user, admin),
 * written to `<dir>/<name>/config.json` with its state and audit beside it; `tweak` edits the rest.
 */
export function writeAgentConfig(stack: MailStack, dir: string, name: string, tweak: (raw: Record<string, any>) => void = () => {}): string {
  const home = join(dir, name);
  mkdirSync(home, { recursive: true });
  const raw = exampleConfigObject(dir);
  raw.state = { path: join(home, 'state.db') };
  raw.audit = { path: join(home, 'audit.jsonl') };
  raw.smtp = { host: '127.0.0.1', port: stack.smtpPort, secure: false, timeoutSeconds: 5 };
  raw.imap = { host: '127.0.0.1', port: stack.imapPort, secure: false, user: 'agent', password: { env: 'MAILAGENT_IMAP_PASSWORD' } };
  raw.users = [{ address: 'ops@example.com', roles: ['admin'] }];
  tweak(raw);
  const file = join(home, 'config.json');
  writeFileSync(file, JSON.stringify(raw, null, 2));
  return file;
}
