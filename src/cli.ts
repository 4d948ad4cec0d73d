import type { Argv } from 'yargs';
import { EXIT, UserError } from './core/errors';
import { VERSION } from './version';

/**
 * The CLI is a list of commands. Each entry declares its flags here and loads its handler only
 * when it runs, so `--help` and `--version` never pay for mail, SQL or IMAP modules.
 */
interface CommandEntry {
  command: string;
  describe: string;
  flags: (y: Argv) => Argv;
  load: () => { handler: (argv: Record<string, unknown>) => Promise<number> };
}

const commands: CommandEntry[] = [
  {
    command: 'watch',
    describe: 'Watch the mailbox (IMAP IDLE) and answer command mails as they arrive',
    flags: (y) =>
      y
        .option('once', { type: 'boolean', describe: 'Process what is waiting, drain the outbox, exit' })
        .option('dry-run', { type: 'boolean', describe: 'Parse and authorize, log the replies, execute nothing' }),
    load: () => require('./commands/watch'),
  },
  {
    command: 'run',
    describe: 'Process one RFC 822 message from stdin (procmail, MTA pipe, cron)',
    flags: (y) =>
      y
        .option('print', { type: 'boolean', describe: 'Write the reply message to stdout instead of sending it' })
        .option('sender', {
          type: 'string',
          describe: 'Envelope sender from the MTA (e.g. Postfix ${sender}); "" means a bounce',
        }),
    load: () => require('./commands/run'),
  },
  {
    command: 'users <action> [address]',
    describe: 'Manage the allow list: users, roles, TOTP enrolment',
    flags: (y) =>
      y
        .positional('action', {
          choices: ['list', 'add', 'remove', 'set-roles', 'enroll-totp', 'set-pgp-key'] as const,
          describe: 'What to do',
        })
        .positional('address', { type: 'string', describe: 'The user\'s e-mail address' })
        .option('roles', { type: 'string', describe: 'Comma-separated roles (add, set-roles)' })
        .option('name', { type: 'string', describe: 'Display name (add)' })
        .option('key-file', { type: 'string', describe: 'Armored public key file (set-pgp-key)' })
        .option('json', { type: 'boolean', describe: 'Machine-readable output (list)' }),
    load: () => require('./commands/users'),
  },
  {
    command: 'test-service [name..]',
    describe: 'Probe the mailbox, SMTP, state store, audit log and every configured adapter; exit 69 if any fails',
    flags: (y) =>
      y
        .positional('name', { type: 'string', array: true, describe: 'Only these (imap, smtp, state, audit, or a service)' })
        .option('json', { type: 'boolean', describe: 'Machine-readable output' })
        .option('timeout', { type: 'string', describe: 'Per probe, e.g. 5s (default), 1500ms' }),
    load: () => require('./commands/test-service'),
  },
  {
    command: 'config <action>',
    describe: 'Check the config: print it resolved as JSON (secrets stay references), or list every problem (exit 78)',
    flags: (y) => y.positional('action', { choices: ['check'] as const, describe: 'What to do' }),
    load: () => require('./commands/config'),
  },
  {
    command: 'auth <action>',
    describe: 'OAuth2 login of the mailbox: device login (prints a URL and a code) or its status',
    flags: (y) =>
      y
        .positional('action', { choices: ['login', 'status'] as const, describe: 'What to do' })
        .option('for', { choices: ['imap', 'smtp'] as const, describe: 'Only this login (default: both)' })
        .option('provider', { choices: ['google', 'microsoft', 'generic'] as const, describe: 'Only logins with this provider (login)' })
        .option('json', { type: 'boolean', describe: 'Machine-readable output (status)' }),
    load: () => require('./commands/auth'),
  },
  {
    command: 'health',
    describe: 'Is the agent working? From the state store; exit 0 healthy, 1 degraded, 2 down, 3 unknown',
    flags: (y) => y.option('json', { type: 'boolean', describe: 'Machine-readable output' }),
    load: () => require('./commands/health'),
  },
  {
    command: 'completion [shell]',
    describe: 'Print a shell completion script (default: for $SHELL)',
    flags: (y) => y.positional('shell', { choices: ['bash', 'zsh'] as const, describe: 'The shell' }),
    load: () => require('./commands/completion'),
  },
  {
    // `mailagent help` alone (and --help) is yargs' help; only `help <format>` comes here.
    command: 'help <format>',
    describe: 'Print the manual of the mail command language (docs/commands.md)',
    flags: (y) => y.positional('format', { choices: ['markdown'] as const, describe: 'Output format' }),
    load: () => require('./commands/help'),
  },
];

function printError(err: unknown, debug: boolean): number {
  if (err instanceof UserError) {
    process.stderr.write(`mailagent: ${err.message}\n${err.hint ? `hint: ${err.hint}\n` : ''}`);
    return err.exitCode;
  }
  process.stderr.write(
    debug && err instanceof Error ? `${err.stack}\n` : `mailagent: internal error: ${String(err)} (--debug for details)\n`,
  );
  // A bug must not make an MTA bounce a mail to a possibly forged sender: ask it to retry.
  return EXIT.TEMPFAIL;
}

async function runHandler(entry: CommandEntry, args: Record<string, unknown>): Promise<number> {
  try {
    return await entry.load().handler(args);
  } catch (err) {
    return printError(err, Boolean(args.debug));
  }
}

const PLAIN_RUN_FLAGS: Record<string, 'boolean' | 'string'> = { '--print': 'boolean', '--debug': 'boolean', '--config': 'string', '--sender': 'string' };

/**
 * `run` starts once per mail (MTA pipe, procmail), so its everyday forms (`run --print --config
 * FILE --sender ADDR`, each flag at most once, values as separate words not starting with "-")
 * are read here without loading yargs, ~10 ms of start-up. Anything else, help and usage errors
 * included, returns undefined and goes through yargs as before.
 */
function plainRunArgs(argv: string[]): Record<string, unknown> | undefined {
  if (argv[0] !== 'run') return undefined;
  const args: Record<string, unknown> = { _: ['run'] };
  for (let i = 1; i < argv.length; i++) {
    const type = Object.hasOwn(PLAIN_RUN_FLAGS, argv[i]) ? PLAIN_RUN_FLAGS[argv[i]] : undefined;
    const key = argv[i].slice(2);
    if (!type || key in args) return undefined;
    if (type === 'boolean') {
      args[key] = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined || value.startsWith('-')) return undefined;
    args[key] = value;
  }
  return args;
}

export async function main(argv: string[]): Promise<number> {
  // yargs reads a `help` word as --help; `help --markdown` is the manual, like `help markdown`.
  if (argv[0] === 'help' && argv.includes('--markdown')) argv = ['help', 'markdown', ...argv.slice(1).filter((a) => a !== '--markdown')];
  const plainRun = plainRunArgs(argv);
  if (plainRun) return runHandler(commands.find((c) => c.command === 'run')!, plainRun);

  // Loaded here, not imported at the top: the bundle would initialize it at start-up.
  const { default: yargs } = await import('yargs/yargs');
  let exitCode: number = EXIT.OK;
  const cli = yargs(argv)
    .scriptName('mailagent')
    .usage('$0 <command> [options]\n\nRun sysadmin commands sent by e-mail.')
    .version(VERSION)
    .option('config', { type: 'string', describe: 'Config file (default: search from the working directory)' })
    .option('debug', { type: 'boolean', describe: 'Print stack traces for internal errors' })
    .strict()
    .demandCommand(1, `no command given (one of: ${commands.map((c) => c.command.split(' ')[0]).join(', ')})`)
    .recommendCommands()
    .wrap(Math.min(100, process.stdout.columns || 100))
    .fail((msg, err) => {
      // Throwing stops yargs from running the handler after a usage error.
      throw err ?? new UserError(msg, EXIT.USAGE, "run 'mailagent --help' for usage");
    });
  for (const entry of commands) {
    cli.command(entry.command, entry.describe, entry.flags, async (args) => {
      exitCode = await runHandler(entry, args as Record<string, unknown>);
    });
  }
  await cli.parseAsync();
  return exitCode;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.exitCode = printError(err, process.argv.includes('--debug'));
  },
);
