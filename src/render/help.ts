import type { Config, QueryParam, UserConfig } from '../config/types';
import { mayUse } from '../auth/roles';
import { configuredServices, type Registry } from '../core/request';
import { describeArgs } from '../services/args';
import type { Action, ArgSpec } from '../services/types';
import { VERSION } from '../version';

/** `db query <name> [db=...] [key=value...]`: positional words, then key=value arguments (required ones without brackets). */
function usage(service: string, name: string, action: Action): string {
  const positional = action.positional ?? [];
  const words = positional.map((p) => (action.args[p]?.required ? `<${p}>` : `[${p}]`));
  const options = Object.keys(action.args)
    .filter((a) => !positional.includes(a))
    .map((o) => (action.args[o].required ? `${o}=...` : `[${o}=...]`));
  const extra = action.extraArgs ? ' [key=value...]' : '';
  return [service, name, ...words, ...options].join(' ') + extra;
}

const LANGUAGE = [
  'How to write a request:',
  '  one command per line; values with spaces go in "double quotes";',
  '  end a line with \\ to continue it on the next one;',
  '  key<<END gives key the lines that follow, up to a line END (e.g. a mail body);',
  '  files attached to your mail are used by name (attach=report.pdf);',
  '  reading stops at "quit", "thanks", a signature line "--" or quoted text;',
  '  if any line is wrong, nothing runs and the reply lists every problem.',
];

/** The example, its here-document lines aligned under its first line. */
function exampleLines(action: Action, indent: string): string[] {
  if (!action.example) return [];
  const [first, ...rest] = action.example.split('\n');
  return [`${indent}e.g. ${first}`, ...rest.map((l) => `${indent}     ${l}`)];
}

/**
 * `help` or `help <service>`, generated from the registry so it always matches what runs. Only
 * actions the sender's roles may use are shown; `help` leaves out services that grant none.
 */
export function renderHelp(services: Registry, config: Config, user: UserConfig, serviceName?: string): string {
  const names = serviceName ? [serviceName] : configuredServices(config, services);
  const lines: string[] = [];
  if (!serviceName) {
    lines.push(`mailagent ${VERSION}: commands you can send`, '', '  help [service]  this text, or the details of one service', '  status          the agent\'s version and state', '');
  }
  let shown = 0;
  for (const name of names) {
    const service = services[name];
    const allowed = Object.entries(service.actions).filter(([a]) => mayUse(config, user, name, a));
    if (!allowed.length) {
      if (serviceName) lines.push(`${name}: ${service.summary}`, '  (your roles grant no actions here)', '');
      continue;
    }
    shown++;
    lines.push(`${name}: ${service.summary}`);
    const width = Math.max(...allowed.map(([a, act]) => usage(name, a, act).length));
    for (const [a, action] of allowed) {
      lines.push(`  ${usage(name, a, action).padEnd(width)}  ${action.summary}${action.mutates ? ' (changes data)' : ''}`);
      if (serviceName) for (const arg of describeArgs(action.args)) lines.push(`      ${arg}`);
      lines.push(...exampleLines(action, '      '));
    }
    // Details only of what the sender may use (a viewer does not see the named updates).
    if (serviceName && service.helpDetails) lines.push('', ...service.helpDetails(config, (a) => mayUse(config, user, name, a)));
    lines.push('');
  }
  if (!serviceName && !shown) lines.push('(your roles grant no actions of the services on this agent)', '');
  lines.push(...LANGUAGE);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// The manual: `mailagent help markdown`, committed as docs/commands.md. It depends on the
// registry only (no config), so it is the same on every machine.

/** Text outside code: no HTML tags (`<uid>`), emphasis or escapes by accident. */
const prose = (text: string) =>
  text.replace(/[\\*_]/g, '\\$&').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
/** A table cell: prose on one line, pipes escaped. */
const cell = (text: string) => prose(text).replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
const code = (text: string) => `\`${text}\``;

function typeOf(spec: QueryParam): string {
  switch (spec.type) {
    case 'enum':
      return `one of ${(spec.values ?? []).map(code).join(', ')}`;
    case 'int':
    case 'number': {
      if (spec.min !== undefined && spec.max !== undefined) return `${spec.type}, ${spec.min} to ${spec.max}`;
      if (spec.min !== undefined) return `${spec.type}, at least ${spec.min}`;
      if (spec.max !== undefined) return `${spec.type}, at most ${spec.max}`;
      return spec.type;
    }
    case 'bool':
      return 'yes or no';
    case 'date':
      return 'date (YYYY-MM-DD)';
    default:
      return spec.maxLength !== undefined ? `text, up to ${spec.maxLength} characters` : 'text';
  }
}

function requirement(spec: QueryParam): string {
  if (spec.required) return 'required';
  if (spec.default === undefined) return 'optional';
  const value = spec.type === 'bool' ? (spec.default ? 'yes' : 'no') : String(spec.default);
  return `default ${code(value)}`;
}

/** `(see the list below)` in `help <service>` means the config's names, which the manual cannot list. */
const described = (service: string, text: string) => text.replace('see the list below', `\`help ${service}\` lists them`);

function argumentTable(service: string, action: Action): string[] {
  const positional = action.positional ?? [];
  const rows = Object.entries(action.args).map(([name, spec]: [string, ArgSpec]) => {
    const at = positional.indexOf(name);
    const where = at >= 0 ? ` (or word ${at + 1})` : '';
    // typeOf() is Markdown already: only its pipes need escaping in a table.
    return `| ${code(`${name}=`)}${where} | ${typeOf(spec).replace(/\|/g, '\\|')} | ${requirement(spec)} | ${cell(described(service, spec.description))} |`;
  });
  if (action.extraArgs) rows.push(`| ${code('key=value')} … | text | as declared | ${cell(described(service, action.extraArgs))} |`);
  if (!rows.length) return ['No arguments.'];
  return ['| argument | type | required | description |', '|---|---|---|---|', ...rows];
}

function changes(action: Action): string {
  if (!action.mutates) return 'Changes data: no.';
  const when = action.mutatesWhen ? ', in the forms that change something (see above)' : '';
  return `Changes data: **yes**${when}. By default it needs strong evidence: a one-time code, a PGP signature or a confirmation by reply.`;
}

const RULES = [
  '- One command per line: `<service> <action> [word…] [key=value…]`. Bare words fill the',
  '  action\'s positional arguments in order (`files get logs app.log` is `files get share=logs path=app.log`).',
  '- Values with spaces go in double quotes: `subject="Nightly report"`; inside them `\\"` is a quote',
  '  and `\\\\` a backslash.',
  '- A line ending in `\\` continues on the next line. Blank lines and lines starting with `#` are ignored.',
  '- Here-document: a command ending in `key<<END` gives `key` every following line, as written,',
  '  up to a line that is only `END`.',
  '- Files attached to the request mail are used by their file name (`files put`, `mail send attach=…`).',
  '- Reading stops at `quit`, `thanks`, a signature line `--` or quoted text.',
  '- Every line is checked before anything runs: if one is wrong or not allowed for your roles,',
  '  nothing runs and the reply lists every problem.',
  '- An action that changes data needs strong evidence by default: a line `otp=123456` with the',
  '  current one-time code, a PGP signature, or a reply with the `confirm=…` line the agent sends back.',
];

const BUILTINS = [
  '| command | what it does |',
  '|---|---|',
  '| `help` | every command you may send, with an example of each |',
  '| `help <service>` | one service: the arguments of its actions and what the config offers (named queries, jobs, shares, accounts) |',
  '| `status` | the agent\'s version and state: services, your roles, journal counts, outbox |',
];

/** The manual of the command language, in Markdown, for every service in the registry. */
export function renderManual(services: Registry): string {
  const out: string[] = [
    '<!-- Generated from the service metadata (src/services) by `mailagent help markdown`; do not edit.',
    '     Regenerate: mailagent help markdown > docs/commands.md -->',
    '',
    '# The mailagent command language',
    '',
    'Requests are mails to the agent\'s address; each command goes on its own line of the text, and',
    'the reply quotes every command with its result. This page lists every action mailagent knows.',
    'An agent offers only the services its config sets up, and each user only what their roles',
    'grant: `help` in a mail shows exactly that. The [README](../README.md#the-command-language)',
    'explains the rest: which text of a mail is read, who gets an answer, evidence and confirmation.',
    '',
    '## Rules',
    '',
    ...RULES,
    '',
    '## Built-in commands',
    '',
    ...BUILTINS,
    '',
    '## Services',
    '',
    ...Object.values(services).map((s) => `- [${s.name}](#${s.name}): ${prose(s.summary)}`),
  ];
  for (const service of Object.values(services)) {
    out.push('', `## ${service.name}`, '', `${prose(service.summary)}.`);
    for (const [name, action] of Object.entries(service.actions)) {
      out.push(
        '',
        `### ${service.name} ${name}`,
        '',
        `${prose(action.summary)}.`,
        '',
        '```',
        usage(service.name, name, action),
        '```',
        '',
        ...argumentTable(service.name, action),
        '',
        changes(action),
      );
      if (action.example) out.push('', 'Example:', '', '```', ...action.example.split('\n'), '```');
    }
  }
  return `${out.join('\n')}\n`;
}
