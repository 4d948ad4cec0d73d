import { constants as fsConstants } from 'node:fs';
import { isAbsolute, normalize } from 'node:path';
import type { BackupServiceConfig, BackupTargetConfig, Config } from '../../config/types';
import type { Problem } from '../../config/schema-check';
import { CommandError } from '../../core/errors';
import { scheduleKey, type ServiceStore } from '../../state/service-store';
import { convertArgs, ownValue } from '../args';
import { resultOrFollowUp, seconds, track } from '../follow-up';
import { formatTime, timezoneProblems } from '../jobs/cron';
import { scheduledRecipient } from '../notices';
import { scheduleAction } from '../schedule-action';
import type { Action, ArgSpec, Notice, ProbeResult, Result, Service, TimedList } from '../types';
import { formatBytes } from '../units';
import type { ArchiveInfo, BackupResult } from './archive';

/** Backups of configured source trees into tar.gz archives: run now or on a schedule, list, verify. */

const DEFAULT_KEEP = 7;
const DEFAULT_LEVEL = 6;
const DEFAULT_REPLY_AFTER_SECONDS = 30;
const TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** The archive code (tar, gzip, digests) and fs/promises load with the first backup command, not with every start. */
const fsp = () => require('node:fs/promises') as typeof import('node:fs/promises');
const archive = () => require('./archive') as typeof import('./archive');

function section(config: Config): BackupServiceConfig {
  const cfg = config.services.backup;
  if (!cfg) throw new CommandError('the backup service is not configured');
  return cfg;
}

const targetNamed = (config: Config, name: string): BackupTargetConfig | undefined => ownValue(config.services.backup?.targets, name);
const unknownTarget = (config: Config, name: string) =>
  `no backup target named "${name}" (targets: ${Object.keys(config.services.backup?.targets ?? {}).join(', ') || 'none'})`;

function target(config: Config, name: string): BackupTargetConfig {
  const found = targetNamed(config, name);
  if (!found) throw new CommandError(unknownTarget(config, name));
  return found;
}

const targetArg: ArgSpec = { type: 'string', maxLength: 64, pattern: TARGET_NAME.source.slice(1, -1), description: 'a configured backup target' };

/** Checks the named target before anything in the message runs. */
function prepareTarget(action: Action, required: boolean) {
  return (given: Record<string, string>, config: Config) => {
    const converted = convertArgs(given, action.args);
    if (!converted.ok) return converted;
    if (given.target === undefined) return required ? { ok: false as const, problems: [`missing target=…: ${action.example}`] } : converted;
    if (!targetNamed(config, given.target)) return { ok: false as const, problems: [unknownTarget(config, given.target)] };
    return converted;
  };
}

/** One backup at a time per target in this process: a second run would only race the first for the same files. */
const running = new Map<string, Promise<BackupResult>>();

/** Runs a backup of the target; rejects with a CommandError saying what went wrong. */
function runBackup(config: Config, name: string, now: Date): Promise<BackupResult> {
  const spec = target(config, name);
  if (running.has(name)) throw new CommandError(`backup ${name} is already running (started by another request or its schedule)`);
  const work = (async () => {
    await fsp().mkdir(spec.destination, { recursive: true, mode: 0o750 }).catch(() => undefined); // createBackup says why it cannot write
    return archive().createBackup(
      { target: name, sources: spec.sources, exclude: spec.exclude ?? [], destination: spec.destination, level: spec.compressionLevel ?? DEFAULT_LEVEL },
      { now, keep: spec.keep ?? DEFAULT_KEEP },
    );
  })();
  running.set(name, work);
  const forget = () => running.get(name) === work && running.delete(name);
  work.then(forget, forget);
  return work;
}

function resultText(name: string, r: BackupResult): string {
  const lines = [
    `backup ${name}: archive ${r.id} written in ${seconds(r.durationMs)}`,
    `file:    ${r.file}`,
    `size:    ${formatBytes(r.bytes)} (${r.bytes} bytes)`,
    `files:   ${r.files} (${r.entries} entries${r.skipped ? `; ${r.skipped} sockets, FIFOs or devices left out` : ''})`,
    `sha256:  ${r.sha256}`,
  ];
  if (r.pruned.length) lines.push(`removed by retention: ${r.pruned.join(', ')}`);
  if (r.pruneError) lines.push(`retention failed (the new archive is complete and kept): ${r.pruneError}`);
  return lines.join('\n');
}

const run: Action = {
  summary: 'back the target up now: a tar.gz archive with its SHA-256, size and file count; older archives beyond keep are removed',
  example: 'backup run target=etc',
  args: { target: { ...targetArg, required: true } },
  positional: ['target'],
  mutates: true,
  prepare: (given, config) => prepareTarget(run, true)(given, config),
  run: async (args, ctx) => {
    const cfg = section(ctx.config);
    const name = String(args.target);
    const work = runBackup(ctx.config, name, ctx.now()).then((r): Result => ({ kind: 'text', text: resultText(name, r) }));
    track(work);
    return resultOrFollowUp(ctx, work, {
      title: `backup ${name}`,
      replyAfterMs: (cfg.replyAfterSeconds ?? DEFAULT_REPLY_AFTER_SECONDS) * 1000,
      started: `backup ${name}: started`,
    });
  },
};

const archiveRow = (name: string, a: ArchiveInfo) => [name, a.id, formatTime(a.createdAt), formatBytes(a.bytes), a.bytes, a.sha256 ?? '(no digest recorded)'];

const list: Action = {
  summary: 'the archives of one target or all, newest first: date, size and SHA-256',
  example: 'backup list target=etc',
  args: { target: targetArg },
  positional: ['target'],
  mutates: false,
  prepare: (given, config) => prepareTarget(list, false)(given, config),
  run: async (args, ctx) => {
    const cfg = section(ctx.config);
    const names = args.target !== null ? [String(args.target)] : Object.keys(cfg.targets);
    const rows: unknown[][] = [];
    for (const name of names) {
      const spec = target(ctx.config, name);
      const archives = await archive().listArchives(spec.destination, name); // none yet: the first run creates the destination
      rows.push(...archives.map((a) => archiveRow(name, a)));
    }
    return { kind: 'table', columns: ['target', 'id', 'created', 'size', 'bytes', 'sha256'], rows, name: 'backups' };
  },
};

const verify: Action = {
  summary: 'reads an archive again (the newest, or id=…): its SHA-256 against the recorded one, and that it lists to the end',
  example: 'backup verify target=etc',
  args: {
    target: { ...targetArg, required: true },
    id: { type: 'string', maxLength: 40, pattern: '[0-9]{8}T[0-9]{6}Z(-[0-9]{1,6})?', description: 'an archive id from backup list (default: the newest)' },
  },
  positional: ['target', 'id'],
  mutates: false,
  prepare: (given, config) => prepareTarget(verify, true)(given, config),
  run: async (args, ctx) => {
    const name = String(args.target);
    const spec = target(ctx.config, name);
    const archives = await archive().listArchives(spec.destination, name);
    const chosen = args.id !== null ? archives.find((a) => a.id === args.id) : archives[0];
    if (!chosen) throw new CommandError(args.id !== null ? `backup ${name} has no archive ${args.id} (backup list target=${name} shows them)` : `backup ${name} has no archives yet`);
    const result = await archive().verifyArchive(chosen);
    const head = `backup ${name}, archive ${chosen.id} (${formatBytes(chosen.bytes)}): ${result.entries} entries, sha256 ${result.sha256}`;
    if (!result.ok) throw new CommandError(`${head}\nNOT OK:\n${result.problems.map((p) => `  - ${p}`).join('\n')}`);
    return { kind: 'text', text: `${head}\nOK: the digest matches the recorded one and the archive reads to its end` };
  },
};

/** The target of a stored schedule key, when it is a backup's. */
const backupOfKey = (key: string): string | undefined => (key.startsWith('backup:') ? key.slice('backup:'.length) : undefined);

const schedule = scheduleAction({
  service: 'backup',
  noun: 'backup',
  arg: 'target',
  argSpec: targetArg,
  example: 'backup schedule set target=etc cron="30 1 * * *"',
  keyOf: (name) => scheduleKey('backup', name),
  nameOf: backupOfKey,
  exists: (config, name) => targetNamed(config, name) !== undefined,
  unknown: unknownTarget,
  timezone: (config) => config.services.backup?.timezone,
});

/** Stored backup schedules, fired by `watch`; each result is mailed to whoever set it (or the target's notify address). */
async function timed(config: Config, store: ServiceStore): Promise<TimedList> {
  const cfg = section(config);
  const list: TimedList = { tasks: [], ignored: [] };
  for (const s of await store.listSchedules()) {
    const name = backupOfKey(s.job);
    if (name === undefined) continue;
    const spec = targetNamed(config, name);
    if (!spec) {
      list.ignored!.push({ key: s.job, message: `schedule of backup ${name} ignored: the target is not in the config`, fields: { target: name } });
      continue;
    }
    list.tasks.push({
      key: s.job,
      title: `backup ${name}`,
      when: { cron: s.cron, ...(cfg.timezone && { timezone: cfg.timezone }) },
      setAt: s.setAt,
      fire: async ({ config, now, log, notify, scheduledAt }) => {
        log('info', `backup ${name} started by its schedule`, { target: name, scheduledAt: scheduledAt.toISOString() });
        let outcome: Notice['outcome'];
        try {
          const result = await runBackup(config, name, now());
          log('info', `backup ${name} written: ${result.id}`, { target: name, id: result.id, bytes: result.bytes, files: result.files, ms: result.durationMs });
          outcome = { ok: true, result: { kind: 'text', text: resultText(name, result) } };
        } catch (err) {
          log('warn', `backup ${name} failed: ${(err as Error).message}`, { target: name });
          outcome = { ok: false, error: (err as Error).message };
        }
        const to = scheduledRecipient(config, spec.notify, s.setBy);
        if (!notify || !to) return;
        await notify(`${s.job}#${scheduledAt.getTime()}`, { to, subject: `backup ${name} ${outcome.ok ? 'finished' : 'failed'}`, command: `backup run target=${name} (scheduled "${s.cron}")`, outcome });
      },
    });
  }
  return list;
}

function checkConfig(raw: unknown, path: string): Problem[] {
  const cfg = raw as BackupServiceConfig;
  const problems: Problem[] = timezoneProblems(cfg.timezone, `${path}.timezone`);
  for (const [name, spec] of Object.entries(cfg.targets)) {
    const at = `${path}.targets.${name}`;
    if (!TARGET_NAME.test(name)) problems.push({ path: at, message: 'a target name is 1-64 letters, digits, "_" or "-", starting with a letter or digit' });
    // Relative paths are relative to the same folder (the config file's), so like compares with like.
    const destination = normalize(spec.destination);
    spec.sources.forEach((given, i) => {
      const source = normalize(given);
      if (isAbsolute(source) !== isAbsolute(destination)) return;
      const within = (inner: string, outer: string) => inner === outer || inner.startsWith(outer.endsWith('/') ? outer : `${outer}/`);
      if (within(source, destination) || within(destination, source)) {
        problems.push({ path: `${at}.sources[${i}]`, message: `overlaps the destination ${spec.destination}: the backup would archive its own archives` });
      }
    });
  }
  return problems;
}

/** Sources readable, destination writable (or creatable) with its free space. */
async function probe(config: Config): Promise<ProbeResult[]> {
  const rows: ProbeResult[] = [];
  for (const [name, spec] of Object.entries(section(config).targets)) {
    const missing: string[] = [];
    for (const source of spec.sources) {
      try {
        await fsp().access(source, fsConstants.R_OK);
      } catch (err) {
        missing.push(`${source} (${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'not readable'})`);
      }
    }
    if (missing.length) {
      rows.push({ target: name, ok: false, detail: `source ${missing.join(', ')}` });
      continue;
    }
    try {
      const dest = await fsp().stat(spec.destination);
      if (!dest.isDirectory()) throw new Error(`${spec.destination} is not a directory`);
      await fsp().access(spec.destination, fsConstants.W_OK);
      const fs = await fsp().statfs(spec.destination);
      const archives = await archive().listArchives(spec.destination, name);
      rows.push({ target: name, ok: true, detail: `${spec.sources.length} source(s) → ${spec.destination}: ${archives.length} archive(s), ${formatBytes(fs.bavail * fs.bsize)} free` });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      rows.push({
        target: name,
        ok: false,
        detail: code === 'ENOENT' ? `destination ${spec.destination} does not exist (the first run creates it)` : `destination: ${(err as Error).message}`,
      });
    }
  }
  return rows;
}

export const backup: Service = {
  name: 'backup',
  summary: 'back up configured directories to tar.gz archives, now or on a schedule; list and verify them',
  actions: { run, list, verify, schedule },
  checkConfig,
  timed,
  helpDetails: (config) => {
    const lines = ['Targets:'];
    for (const [name, spec] of Object.entries(config.services.backup?.targets ?? {})) {
      lines.push(`  ${name}${spec.description ? ` - ${spec.description}` : ''}: ${spec.sources.join(', ')} → ${spec.destination}, keeps ${spec.keep ?? DEFAULT_KEEP}`);
    }
    return lines;
  },
  probe,
};
