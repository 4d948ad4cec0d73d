import type { Config, UserConfig } from '../config/types';
import { ownValue } from '../services/args';

/**
 * Role grants: `*`, `db:*`, `db:query`, optionally followed by argument constraints such as
 * `files:get share=logs` or `jobs:run name=report-*` (every constraint must hold; `*` matches
 * any run of characters; an argument that is absent does not match).
 */
export interface Grant {
  service: string;
  action: string;
  constraints: [string, RegExp][];
}

const cache = new Map<string, Grant>();

function glob(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
}

export function parseGrant(text: string): Grant {
  let grant = cache.get(text);
  if (!grant) {
    const [head, ...rest] = text.trim().split(/\s+/);
    const [service, action = '*'] = head === '*' ? ['*', '*'] : head.split(':');
    const constraints = rest.map((c): [string, RegExp] => {
      const eq = c.indexOf('=');
      return [c.slice(0, eq), glob(c.slice(eq + 1))];
    });
    grant = { service, action, constraints };
    cache.set(text, grant);
  }
  return grant;
}

function matches(grant: Grant, service: string, action: string, args: Record<string, string>): boolean {
  if (grant.service !== '*' && grant.service !== service) return false;
  if (grant.action !== '*' && grant.action !== action) return false;
  return grant.constraints.every(([key, re]) => {
    const value = ownValue(args, key);
    return value !== undefined && re.test(value);
  });
}

/** Whether any of the user's roles grants `service:action` with these (textual) arguments. */
export function isAllowed(config: Config, user: UserConfig, service: string, action: string, args: Record<string, string> = {}): boolean {
  return user.roles.some((role) => (ownValue(config.roles, role) ?? []).some((text) => matches(parseGrant(text), service, action, args)));
}

/** Whether some grant could allow the action for some arguments (for `help`). */
export function mayUse(config: Config, user: UserConfig, service: string, action: string): boolean {
  return user.roles.some((role) =>
    (ownValue(config.roles, role) ?? []).some((text) => matches({ ...parseGrant(text), constraints: [] }, service, action, {})),
  );
}
