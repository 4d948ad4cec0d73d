/**
 * `mailagent config check [--config F]`: loads and validates the config the way every command
 * does. On success it prints the config as the agent sees it (defaults filled in, paths
 * absolute) as JSON on stdout, warnings on stderr, and exits 0; on problems loadConfig's
 * ConfigError lists every one with its JSON path (printed by cli.ts, exit 78).
 *
 * Secret references stay references: this file never resolves one. Whether an environment
 * variable is set or a secret file is readable is checked without reading the secret.
 */
import { configWarnings, shown, useTimeProblems } from '../config/check';
import { ConfigError, loadConfig } from '../config/load';
import { EXIT, UserError } from '../core/errors';

export const ACTIONS = ['check'] as const;

export async function handler(argv: { action?: string; config?: string }): Promise<number> {
  if (argv.action !== 'check') throw new UserError(`unknown action "${argv.action}" (known: ${ACTIONS.join(', ')})`, EXIT.USAGE);
  const config = await loadConfig(argv.config);
  const problems = useTimeProblems(config);
  if (problems.length) throw new ConfigError(config.file, problems);
  process.stdout.write(`${JSON.stringify(shown(config), null, 2)}\n`);
  const warnings = configWarnings(config);
  for (const w of warnings) process.stderr.write(`mailagent: warning: ${w.path}: ${w.message}\n`);
  return EXIT.OK;
}
