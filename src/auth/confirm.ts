import { randomBytes } from 'node:crypto';

/**
 * Confirmation by reply: the agent answers a request that needs strong evidence with a
 * single-use 128-bit token bound to the sender and to the exact command lines; replying with the
 * token (it may stay in the quoted text) runs exactly those commands.
 */
const TOKEN = /\bconfirm=([0-9a-f]{32})\b/i;

export function newToken(): string {
  return randomBytes(16).toString('hex');
}

/** Finds a token anywhere in the body, quoted reply text included. */
export function findToken(body: string): string | undefined {
  return TOKEN.exec(body)?.[1]?.toLowerCase();
}

export function challengeText(token: string, commands: string[], minutes: number): string {
  return [
    'Your request changes something, so it runs only once you confirm it. It holds:',
    '',
    ...commands.map((c) => `  ${c}`),
    '',
    `To run them, reply to this message within ${minutes} minutes. Keep this line in your reply`,
    '(quoted is fine) and add no other commands:',
    '',
    `confirm=${token}`,
    '',
    'The token works once, only for you and only for exactly these commands.',
    'Ignore this message if you did not send the request.',
  ].join('\n');
}
