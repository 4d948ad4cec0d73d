import type { Config, UserConfig } from '../config/types';
import { isAllowed, mayUse } from '../auth/roles';
import { convertArgs } from '../services/args';
import type { Action, RequestInfo, Service } from '../services/types';

export type Registry = Record<string, Service>;
import { HEREDOC, type BodyLine } from './lines';
import { tokenize } from './tokenize';

/** One validated command, ready to run. */
export type Command =
  | { kind: 'help'; line: number; text: string; service?: string }
  | { kind: 'status'; line: number; text: string }
  | { kind: 'action'; line: number; text: string; service: string; action: string; mutates: boolean; args: Record<string, unknown>; usesAttachments?: boolean };

export interface Request {
  commands: Command[];
  /** Every problem found; when there is any, nothing in the message runs. */
  problems: string[];
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

function suggestion(word: string, choices: string[]): string {
  const close = choices.filter((c) => distance(word.toLowerCase(), c) <= 2);
  return close.length ? ` — did you mean ${close.map((c) => `"${c}"`).join(' or ')}?` : '';
}

/** Names the action's arguments: positional words first, then key=value pairs. */
function collectArgs(action: Action, words: string[], pairs: [string, string][]): { args: Record<string, string>; problem?: string } {
  // No prototype: `__proto__=x` or `constructor=x` from a mail are plain (unknown) names.
  const args: Record<string, string> = Object.create(null);
  const positional = action.positional ?? [];
  if (words.length > positional.length) {
    return { args, problem: `unexpected word "${words[positional.length]}"${positional.length ? '' : ' (arguments are key=value)'}` };
  }
  words.forEach((w, i) => (args[positional[i]] = w));
  for (const [key, value] of pairs) {
    if (Object.hasOwn(args, key)) return { args, problem: `${key} is given twice` };
    args[key] = value;
  }
  return { args };
}

export function configuredServices(config: Config, services: Registry): string[] {
  return Object.keys(services).filter((name) => Object.hasOwn(config.services, name));
}

function readCommand(entry: BodyLine, config: Config, user: UserConfig, services: Registry, info: RequestInfo): { command?: Command; problem?: string } {
  if (entry.problem) return { problem: entry.problem };
  // A here-document's `key<<WORD` stands for key=<its lines>.
  const { tokens, problem } = tokenize(entry.heredoc ? entry.text.replace(HEREDOC, '') : entry.text);
  if (problem) return { problem };
  if (entry.heredoc) tokens.push({ key: entry.heredoc.key, value: entry.heredoc.value });
  const [first, second] = tokens;
  if (first.key !== undefined) return { problem: 'a command starts with a service name, e.g. "db query …"' };
  const head = first.value.toLowerCase();
  const available = configuredServices(config, services);

  if (head === 'help' || head === 'status') {
    if (head === 'status' && tokens.length > 1) return { problem: 'status takes no arguments' };
    if (tokens.length > 2 || second?.key !== undefined) return { problem: 'usage: help [service]' };
    const service = second?.value.toLowerCase();
    if (service && !available.includes(service)) {
      return { problem: `no service "${second.value}"${suggestion(service, available)} (services: ${available.join(', ')})` };
    }
    return { command: head === 'help' ? { kind: 'help', ...entry, service } : { kind: 'status', ...entry } };
  }

  if (!Object.hasOwn(services, head)) {
    const builtins = ['help', 'status', ...available];
    return { problem: `unknown command "${first.value}"${suggestion(head, builtins)} (known: ${builtins.join(', ')})` };
  }
  if (!available.includes(head)) return { problem: `the ${head} service is not configured on this agent` };
  const service = services[head];
  const actionNames = Object.keys(service.actions);
  if (!second || second.key !== undefined) return { problem: `${head} needs an action: ${actionNames.join(', ')}` };
  const actionName = second.value.toLowerCase();
  const action = Object.hasOwn(service.actions, actionName) ? service.actions[actionName] : undefined;
  if (!action) {
    return { problem: `unknown action "${second.value}" for ${head}${suggestion(actionName, actionNames)} (actions: ${actionNames.join(', ')})` };
  }
  const rest = tokens.slice(2);
  const { args, problem: argProblem } = collectArgs(
    action,
    rest.filter((t) => t.key === undefined).map((t) => t.value),
    rest.filter((t) => t.key !== undefined).map((t) => [t.key!, t.value]),
  );
  if (argProblem) return { problem: argProblem };
  if (!isAllowed(config, user, head, actionName, args)) {
    const narrower = mayUse(config, user, head, actionName) ? ' with these arguments' : '';
    return { problem: `not allowed: your roles do not grant ${head}:${actionName}${narrower}` };
  }
  const prepared = action.prepare ? action.prepare(args, config, info) : convertArgs(args, action.args);
  if (!prepared.ok) return { problem: prepared.problems.join('; ') };
  const mutates = action.mutatesWhen?.(prepared.args) ?? action.mutates;
  return { command: { kind: 'action', ...entry, service: head, action: actionName, mutates, args: prepared.args, usesAttachments: prepared.usesAttachments } };
}

/**
 * Validates every line of a message; the caller runs nothing unless `problems` is empty. Lines
 * past the command cap are not read (the caller reads at most one more than the cap).
 */
export function readRequest(lines: BodyLine[], config: Config, user: UserConfig, services: Registry, info: RequestInfo = { attachments: [] }): Request {
  const problems: string[] = [];
  const commands: Command[] = [];
  const cap = config.limits.maxCommands;
  if (lines.length > cap) problems.push(`too many commands: more than ${cap} (at most ${cap} per message)`);
  for (const entry of lines.slice(0, cap)) {
    const where = entry.line === 0 ? 'subject' : `line ${entry.line}`;
    const quoted = entry.text.length > 80 ? `${entry.text.slice(0, 77)}…` : entry.text;
    if (Buffer.byteLength(entry.text) > config.limits.maxLineBytes) {
      problems.push(`${where}: "${quoted}": longer than ${config.limits.maxLineBytes} bytes`);
      continue;
    }
    const { command, problem } = readCommand(entry, config, user, services, info);
    if (problem) problems.push(`${where}: "${quoted}": ${problem}`);
    else commands.push(command!);
  }
  return { commands, problems };
}
