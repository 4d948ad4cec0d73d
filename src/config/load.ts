import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { EXIT, UserError } from '../core/errors';
import { services } from '../services/registry';
import schema from '../../config.schema.json';
import { checkSchema, type Problem, type SchemaNode } from './schema-check';
import { DEFAULT_HEALTH, DEFAULT_HEARTBEAT, DEFAULT_LIMITS, DEFAULT_SECURITY, type Config, type UserConfig } from './types';

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
  for (const which of ['imap', 'smtp'] as const) {
    const section = raw[which];
    if (section?.oauth2 === undefined || broken(which)) continue;
    problems.push(...oauth2Problems(section, which));
  }
  if (raw.heartbeat !== undefined && !broken('heartbeat')) problems.push(...heartbeatProblems(raw));
  for (const [name, service] of Object.entries(services)) {
    const section = raw.services?.[name];
    if (section !== undefined && !broken(`services.${name}`)) problems.push(...service.checkConfig(section, `services.${name}`));
  }
  return problems;
}

/** An OAuth2 login: no password beside it, a user to log in as, the endpoints its provider needs. */
function oauth2Problems(section: { user?: string; password?: unknown; oauth2: Record<string, unknown> }, which: string): Problem[] {
  const problems: Problem[] = [];
  const o = section.oauth2;
  if (section.password !== undefined) problems.push({ path: `${which}.password`, message: 'use either password or oauth2, not both' });
  if (!section.user) problems.push({ path: `${which}.user`, message: 'is required with oauth2 (the account the tokens are for)' });
  if (o.provider === 'generic' && o.tokenUrl === undefined) problems.push({ path: `${which}.oauth2.tokenUrl`, message: 'is required for provider generic' });
  if (o.provider !== 'generic') {
    for (const key of ['tokenUrl', 'deviceAuthorizationUrl', 'issuer']) {
      if (o[key] !== undefined) problems.push({ path: `${which}.oauth2.${key}`, message: `is only for provider generic (${o.provider}'s endpoints are built in)` });
    }
  }
  if (o.tenant !== undefined && o.provider !== 'microsoft') problems.push({ path: `${which}.oauth2.tenant`, message: 'is only for provider microsoft' });
  return problems;
}

/**
 * The heartbeat's mail alert must not depend on the path it reports on: another SMTP server than
 * smtp, another mailbox than the agent's (where it would also be dropped as our own mail).
 */
function heartbeatProblems(raw: Record<string, any>): Problem[] {
  const mail = raw.heartbeat.alert?.mail;
  if (mail === undefined) return [];
  const problems: Problem[] = [];
  const agent = typeof raw.agent?.address === 'string' ? raw.agent.address.toLowerCase() : undefined;
  if (mail.to.toLowerCase() === agent) problems.push({ path: 'heartbeat.alert.mail.to', message: 'must not be agent.address (the alert would go down the path it reports on)' });
  if (typeof raw.smtp?.host === 'string' && mail.smtp.host.toLowerCase() === raw.smtp.host.toLowerCase()) {
    problems.push({ path: 'heartbeat.alert.mail.smtp.host', message: 'must be another SMTP server than smtp.host (the alert would go down the path it reports on)' });
  }
  if (mail.smtp.oauth2 !== undefined) problems.push({ path: 'heartbeat.alert.mail.smtp.oauth2', message: 'is not supported for the alert server: use user and password' });
  return problems;
}

/** Relative paths in the file are relative to the file, not to the working directory. */
function absolutise(path: string, configFile: string): string {
  return isAbsolute(path) ? path : resolve(dirname(configFile), path);
}

/** Reads the users file into the config so that it is checked like inline users. */
function withUsersFile(raw: Record<string, any>, file: string, problems: Problem[]): Record<string, any> {
  if (typeof raw.usersFile !== 'string' || raw.users !== undefined) return raw;
  const { readUsersFile } = require('./users-file') as typeof import('./users-file');
  const path = absolutise(raw.usersFile, file);
  const result = readUsersFile(path);
  problems.push(...result.problems.map((p) => ({ path: `usersFile (${path}) ${p.path}`, message: p.message })));
  return { ...raw, users: result.users, usersFile: path };
}

export function validateConfig(input: unknown, file: string): Config {
  const problems = checkSchema(schema as unknown as SchemaNode, input);
  const isObject = typeof input === 'object' && input !== null && !Array.isArray(input);
  if (isObject) {
    const given = input as Record<string, unknown>;
    if (given.users !== undefined && given.usersFile !== undefined) problems.push({ path: 'usersFile', message: 'use either users or usersFile, not both' });
    if (given.users === undefined && given.usersFile === undefined) problems.push({ path: 'users', message: 'is required (or usersFile)' });
  }
  const raw = isObject ? withUsersFile(structuredClone(input) as Record<string, any>, file, problems) : input;
  if (isObject) problems.push(...crossCheck(raw as Record<string, any>, problems));
  if (problems.length) throw new ConfigError(file, problems);
  const cfg = raw as Record<string, any>;
  const services: Config['services'] = cfg.services ?? {};
  for (const share of Object.values(services.files?.shares ?? {})) {
    if (share.path) share.path = absolutise(share.path, file);
  }
  for (const target of Object.values(services.backup?.targets ?? {})) {
    target.sources = target.sources.map((source) => absolutise(source, file));
    target.destination = absolutise(target.destination, file);
  }
  for (const db of Object.values(services.db?.databases ?? {})) {
    if (db.sqlite) db.sqlite.path = absolutise(db.sqlite.path, file);
    for (const server of [db.postgres, db.mysql]) {
      if (typeof server?.ssl === 'object' && server.ssl.ca) server.ssl.ca = absolutise(server.ssl.ca, file);
    }
  }
  return {
    file,
    agent: cfg.agent,
    smtp: cfg.smtp,
    imap: cfg.imap,
    state: { ...cfg.state, path: absolutise(cfg.state?.path ?? join(stateDir(), 'state.db'), file) },
    audit: { ...cfg.audit, path: absolutise(cfg.audit?.path ?? join(stateDir(), 'audit.jsonl'), file) },
    limits: { ...DEFAULT_LIMITS, ...cfg.limits },
    users: cfg.users.map((u: UserConfig) => (u.pgpKey ? { ...u, pgpKey: absolutise(u.pgpKey, cfg.usersFile ?? file) } : u)),
    usersFile: cfg.usersFile,
    secretsFile: absolutise(cfg.secretsFile ?? join(stateDir(), 'secrets.json'), file),
    roles: cfg.roles ?? {},
    security: { ...DEFAULT_SECURITY, ...cfg.security },
    health: { ...DEFAULT_HEALTH, ...cfg.health },
    ...(cfg.heartbeat !== undefined && { heartbeat: { ...DEFAULT_HEARTBEAT, ...cfg.heartbeat } }),
    services,
  };
}

/**
 * A named .json file is read here, as cosmiconfig's JSON loader would read it, without loading
 * cosmiconfig (~5 ms of every `run`). Whatever needs more (a missing, empty or invalid file, not
 * an object, `$import`, a package.json) returns undefined and is left to cosmiconfig, so its
 * results and messages stay the same.
 */
function plainJsonConfig(path: string): Record<string, unknown> | undefined {
  if (extname(path) !== '.json' || basename(path) === 'package.json') return undefined;
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
    return isObject && !Object.hasOwn(value, '$import') ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Finds and validates the config: --config, then $MAILAGENT_CONFIG, then a search from the
 * working directory up to the home directory, then ~/.config/mailagent/.
 */
export async function loadConfig(explicit?: string): Promise<Config> {
  const chosen = explicit ?? process.env.MAILAGENT_CONFIG;
  const plain = chosen ? plainJsonConfig(resolve(chosen)) : undefined;
  if (plain) return validateConfig(plain, resolve(chosen!));
  const { cosmiconfig } = require('cosmiconfig') as typeof import('cosmiconfig');
  const explorer = cosmiconfig(MODULE_NAME, { searchPlaces: SEARCH_PLACES, searchStrategy: 'global', cache: false });
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
