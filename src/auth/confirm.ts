import { randomBytes } from 'node:crypto';

import type { BodyLine } from '../core/lines';

/**
 * Confirmation by reply: the agent answers a request that needs strong evidence with a
 * single-use 128-bit token bound to the sender and to the exact command lines; replying with the
 * token as the sender's own text runs exactly those commands. A token only in quoted text does
 * not count: an out-of-office reply quotes the challenge too.
 */
export const CONFIRM_LINE = /^confirm\s*=/i;
const TOKEN_LINE = /^confirm\s*=\s*([0-9a-f]{32})$/i;

export function newToken(): string {
  return randomBytes(16).toString('hex');
}

/**
 * The token of the first `confirm=` line of the request (never the Subject); 'malformed' when
 * that line holds no token.
 */
export function findToken(lines: BodyLine[]): string | 'malformed' | undefined {
  const line = lines.find((l) => l.line > 0 && CONFIRM_LINE.test(l.text));
  if (!line) return undefined;
  return TOKEN_LINE.exec(line.text)?.[1]?.toLowerCase() ?? 'malformed';
}

export function challengeText(token: string, commands: string[], minutes: number): string {
  return [
    'Your request changes something, so it runs only once you confirm it. It holds:',
    '',
    ...commands.map((c) => `  ${c}`),
    '',
    `To run them, reply to this message within ${minutes} minutes with this line in your own text,`,
    'above the quoted message (a quoted copy does not count), and no other commands:',
    '',
    `confirm=${token}`,
    '',
    'The token works once, only for you and only for exactly these commands.',
    'Ignore this message if you did not send the request.',
  ].join('\n');
}
