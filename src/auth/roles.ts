import type { Config, UserConfig } from '../config/types';

/** Whether any of the user's roles grants `service:action` (patterns: `*`, `db:*`, `db:query`). */
export function isAllowed(config: Config, user: UserConfig, service: string, action: string): boolean {
  return user.roles.some((role) =>
    (config.roles[role] ?? []).some((pattern) => {
      if (pattern === '*') return true;
      const [ps, pa = '*'] = pattern.split(':');
      return ps === service && (pa === '*' || pa === action);
    }),
  );
}
