/**
 * Exit codes follow sysexits(3) so that an MTA calling `mailagent run` retries (75) instead of
 * bouncing. Every code the program can exit with is in this table.
 */
export const EXIT = {
  OK: 0,
  USAGE: 64,
  UNAVAILABLE: 69,
  TEMPFAIL: 75,
  CONFIG: 78,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error meant for the person at the terminal: printed as one line, no stack. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/** A problem with a request in a mail: reported in the reply, never crashes the agent. */
export class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandError';
  }
}
