import type { Config } from '../config/types';
import { CommandError } from '../core/errors';
import type { Schedule } from '../state/service-store';
import { convertArgs } from './args';
import { cronProblem, formatTime, nextFiring } from './jobs/cron';
import { serviceStoreFor } from './stores';
import type { Action, ArgSpec } from './types';

/** What differs between the services whose things can be scheduled (jobs, backup targets). */
export interface Schedulable {
  /** The service's name, as in the command ("jobs schedule …"). */
  service: string;
  /** What is scheduled, in replies: "job", "backup". */
  noun: string;
  /** The argument that names it ("name" for jobs, "target" for backups). */
  arg: string;
  argSpec: ArgSpec;
  example: string;
  /** The store key of its schedule, and back (undefined: a schedule of another service). */
  keyOf: (name: string) => string;
  nameOf: (key: string) => string | undefined;
  exists: (config: Config, name: string) => boolean;
  unknown: (config: Config, name: string) => string;
  /** Why this one cannot run on a schedule, if it cannot. */
  unschedulable?: (config: Config, name: string) => string | undefined;
  timezone: (config: Config) => string | undefined;
}

/** This service's schedules, by name. */
export async function schedulesOf(config: Config, of: Pick<Schedulable, 'nameOf'>): Promise<Map<string, Schedule>> {
  const all = await (await serviceStoreFor(config)).listSchedules();
  const mine = new Map<string, Schedule>();
  for (const schedule of all) {
    const name = of.nameOf(schedule.job);
    if (name !== undefined) mine.set(name, schedule);
  }
  return mine;
}

/** `<service> schedule [set|clear] <name> [cron="…"]`: the same verbs and replies for every schedulable service. */
export function scheduleAction(of: Schedulable): Action {
  const usage = `${of.service} schedule | ${of.service} schedule set <${of.noun}> cron="…" | ${of.service} schedule clear <${of.noun}>`;
  const args: Record<string, ArgSpec> = {
    verb: { type: 'enum', values: ['list', 'set', 'clear'], default: 'list', description: 'list (the default), set or clear' },
    [of.arg]: { ...of.argSpec, description: `the ${of.noun} (set, clear)` },
    cron: { type: 'string', maxLength: 200, description: 'cron expression, e.g. "0 2 * * *" (set)' },
  };
  const action: Action = {
    summary: `show schedules with their next run; "set <${of.noun}> cron=…" or "clear <${of.noun}>" changes one`,
    example: of.example,
    args,
    positional: ['verb', of.arg],
    mutates: true,
    // Listing is a read; only set and clear change what will run.
    mutatesWhen: (given) => given.verb !== 'list',
    prepare: (given, config) => {
      const prepared = convertArgs(given, args);
      if (!prepared.ok) return prepared;
      const verb = prepared.args.verb;
      const name = given[of.arg];
      const problems: string[] = [];
      if (verb === 'list' && (name !== undefined || given.cron !== undefined)) problems.push(`usage: ${usage}`);
      if (verb === 'set' || verb === 'clear') {
        if (name === undefined) problems.push(`missing the ${of.noun} name: ${of.service} schedule ${verb} <${of.noun}>`);
        else if (verb === 'set' && !of.exists(config, name)) problems.push(of.unknown(config, name));
        else if (verb === 'set') {
          const problem = of.unschedulable?.(config, name);
          if (problem) problems.push(problem);
        }
      }
      if (verb === 'set') {
        if (given.cron === undefined) problems.push('missing cron="…", e.g. cron="0 2 * * *"');
        else {
          const problem = cronProblem(given.cron, of.timezone(config), new Date());
          if (problem) problems.push(problem);
        }
      }
      if (verb === 'clear' && given.cron !== undefined) problems.push('clear takes no cron=');
      return problems.length ? { ok: false, problems } : prepared;
    },
    run: async (given, ctx) => {
      const store = await serviceStoreFor(ctx.config);
      const timezone = of.timezone(ctx.config);
      const now = ctx.now();
      const name = String(given[of.arg]);
      if (given.verb === 'set') {
        const cron = String(given.cron);
        await store.setSchedule({ job: of.keyOf(name), cron, setBy: ctx.user ?? 'unknown', setAt: now.getTime() });
        return { kind: 'text', text: `${of.noun} ${name} is scheduled "${cron}"; next run ${formatTime(nextFiring(cron, timezone, now))}` };
      }
      if (given.verb === 'clear') {
        const cleared = await store.clearSchedule(of.keyOf(name));
        // One gone from the config may still have a schedule to clear; a name that is neither is a mistake.
        if (!cleared && !of.exists(ctx.config, name)) throw new CommandError(`${of.unknown(ctx.config, name)}, and no schedule of that name (nothing changed)`);
        return { kind: 'text', text: cleared ? `the schedule of ${of.noun} ${name} is cleared` : `${of.noun} ${name} had no schedule (nothing changed)` };
      }
      const rows = [...(await schedulesOf(ctx.config, of))].map(([name, s]) => [
        name,
        s.cron,
        of.exists(ctx.config, name) ? formatTime(nextFiring(s.cron, timezone, now)) : `(${of.noun} no longer configured: never runs)`,
        s.setBy,
        formatTime(s.setAt),
      ]);
      return { kind: 'table', columns: [of.noun, 'cron', 'next run', 'set by', 'set at'], rows, name: `${of.noun}-schedules`, ...(timezone && { note: `cron times are in ${timezone}` }) };
    },
  };
  return action;
}
