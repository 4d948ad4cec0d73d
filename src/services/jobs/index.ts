import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { CommandError } from '../../core/errors';
import type { Config, JobConfig, JobsServiceConfig } from '../../config/types';
import type { Problem } from '../../config/schema-check';
import type { RunSummary, ServiceStore } from '../../state/service-store';
import { convertArgs, describeArgs, ownValue } from '../args';
import { resultOrFollowUp, seconds } from '../follow-up';
import { scheduledRecipient } from '../notices';
import { scheduleAction, schedulesOf } from '../schedule-action';
import type { Action, Notice, Prepared, Result, Service, TimedList } from '../types';
import { formatTime, nextFiring, timezoneProblems } from './cron';
import { DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_SECONDS, PLACEHOLDER, jobCwd, startJob, type ProcessResult } from './runner';
import { serviceStoreFor } from '../stores';

export { closeServiceStores } from '../stores';

/** Job schedules share the store's schedule table with other services, whose keys hold a ":". */
const isJobSchedule = (key: string): boolean => !key.includes(':');
const jobOfKey = (key: string): string | undefined => (isJobSchedule(key) ? key : undefined);

const DEFAULT_REPLY_AFTER_SECONDS = 30;
const TAIL_LINES_IN_REPLY = 20;
const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Names the commands themselves use; a job parameter cannot take them. */
const RESERVED = new Set(['name', 'run', 'tail', 'cron', 'verb']);

function section(config: Config): JobsServiceConfig {
  const jobs = config.services.jobs;
  if (!jobs) throw new CommandError('the jobs service is not configured');
  return jobs;
}

const configuredJobs = (config: Config): string[] => Object.keys(config.services.jobs?.jobs ?? {});

/** The configured job of that name (an own property: a name from a mail may be "constructor"). */
const jobNamed = (config: Config, name: string): JobConfig | undefined => ownValue(config.services.jobs?.jobs, name);

function unknownJob(config: Config, name: string): string {
  return `no job named "${name}" (jobs: ${configuredJobs(config).join(', ') || 'none'})`;
}


/** How a run ended, in a few words. */
function ending(run: { status: string; exitCode?: number | null; signal?: string | null; note?: string }): string {
  switch (run.status) {
    case 'running':
      return 'still running';
    case 'ok':
      return 'exit 0';
    case 'failed':
      return run.signal ? `ended by signal ${run.signal}` : `exit ${run.exitCode}`;
    case 'timeout':
      return `timed out (${run.note ?? 'stopped'})`;
    default:
      return `did not run: ${run.note ?? 'error'}`;
  }
}

function lastLines(output: Buffer, count: number): { text: string; shown: number; total: number } {
  const lines = output.toString('utf8').replace(/\n$/, '').split('\n');
  if (output.length === 0) return { text: '', shown: 0, total: 0 };
  const shown = lines.slice(-count);
  return { text: shown.join('\n'), shown: shown.length, total: lines.length };
}

function streamBlock(label: string, output: Buffer): string {
  const { text, shown, total } = lastLines(output, TAIL_LINES_IN_REPLY);
  if (!total) return `${label}: (empty)`;
  return `${label}${shown < total ? ` (last ${shown} of ${total} lines)` : ''}:\n${text}`;
}

/** The reply for a finished run; a run that did not end with exit 0 is reported as a failed command. */
function runResult(name: string, result: ProcessResult & { id: number }, cap: number): Result {
  const lines = [`job ${name}, run ${result.id}: ${ending(result)} after ${seconds(result.durationMs)}`];
  if (result.status !== 'error') lines.push(streamBlock('stdout', result.stdout), streamBlock('stderr', result.stderr));
  if (result.truncated) {
    lines.push(`(output over ${cap} bytes per stream was cut in the middle; "jobs log run=${result.id}" attaches what was kept)`);
  }
  const text = lines.join('\n');
  if (result.status !== 'ok') throw new CommandError(text);
  return { kind: 'text', text };
}

/**
 * Values from a mail become argv elements as they are; a value starting with "-" could still be
 * read as an option by the job, so it needs a pattern that explicitly allows it.
 */
function prepareJobArgs(job: JobConfig, given: Record<string, string>): Prepared {
  const converted = convertArgs(given, job.params ?? {});
  const problems = converted.ok ? [] : [...converted.problems];
  for (const [key, value] of Object.entries(given)) {
    const spec = ownValue(job.params, key);
    if (!spec) continue;
    if (value.includes('\0')) problems.push(`${key}: contains a NUL byte`);
    if (spec.type === 'string' && !spec.pattern && value.startsWith('-')) {
      problems.push(`${key}=${value}: a value may not start with "-" (it could be read as an option) unless the job's pattern allows it`);
    }
  }
  return problems.length || !converted.ok ? { ok: false, problems } : converted;
}

const nameArg = { type: 'string', maxLength: 64, pattern: JOB_NAME.source.slice(1, -1) } as const;

const list: Action = {
  summary: 'list the jobs, their arguments, schedules and next run times',
  example: 'jobs list',
  args: {},
  mutates: false,
  run: async (_args, ctx) => {
    const cfg = section(ctx.config);
    const schedules = await schedulesOf(ctx.config, { nameOf: jobOfKey });
    const now = ctx.now();
    const rows = Object.entries(cfg.jobs).map(([name, job]) => {
      const cron = schedules.get(name)?.cron;
      return [
        name,
        job.description ?? '',
        Object.keys(job.params ?? {}).join(' '),
        `${job.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS} s`,
        cron ?? '',
        cron ? formatTime(nextFiring(cron, cfg.timezone, now)) : '',
      ];
    });
    return { kind: 'table', columns: ['job', 'description', 'arguments', 'timeout', 'schedule', 'next run'], rows, name: 'jobs' };
  },
};

const run: Action = {
  summary: 'run a job now with its arguments; reports exit code, duration and the end of its output',
  example: 'jobs run disk-usage dir=log',
  args: { name: { ...nameArg, required: true, description: 'the job (see the list below)' } },
  positional: ['name'],
  extraArgs: 'the job\'s arguments as key=value',
  mutates: true,
  prepare: (args, config) => {
    const { name, ...given } = args;
    if (name === undefined) return { ok: false, problems: ['missing the job name: jobs run <name> [key=value ...]'] };
    const job = jobNamed(config, name);
    if (!job) return { ok: false, problems: [unknownJob(config, name)] };
    const prepared = prepareJobArgs(job, given);
    return prepared.ok ? { ok: true, args: { name, given, values: prepared.args } } : prepared;
  },
  run: async (args, ctx) => {
    const cfg = section(ctx.config);
    const name = String(args.name);
    const job = jobNamed(ctx.config, name);
    if (!job) throw new CommandError(unknownJob(ctx.config, name));
    const store = await serviceStoreFor(ctx.config);
    const started = await startJob({
      config: ctx.config,
      store,
      name,
      given: args.given as Record<string, string>,
      values: args.values as Record<string, unknown>,
      who: ctx.user ?? 'unknown',
      now: ctx.now,
    });
    const cap = job.maxOutputBytes ?? cfg.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    const outcome = started.done.then((result) => runResult(name, result, cap));
    return resultOrFollowUp(ctx, outcome, {
      title: `job ${name} run ${started.id}`,
      replyAfterMs: (cfg.replyAfterSeconds ?? DEFAULT_REPLY_AFTER_SECONDS) * 1000,
      started: `job ${name}: started, run id ${started.id}`,
    });
  },
};

function runsTable(runs: RunSummary[], note?: string): Result {
  const rows = runs.map((r) => [
    r.id,
    r.job,
    Object.entries(r.args).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' '),
    r.who,
    formatTime(r.startedAt),
    r.endedAt !== undefined ? seconds(r.endedAt - r.startedAt) : '',
    ending(r),
    r.tail.split('\n').pop()!.slice(0, 120),
  ]);
  return { kind: 'table', columns: ['run', 'job', 'args', 'who', 'started', 'duration', 'result', 'last output line'], rows, name: 'job-runs', ...(note && { note }) };
}

const log: Action = {
  summary: 'the run log (newest first), of one job or all; run=<id> attaches that run\'s full output',
  example: 'jobs log disk-usage tail=10',
  args: {
    name: { ...nameArg, description: 'only runs of this job' },
    run: { type: 'int', min: 1, description: 'one run: its summary, with stdout and stderr attached' },
    tail: { type: 'int', min: 1, max: 1000, default: 100, description: 'how many runs to list' },
  },
  positional: ['name'],
  mutates: false,
  prepare: (args, config) => {
    const prepared = convertArgs(args, log.args);
    if (!prepared.ok) return prepared;
    if (args.name !== undefined && !jobNamed(config, args.name)) return { ok: false, problems: [unknownJob(config, args.name)] };
    return prepared;
  },
  run: async (args, ctx) => {
    section(ctx.config);
    const store = await serviceStoreFor(ctx.config);
    if (args.run !== null) {
      const id = Number(args.run);
      const found = await store.getRun(id);
      // A role limited to `jobs:log name=…` names the job; the run must belong to it.
      if (!found || (args.name !== null && found.job !== args.name)) {
        throw new CommandError(`no run ${id}${args.name !== null ? ` of job ${args.name}` : ''} in the log`);
      }
      const files = [
        { filename: `run-${id}-stdout.txt`, contentType: 'text/plain; charset=utf-8', content: found.stdout },
        { filename: `run-${id}-stderr.txt`, contentType: 'text/plain; charset=utf-8', content: found.stderr },
      ].filter((f) => f.content.length > 0);
      const args_ = Object.entries(found.args).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');
      const text = [
        `run ${id} of job ${found.job}${args_ ? ` (${args_})` : ''}, by ${found.who}`,
        `started ${formatTime(found.startedAt)}${found.endedAt !== undefined ? `, ended ${formatTime(found.endedAt)} after ${seconds(found.endedAt - found.startedAt)}` : ''}`,
        `result: ${ending(found)}`,
        `output: stdout ${found.stdout.length} bytes, stderr ${found.stderr.length} bytes${files.length ? '' : ' (nothing to attach)'}`,
      ].join('\n');
      return { kind: 'files', text, files };
    }
    const limit = Number(args.tail);
    const runs = await store.listRuns({ ...(args.name !== null && { job: String(args.name) }), limit });
    return runsTable(runs, runs.length === limit ? `newest ${limit} runs; tail=N shows more` : undefined);
  },
};

const schedule = scheduleAction({
  service: 'jobs',
  noun: 'job',
  arg: 'name',
  argSpec: { ...nameArg, description: 'the job' },
  example: 'jobs schedule set disk-free cron="0 2 * * *"',
  keyOf: (name) => name,
  nameOf: jobOfKey,
  exists: (config, name) => jobNamed(config, name) !== undefined,
  unknown: unknownJob,
  // A schedule gives no arguments: the job's defaults must be enough.
  unschedulable: (config, name) => {
    const defaults = convertArgs({}, jobNamed(config, name)!.params ?? {});
    return defaults.ok ? undefined : `job ${name} cannot run on a schedule: it needs arguments (${defaults.problems.join('; ')})`;
  },
  timezone: (config) => config.services.jobs?.timezone,
});

function checkConfig(raw: unknown, path: string): Problem[] {
  const cfg = raw as JobsServiceConfig;
  const problems: Problem[] = timezoneProblems(cfg.timezone, `${path}.timezone`);
  for (const [name, job] of Object.entries(cfg.jobs)) {
    const at = `${path}.jobs.${name}`;
    if (!JOB_NAME.test(name)) problems.push({ path: at, message: 'a job name is 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit' });
    const declared = Object.keys(job.params ?? {});
    const used = new Set<string>();
    job.command.forEach((element, i) => {
      for (const m of element.matchAll(PLACEHOLDER)) {
        used.add(m[1]);
        if (!declared.includes(m[1])) problems.push({ path: `${at}.command[${i}]`, message: `uses {${m[1]}} but params does not declare it` });
      }
    });
    if (job.command[0] === '') problems.push({ path: `${at}.command[0]`, message: 'the program must not be empty' });
    else if (new RegExp(PLACEHOLDER.source).test(job.command[0])) problems.push({ path: `${at}.command[0]`, message: 'the program itself cannot come from a mail argument' });
    for (const [pName, p] of Object.entries(job.params ?? {})) {
      const pAt = `${at}.params.${pName}`;
      if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(pName)) problems.push({ path: pAt, message: 'a parameter name is letters, digits, "_" or "-"' });
      if (RESERVED.has(pName)) problems.push({ path: pAt, message: `"${pName}" is reserved for the jobs commands: choose another name` });
      if (!used.has(pName)) problems.push({ path: pAt, message: `is declared but the command never uses {${pName}}` });
      if (p.type === 'enum' && !p.values) problems.push({ path: `${pAt}.values`, message: 'is required for type enum' });
      if (p.pattern !== undefined) {
        try {
          new RegExp(p.pattern);
        } catch {
          problems.push({ path: `${pAt}.pattern`, message: 'is not a valid regular expression' });
        }
      }
    }
    for (const key of Object.keys(job.env ?? {})) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) problems.push({ path: `${at}.env.${key}`, message: 'is not a valid environment variable name' });
    }
  }
  return problems;
}

/** Where the program of a job is, as spawn would find it; undefined when it is not there. */
function findProgram(program: string, cwd: string): string | undefined {
  const candidates = program.includes('/')
    ? [isAbsolute(program) ? program : join(cwd, program)]
    : (process.env.PATH || '/usr/local/bin:/usr/bin:/bin').split(delimiter).filter(Boolean).map((dir) => join(dir, program));
  return candidates.find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  });
}

/** Each stored job schedule, fired by the scheduler of `watch`; the result is mailed to whoever set it (or the job's notify address). */
async function timed(config: Config, store: ServiceStore): Promise<TimedList> {
  const cfg = section(config);
  const list: TimedList = { tasks: [], ignored: [] };
  for (const schedule of await store.listSchedules()) {
    const name = schedule.job;
    if (!isJobSchedule(name)) continue;
    const job = jobNamed(config, name);
    if (!job) {
      list.ignored!.push({ key: `job:${name}`, message: `schedule of job ${name} ignored: the job is not in the config`, fields: { job: name } });
      continue;
    }
    list.tasks.push({
      key: name,
      title: `job ${name}`,
      when: { cron: schedule.cron, ...(cfg.timezone && { timezone: cfg.timezone }) },
      setAt: schedule.setAt,
      fire: async ({ config, store, now, log, notify, scheduledAt }) => {
        const defaults = convertArgs({}, job.params ?? {});
        if (!defaults.ok) {
          log('error', `job ${name} cannot run on its schedule: ${defaults.problems.join('; ')}`, { job: name });
          return;
        }
        const started = await startJob({ config, store, name, given: {}, values: defaults.args, who: 'schedule', now });
        log('info', `job ${name} started by its schedule`, { job: name, runId: started.id, scheduledAt: scheduledAt.toISOString() });
        let result: Awaited<typeof started.done>;
        try {
          result = await started.done;
        } catch (err) {
          // Its end could not be recorded (say the store was closed at shutdown while it ran).
          log('error', `job ${name} run ${started.id}: its end was not recorded: ${(err as Error).message}`, { job: name, runId: started.id });
          return;
        }
        log(result.status === 'ok' ? 'info' : 'warn', `job ${name} run ${result.id} ended: ${result.status}`, { job: name, runId: result.id, exitCode: result.exitCode, signal: result.signal, ms: result.durationMs, ...(result.note && { note: result.note }) });
        const to = scheduledRecipient(config, job.notify, schedule.setBy);
        if (!notify || !to) return;
        const cap = job.maxOutputBytes ?? cfg.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
        let outcome: Notice['outcome'];
        try {
          outcome = { ok: true, result: runResult(name, result, cap) };
        } catch (err) {
          outcome = { ok: false, error: (err as Error).message };
        }
        await notify(`job:${name}#${result.id}`, { to, subject: `job ${name} run ${result.id} ${outcome.ok ? 'finished' : 'failed'}`, command: `jobs run ${name} (scheduled "${schedule.cron}")`, outcome });
      },
    });
  }
  return list;
}

export const jobs: Service = {
  name: 'jobs',
  summary: 'run configured batch jobs now or on a schedule; their run log and output',
  actions: { list, run, log, schedule },
  checkConfig,
  timed,
  helpDetails: (config) => {
    const lines = ['Jobs:'];
    for (const [name, job] of Object.entries(config.services.jobs?.jobs ?? {})) {
      lines.push(`  ${name}${job.description ? ` - ${job.description}` : ''}`);
      for (const arg of describeArgs(job.params ?? {})) lines.push(`      ${arg}`);
    }
    return lines;
  },
  probe: async (config) => {
    const rows = Object.entries(section(config).jobs).map(([name, job]) => {
      const cwd = jobCwd(config, job);
      let cwdOk = false;
      try {
        cwdOk = statSync(cwd).isDirectory();
      } catch {
        // reported below
      }
      const program = cwdOk ? findProgram(job.command[0], cwd) : undefined;
      if (!cwdOk) return { target: name, ok: false, detail: `working directory ${cwd} does not exist` };
      if (!program) return { target: name, ok: false, detail: `program ${job.command[0]} not found or not executable` };
      return { target: name, ok: true, detail: `${program} in ${cwd}` };
    });
    try {
      const schedules = (await (await serviceStoreFor(config)).listSchedules()).filter((s) => isJobSchedule(s.job)).length;
      rows.push({ target: 'run log', ok: true, detail: `${schedules} schedule${schedules === 1 ? '' : 's'}` });
    } catch (err) {
      rows.push({ target: 'run log', ok: false, detail: (err as Error).message });
    }
    return rows;
  },
};
