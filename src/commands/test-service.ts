import { loadConfig } from '../config/load';
import { configuredServices } from '../core/request';
import { EXIT, UserError } from '../core/errors';
import { services } from '../services/registry';
import { closeDatabases } from '../services/db';

/**
 * `mailagent test-service [name]`: asks each configured adapter whether it can reach what it
 * serves. Exit 0 when every probe passed, 69 when any failed — usable from monitoring scripts.
 */
export async function handler(argv: { config?: string; name?: string; json?: boolean }): Promise<number> {
  const config = await loadConfig(argv.config);
  const available = configuredServices(config, services);
  if (argv.name && !available.includes(argv.name)) {
    throw new UserError(`no configured service "${argv.name}"`, EXIT.USAGE, `configured: ${available.join(', ') || 'none'}`);
  }
  const names = argv.name ? [argv.name] : available;
  const results = await Promise.all(
    names.map(async (name) => {
      const started = Date.now();
      try {
        return { service: name, ...(await services[name].probe(config)), ms: Date.now() - started };
      } catch (err) {
        return { service: name, ok: false, detail: (err as Error).message, ms: Date.now() - started };
      }
    }),
  );
  await closeDatabases(); // the probes' database pools
  if (argv.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else {
    if (!results.length) process.stdout.write('no services are configured\n');
    for (const r of results) process.stdout.write(`${r.ok ? 'ok  ' : 'FAIL'}  ${r.service.padEnd(8)} ${r.detail} (${r.ms} ms)\n`);
  }
  return results.every((r) => r.ok) ? EXIT.OK : EXIT.UNAVAILABLE;
}
