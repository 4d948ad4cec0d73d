import type { StateStore } from '../state/store';

export type TotpResult = 'ok' | 'invalid' | 'reused' | 'not-enrolled';

/** A line carrying a one-time code; any `otp=` line counts, so a mistyped one is never run as a command. */
export const OTP_LINE = /^otp\s*[=:]\s*(\S*)$/i;

/**
 * RFC 6238 check with ±1 time step (30 s) of tolerance. Each accepted step is remembered per
 * user, so a code (or an older one) works only once.
 */
export async function checkTotp(code: string, secret: string | undefined, address: string, now: Date, store: StateStore): Promise<TotpResult> {
  if (!secret) return 'not-enrolled';
  if (!/^\d{6}$/.test(code)) return 'invalid';
  const { verifySync } = require('otplib') as typeof import('otplib');
  let result: { valid: boolean; timeStep?: number };
  try {
    result = verifySync({ secret, token: code, epoch: Math.floor(now.getTime() / 1000), epochTolerance: 30 }) as typeof result;
  } catch {
    return 'invalid';
  }
  if (!result.valid || result.timeStep === undefined) return 'invalid';
  return (await store.useTotpStep(address.toLowerCase(), result.timeStep)) ? 'ok' : 'reused';
}
