import type { Config, UserConfig } from '../config/types';
import { mayUse } from '../auth/roles';
import { configuredServices, type Registry } from '../core/request';
import { describeArgs } from '../services/args';
import type { Action } from '../services/types';
import { VERSION } from '../version';

function usage(service: string, name: string, action: Action): string {
  const words = (action.positional ?? []).map((p) => (action.args[p]?.required ? `<${p}>` : `[${p}]`));
  const options = Object.keys(action.args).filter((a) => !(action.positional ?? []).includes(a));
  const extra = action.extraArgs ? ' [key=value...]' : '';
  return [service, name, ...words, ...options.map((o) => `[${o}=...]`)].join(' ') + extra;
}

const LANGUAGE = [
  'How to write a request:',
  '  one command per line; values with spaces go in "double quotes";',
  '  end a line with \\ to continue it on the next one;',
  '  reading stops at "quit", "thanks", a signature line "--" or quoted text;',
  '  if any line is wrong, nothing runs and the reply lists every problem.',
];

/** `help` or `help <service>`, generated from the registry so it always matches what runs. */
export function renderHelp(services: Registry, config: Config, user: UserConfig, serviceName?: string): string {
  const names = serviceName ? [serviceName] : configuredServices(config, services);
  const lines: string[] = [];
  if (!serviceName) {
    lines.push(`mailagent ${VERSION}: commands you can send`, '', '  help [service]  this text, or the details of one service', '  status          the agent\'s version and state', '');
  }
  for (const name of names) {
    const service = services[name];
    const allowed = Object.entries(service.actions).filter(([a]) => mayUse(config, user, name, a));
    lines.push(`${name}: ${service.summary}`);
    if (!allowed.length) lines.push('  (your roles grant no actions here)');
    const width = Math.max(...allowed.map(([a, act]) => usage(name, a, act).length), 0);
    for (const [a, action] of allowed) {
      lines.push(`  ${usage(name, a, action).padEnd(width)}  ${action.summary}${action.mutates ? ' (changes data)' : ''}`);
      if (serviceName) for (const arg of describeArgs(action.args)) lines.push(`      ${arg}`);
    }
    if (serviceName && service.helpDetails) lines.push('', ...service.helpDetails(config));
    lines.push('');
  }
  lines.push(...LANGUAGE);
  return lines.join('\n');
}
