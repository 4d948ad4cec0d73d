/**
 * What `mailagent config check` adds to validation: problems the agent would only meet when it
 * uses a setting, warnings that do not stop it, and the config as printed (secret references
 * stay references: nothing here reads a secret).
 */
import { accessSync, constants } from 'node:fs';
import { parseGrant } from '../auth/roles';
import { UserError } from '../core/errors';
import { ownValue } from '../services/args';
import { services } from '../services/registry';
import type { Problem } from './schema-check';
import { secretFilePath, secretRefs } from './secrets';
import type { Config } from './types';

/** The config to print: a copy in which a secret file reference carries its absolute path. */
export function shown(config: Config): unknown {
  const copy = structuredClone(config);
  for (const [, ref] of secretRefs(copy)) if ('file' in ref) ref.file = secretFilePath(ref, config.file);
  return copy;
}

/**
 * What the agent refuses only when it uses it, checked here so that `config check` finds it
 * first: a PostgreSQL state URL written inline with a password (it would also be printed).
 */
export function useTimeProblems(config: Config): Problem[] {
  const url = config.state.postgres?.url;
  if (typeof url !== 'string') return []; // a secret reference: never resolved here
  const { stateServer } = require('../state/pg-store') as typeof import('../state/pg-store');
  try {
    stateServer(config);
    return [];
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    const message = err.message.replace(/^state\.postgres\.url:?\s*/, '');
    return [{ path: 'state.postgres.url', message: err.hint ? `${message} (${err.hint})` : message }];
  }
}

/** Grants that cannot match anything the registry offers: a typo there silently grants nothing. */
function grantWarnings(config: Config): Problem[] {
  const warnings: Problem[] = [];
  for (const [role, grants] of Object.entries(config.roles)) {
    grants.forEach((text, i) => {
      const path = `roles.${role}[${i}]`;
      const grant = parseGrant(text);
      if (grant.service === '*') return;
      const service = ownValue(services, grant.service);
      if (!service) {
        warnings.push({ path, message: `"${text}": no service "${grant.service}" (services: ${Object.keys(services).join(', ')}); it grants nothing` });
        return;
      }
      if (grant.action === '*') return;
      const action = ownValue(service.actions, grant.action);
      if (!action) {
        warnings.push({ path, message: `"${text}": ${grant.service} has no action "${grant.action}" (actions: ${Object.keys(service.actions).join(', ')}); it grants nothing` });
        return;
      }
      for (const [key] of grant.constraints) {
        if (!Object.hasOwn(action.args, key) && !action.extraArgs) {
          warnings.push({ path, message: `"${text}": ${grant.service} ${grant.action} has no argument "${key}" (arguments: ${Object.keys(action.args).join(', ') || 'none'}); it grants nothing` });
        }
      }
    });
  }
  return warnings;
}

/** Secret references this machine cannot resolve: checked without reading any secret. */
function secretWarnings(config: Config): Problem[] {
  const warnings: Problem[] = [];
  for (const [path, ref] of secretRefs(config)) {
    if ('env' in ref) {
      if (!Object.hasOwn(process.env, ref.env) || process.env[ref.env] === '') {
        warnings.push({ path, message: `environment variable ${ref.env} is not set here (the agent needs it where it runs)` });
      }
      continue;
    }
    const file = secretFilePath(ref, config.file);
    try {
      accessSync(file, constants.R_OK);
    } catch (err) {
      warnings.push({ path, message: `secret file ${file} is not readable here (${(err as NodeJS.ErrnoException).code ?? err})` });
    }
  }
  return warnings;
}

export function configWarnings(config: Config): Problem[] {
  const warnings = [...secretWarnings(config), ...grantWarnings(config)];
  if (!config.security.dkim) {
    warnings.push({
      path: 'security.dkim',
      message: 'is not set: a message counts as from a user on its From: address alone (evidence "allowlist"); set it unless only a trusted relay delivers to the agent',
    });
  }
  return warnings;
}

