import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Config, JobConfig, QueryParam } from '../../config/types';
import { resolveSecret } from '../../config/secrets';
import { CommandError } from '../../core/errors';
import type { ServiceStore, RunEnd, RunStatus } from '../../state/service-store';
import { ownValue } from '../args';
import { track } from '../follow-up';

export const DEFAULT_TIMEOUT_SECONDS = 300;
export const DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024;
export const DEFAULT_KEEP_RUNS = 500;
/** Between SIGTERM and SIGKILL to the job's process group. */
export const KILL_GRACE_MS = 5_000;
/** After the job's own process ended, how long a background process may keep its output open. */
const STREAM_GRACE_MS = 2_000;

/** `{name}`: a placeholder for the argument `name`. */
export const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_-]*)\}/g;
const WHOLE_PLACEHOLDER = /^\{([A-Za-z_][A-Za-z0-9_-]*)\}$/;

function argText(value: unknown, spec: QueryParam | undefined): string {
  if (spec?.type === 'bool') return value ? 'true' : 'false';
  return String(value);
}

/**
 * The job's argv with its arguments filled in. Each value becomes (part of) exactly one argv
 * element: no shell ever sees it, so `; rm -rf /`, `$(id)` or a newline is just text. A
 * placeholder that is a whole element and whose optional argument is absent leaves the element out.
 */
export function buildArgv(job: JobConfig, values: Record<string, unknown>): string[] {
  const argv: string[] = [];
  for (const element of job.command) {
    const whole = WHOLE_PLACEHOLDER.exec(element);
    if (whole && job.params?.[whole[1]]) {
      const value = values[whole[1]];
      if (value !== null && value !== undefined) argv.push(argText(value, job.params[whole[1]]));
      continue;
    }
    argv.push(
      element.replace(PLACEHOLDER, (text, name: string) => {
        if (!job.params?.[name]) return text;
        const value = values[name];
        return value === null || value === undefined ? '' : argText(value, job.params[name]);
      }),
    );
  }
  return argv;
}

export const jobCwd = (config: Config, job: JobConfig): string => resolve(dirname(config.file), job.cwd ?? '.');

/** A small, known environment: the agent's own variables (secrets among them) never reach a job. */
export function jobEnv(config: Config, name: string, job: JobConfig, runId: number): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH || '/usr/local/bin:/usr/bin:/bin' };
  for (const key of ['HOME', 'LANG', 'LC_ALL', 'TZ', 'USER', 'LOGNAME']) {
    const value = process.env[key];
    if (value) env[key] = value;
  }
  env.MAILAGENT_JOB = name;
  env.MAILAGENT_RUN_ID = String(runId);
  for (const [key, value] of Object.entries(job.env ?? {})) {
    env[key] = typeof value === 'string' ? value : resolveSecret(value, config.file, `services.jobs.jobs.${name}.env.${key}`);
  }
  return env;
}

/**
 * Keeps at most `cap` bytes of a stream: the beginning and the end, which is where a job says what
 * it does and how it ended; the middle is replaced by a note saying how much was cut.
 */
export class OutputCapture {
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  total = 0;

  constructor(private readonly cap: number) {}

  push(chunk: Buffer): void {
    this.total += chunk.length;
    const headRoom = Math.floor(this.cap / 2) - this.headBytes;
    if (headRoom > 0) {
      const taken = chunk.subarray(0, headRoom);
      this.head.push(taken);
      this.headBytes += taken.length;
      chunk = chunk.subarray(taken.length);
    }
    if (!chunk.length) return;
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    const tailCap = this.cap - Math.floor(this.cap / 2);
    while (this.tailBytes - this.tail[0].length >= tailCap) this.tailBytes -= this.tail.shift()!.length;
  }

  get truncated(): boolean {
    return this.total > this.cap;
  }

  result(): Buffer {
    const tail = Buffer.concat(this.tail);
    if (!this.truncated) return Buffer.concat([...this.head, tail]);
    const tailCap = this.cap - Math.floor(this.cap / 2);
    const kept = tail.subarray(tail.length - tailCap);
    const omitted = this.total - this.headBytes - kept.length;
    const note = `\n[... output truncated: ${omitted} of ${this.total} bytes omitted (cap ${this.cap} bytes) ...]\n`;
    return Buffer.concat([...this.head, Buffer.from(note), kept]);
  }
}

export interface ProcessResult extends RunEnd {
  durationMs: number;
  truncated: boolean;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is already gone
  }
}

/**
 * Runs argv (never through a shell) in its own process group, so that a timeout stops the job
 * and everything it started: SIGTERM to the group, SIGKILL after a grace period.
 */
export function executeProcess(opts: {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  maxOutputBytes: number;
  startedAt: number;
  killGraceMs?: number;
}): Promise<ProcessResult> {
  const started = Date.now();
  const stdout = new OutputCapture(opts.maxOutputBytes);
  const stderr = new OutputCapture(opts.maxOutputBytes);
  return new Promise((resolveRun) => {
    let settled = false;
    let timedOut = false;
    let groupId: number | undefined;
    const timers: NodeJS.Timeout[] = [];
    const finish = (status: RunStatus, exitCode: number | null, signal: string | null, note?: string) => {
      if (settled) return;
      settled = true;
      timers.forEach(clearTimeout);
      // Whatever of a timed-out job survived SIGTERM goes now, while the group id is surely still its own.
      if (timedOut && groupId !== undefined) signalGroup(groupId, 'SIGKILL');
      const durationMs = Date.now() - started;
      resolveRun({
        status,
        exitCode,
        signal,
        stdout: stdout.result(),
        stderr: stderr.result(),
        truncated: stdout.truncated || stderr.truncated,
        durationMs,
        endedAt: opts.startedAt + durationMs,
        ...(note && { note }),
      });
    };

    try {
      if (!statSync(opts.cwd).isDirectory()) return finish('error', null, null, `working directory ${opts.cwd} is not a directory`);
    } catch {
      return finish('error', null, null, `working directory ${opts.cwd} does not exist`);
    }

    let child: import('node:child_process').ChildProcess;
    try {
      // Loaded here: child_process costs every start of `run`, and most mails run no job.
      const { spawn } = require('node:child_process') as typeof import('node:child_process');
      child = spawn(opts.argv[0], opts.argv.slice(1), { cwd: opts.cwd, env: opts.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'], shell: false });
    } catch (err) {
      return finish('error', null, null, `could not start ${opts.argv[0]}: ${(err as Error).message}`);
    }
    child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? 'program not found' : err.code === 'EACCES' ? 'permission denied' : err.message;
      finish('error', null, null, `could not start ${opts.argv[0]}: ${why}`);
    });

    let exit: { code: number | null; signal: string | null } | undefined;
    const done = () => {
      const { code, signal } = exit!;
      if (timedOut) finish('timeout', code, signal, `stopped after the timeout of ${opts.timeoutMs / 1000} s`);
      else finish(code === 0 ? 'ok' : 'failed', code, signal, signal ? `ended by signal ${signal}` : undefined);
    };
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // A background process may still hold the pipes open: stop waiting for it after a while.
      timers.push(
        setTimeout(() => {
          child.stdout!.destroy();
          child.stderr!.destroy();
          done();
        }, STREAM_GRACE_MS),
      );
    });
    child.on('close', () => {
      if (exit) done();
    });

    if (child.pid !== undefined) {
      const pid = child.pid;
      groupId = pid;
      timers.push(
        setTimeout(() => {
          timedOut = true;
          signalGroup(pid, 'SIGTERM');
          timers.push(setTimeout(() => signalGroup(pid, 'SIGKILL'), opts.killGraceMs ?? KILL_GRACE_MS));
        }, opts.timeoutMs),
      );
    }
  });
}

export interface StartedRun {
  id: number;
  /** Settles when the job ended and its record is written; never rejects. */
  done: Promise<ProcessResult & { id: number }>;
}

/**
 * Records the run, starts the job and returns its id at once; `done` follows. Every run goes
 * through here, whether asked for by mail or fired by a schedule.
 */
export async function startJob(opts: {
  config: Config;
  store: ServiceStore;
  name: string;
  /** The arguments as written in the mail, for the log. */
  given: Record<string, string>;
  /** Converted and defaulted values for the placeholders. */
  values: Record<string, unknown>;
  who: string;
  now: () => Date;
}): Promise<StartedRun> {
  const { config, store, name } = opts;
  const section = config.services.jobs!;
  // Checked before anything is recorded: a run of no job must not stay "running" in the log.
  const job = ownValue(section.jobs, name);
  if (!job) throw new CommandError(`no job named "${name}"`);
  const startedAt = opts.now().getTime();
  const id = await store.startRun({ job: name, args: opts.given, who: opts.who, startedAt });
  const run = async (): Promise<ProcessResult> => {
    let env: Record<string, string>;
    try {
      env = jobEnv(config, name, job, id);
    } catch (err) {
      return { status: 'error', exitCode: null, signal: null, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), note: (err as Error).message, durationMs: 0, truncated: false, endedAt: startedAt };
    }
    return executeProcess({
      argv: buildArgv(job, opts.values),
      cwd: jobCwd(config, job),
      env,
      timeoutMs: (job.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000,
      maxOutputBytes: job.maxOutputBytes ?? section.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES,
      startedAt,
    });
  };
  const done = track(
    run().then(async (result) => {
      const { durationMs: _d, truncated: _t, ...end } = result;
      try {
        await store.finishRun(id, end, section.keepRuns ?? DEFAULT_KEEP_RUNS);
        return { ...result, id };
      } catch (err) {
        // The job did run: report it even though the log could not record its end.
        const note = `the run log could not record the end of this run: ${(err as Error).message}`;
        return { ...result, id, note: result.note ? `${result.note}; ${note}` : note };
      }
    }),
  );
  return { id, done };
}
