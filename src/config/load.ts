import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { EXIT, UserError } from '../core/errors';
import { services } from '../services/registry';
import schema from '../../config.schema.json';
import { checkSchema, type Problem, type SchemaNode } from './schema-check';
import { DEFAULT_LIMITS, type Config, type UserConfig } from './types';

const MODULE_NAME = 'mailagent';
/** .mjs/.js (ESM) configs are not offered: the single binary cannot import() at run time. */
const SEARCH_PLACES = [
  'mailagent.config.json',
  'mailagent.config.yaml',
  'mailagent.config.yml',
  'mailagent.config.cjs',
  '.mailagentrc',
  '.mailagentrc.json',
  '.mailagentrc.yaml',
  '.mailagentrc.yml',
  '.mailagentrc.cjs',
];

function stateDir(): string {
  return join(process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'mailagent');
}

export class ConfigError extends UserError {
  constructor(
    readonly file: string,
    readonly problems: Problem[],
  ) {
    super(
      `${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n` +
        problems.map((p) => `  ${p.path}: ${p.message}`).join('\n'),
      EXIT.CONFIG,
    );
  }
}

/**
 * Problems that a schema cannot express: references between parts of the file. Runs even when
 * the schema found problems, skipping any part whose shape is already wrong, so that every
 * problem is reported in one go.
 */
function crossCheck(raw: Record<string, any>, schemaProblems: Problem[]): Problem[] {
  const problems: Problem[] = [];
  const broken = (path: string) => schemaProblems.some((p) => p.path === path || p.path.startsWith(`${path}.`) || p.path.startsWith(`${path}[`));
  const roles = typeof raw.roles === 'object' && raw.roles !== null ? raw.roles : {};
  const seen = new Map<string, number>();
  (Array.isArray(raw.users) ? raw.users : []).forEach((user: UserConfig, i: number) => {
    if (broken(`users[${i}]`)) return;
    const address = user.address.toLowerCase();
    if (seen.has(address)) problems.push({ path: `users[${i}].address`, message: `duplicate of users[${seen.get(address)}]` });
    seen.set(address, i);
    user.roles.forEach((role, j) => {
      if (!(role in roles)) {
        problems.push({ path: `users[${i}].roles[${j}]`, message: `role "${role}" is not defined in roles` });
      }
    });
  });
  for (const [name, service] of Object.entries(services)) {
    const section = raw.services?.[name];
    if (section !== undefined && !broken(`services.${name}`)) problems.push(...service.checkConfig(section, `services.${name}`));
  }
  return problems;
}

/** Relative paths in the file are relative to the file, not to the working directory. */
function absolutise(path: string, configFile: string): string {
  return isAbsolute(path) ? path : resolve(dirname(configFile), path);
}

export function validateConfig(raw: unknown, file: string): Config {
  const problems = checkSchema(schema as unknown as SchemaNode, raw);
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) problems.push(...crossCheck(raw as Record<string, any>, problems));
  if (problems.length) throw new ConfigError(file, problems);
  const cfg = structuredClone(raw) as Record<string, any>;
  const services: Config['services'] = cfg.services ?? {};
  for (const db of Object.values(services.db?.databases ?? {})) db.sqlite.path = absolutise(db.sqlite.path, file);
  return {
    file,
    agent: cfg.agent,
    smtp: cfg.smtp,
    state: { path: absolutise(cfg.state?.path ?? join(stateDir(), 'state.db'), file) },
    audit: { path: absolutise(cfg.audit?.path ?? join(stateDir(), 'audit.jsonl'), file) },
    limits: { ...DEFAULT_LIMITS, ...cfg.limits },
    users: cfg.users,
    roles: cfg.roles ?? {},
    services,
  };
}

/**
 * Finds and validates the config: --config, then $MAILAGENT_CONFIG, then a search from the
 * working directory up to the home directory, then ~/.config/mailagent/.
 */
export async function loadConfig(explicit?: string): Promise<Config> {
  const { cosmiconfig } = require('cosmiconfig') as typeof import('cosmiconfig');
  const explorer = cosmiconfig(MODULE_NAME, { searchPlaces: SEARCH_PLACES, searchStrategy: 'global', cache: false });
  const chosen = explicit ?? process.env.MAILAGENT_CONFIG;
  let result: Awaited<ReturnType<typeof explorer.search>>;
  try {
    result = chosen ? await explorer.load(resolve(chosen)) : await explorer.search();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new UserError(`config file not found: ${resolve(chosen ?? '')}`, EXIT.CONFIG);
    throw new UserError(`cannot read config: ${e.message}`, EXIT.CONFIG);
  }
  if (!result) {
    throw new UserError(
      'no config file found',
      EXIT.CONFIG,
      'pass --config FILE, set MAILAGENT_CONFIG, or create mailagent.config.json (see config.example.json)',
    );
  }
  if (result.isEmpty) throw new ConfigError(result.filepath, [{ path: '(top level)', message: 'the file is empty' }]);
  return validateConfig(result.config, result.filepath);
}
