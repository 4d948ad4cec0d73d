import type { Cron as CronClass } from 'croner';

/**
 * Cron expressions through croner (5 fields, or 6 with seconds first; @daily and friends),
 * loaded on first use so that commands without schedules do not pay for it.
 */
function cron(expression: string, timezone?: string): CronClass {
  const { Cron } = require('croner') as typeof import('croner');
  return new Cron(expression, { paused: true, ...(timezone && { timezone }) });
}

/** Why an expression cannot be a schedule, or undefined when it can. */
export function cronProblem(expression: string, timezone: string | undefined, now: Date): string | undefined {
  try {
    if (!cron(expression, timezone).nextRun(now)) return `cron="${expression}" never fires`;
    return undefined;
  } catch (err) {
    return `cron="${expression}" is not a valid cron expression (${(err as Error).message.replace(/^CronPattern: /, '')})`;
  }
}

/** The first firing strictly after `after`, or undefined when there is none (or the expression is invalid). */
export function nextFiring(expression: string, timezone: string | undefined, after: Date): Date | undefined {
  try {
    return cron(expression, timezone).nextRun(after) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Times are shown in UTC with their zone, so a reply means the same thing wherever it is read. */
export function formatTime(date: Date | number | undefined): string {
  if (date === undefined) return '';
  return new Date(date).toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC');
}

/** A config problem when `timezone` is set and not a time zone this Node knows. */
export function timezoneProblems(timezone: string | undefined, path: string): { path: string; message: string }[] {
  if (timezone === undefined) return [];
  try {
    new Intl.DateTimeFormat('en', { timeZone: timezone });
    return [];
  } catch {
    return [{ path, message: `"${timezone}" is not a known time zone (e.g. Europe/Berlin, UTC)` }];
  }
}
