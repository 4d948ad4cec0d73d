/**
 * `mailagent help markdown`: the manual of the mail command language, generated from the
 * service registry (every service, every action with its arguments and an example), on stdout.
 * docs/commands.md is this output; test/cli-kit.test.ts fails when the two differ.
 */
import { EXIT, UserError } from '../core/errors';
import { renderManual } from '../render/help';
import { services } from '../services/registry';

export const FORMATS = ['markdown'] as const;

export async function handler(argv: { format?: string }): Promise<number> {
  if (argv.format !== 'markdown') throw new UserError(`unknown format "${argv.format}" (known: ${FORMATS.join(', ')})`, EXIT.USAGE);
  process.stdout.write(renderManual(services));
  return EXIT.OK;
}
