import type { Config, Evidence, UserConfig } from '../config/types';

/** What a message proved about its sender. */
export interface Achieved {
  dkim: boolean;
  totp: boolean;
  pgp: boolean;
  confirm: boolean;
}

const STRONG: Evidence[] = ['totp', 'pgp', 'confirm', 'strong'];
const RANK: Record<Evidence, number> = { allowlist: 0, dkim: 1, totp: 2, pgp: 2, confirm: 2, strong: 2 };

export function satisfies(achieved: Achieved, required: Evidence): boolean {
  const strong = achieved.totp || achieved.pgp || achieved.confirm;
  switch (required) {
    case 'allowlist':
      return true;
    case 'dkim':
      return achieved.dkim || strong;
    case 'strong':
      return strong;
    default:
      return achieved[required];
  }
}

/** The least evidence any message from this user needs; below it the message is dropped silently. */
export function baseline(config: Config, user: UserConfig): Evidence {
  return user.evidence ?? (config.security.dkim ? 'dkim' : 'allowlist');
}

function patternMatches(pattern: string, service: string, action: string): boolean {
  if (pattern === '*') return true;
  const [ps, pa = '*'] = pattern.split(':');
  return ps === service && (pa === '*' || pa === action);
}

/**
 * Evidence an action needs: the first matching `security.evidence` pattern, else totp/pgp/confirm
 * for actions that change something, else the user's baseline. Never less than the baseline.
 */
export function requiredFor(config: Config, user: UserConfig, service: string, action: string, mutates: boolean): Evidence {
  const configured = Object.entries(config.security.evidence).find(([pattern]) => patternMatches(pattern, service, action))?.[1];
  const wanted = configured ?? (mutates ? 'strong' : baseline(config, user));
  const floor = baseline(config, user);
  return RANK[wanted] >= RANK[floor] ? wanted : floor;
}

/** The strictest of several requirements (a specific strong method wins over "strong"). */
export function strictest(requirements: Evidence[]): Evidence {
  return requirements.reduce<Evidence>((a, b) => (RANK[b] > RANK[a] || (RANK[b] === RANK[a] && a === 'strong' && b !== 'strong') ? b : a), 'allowlist');
}

export function acceptsConfirmation(required: Evidence): boolean {
  return required === 'strong' || required === 'confirm';
}

export function isStrong(required: Evidence): boolean {
  return STRONG.includes(required);
}

/** What to tell a known user whose message lacks evidence (never why a check failed). */
export function describeEvidence(required: Evidence): string {
  switch (required) {
    case 'dkim':
      return 'a DKIM signature from your domain (send from your organisation\'s mail server)';
    case 'totp':
      return 'a one-time code: add a line otp=123456 with the current code from your authenticator';
    case 'pgp':
      return 'an OpenPGP signature with your registered key (PGP/MIME or clearsigned)';
    case 'confirm':
      return 'a confirmation: send the commands alone and reply to the confirmation request';
    case 'strong':
      return 'a one-time code (a line otp=123456), an OpenPGP signature, or a confirmation reply';
    default:
      return 'nothing more';
  }
}
