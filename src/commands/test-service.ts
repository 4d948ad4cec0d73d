import { loadConfig } from '../config/load';
import { secretValues, withoutSecrets } from '../config/secrets';
import { agentProbes, type ProbeSet } from '../core/agent-probes';
import { EXIT, UserError } from '../core/errors';
import { configuredServices } from '../core/request';
import { closeDatabases } from '../services/db';
import { services } from '../services/registry';
import type { ProbeResult } from '../services/types';

interface Row extends ProbeResult {
  service: string;
  ms: number;
}

/** `5s`, `1500ms`, `2m` or a number of seconds. */
function parseTimeout(text: string | undefined): number {
  if (text === undefined) return 5000;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m || Number(m[1]) <= 0) throw new UserError(`--timeout ${text}: expected a duration such as 5s, 1500ms or 1m`, EXIT.USAGE);
  return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
}

/** One probe set with its deadline: a probe that does not answer is a failed row, not a hang. */
async function runProbe(set: ProbeSet, timeoutMs: number): Promise<Row[]> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<ProbeResult[]>((resolve) => {
    timer = setTimeout(() => resolve([{ target: '(all)', ok: false, detail: `no answer within ${timeoutMs / 1000} s` }]), timeoutMs);
  });
  const results = await Promise.race([set.probe().catch((err) => [{ target: '(all)', ok: false, detail: (err as Error).message }]), late]).finally(() => clearTimeout(timer));
  const ms = Date.now() - started;
  return results.map((r) => ({ service: set.service, ms, ...r }));
}

/** Aligned columns; the detail, last, is never cut (it is what an admin needs to read). */
function table(rows: Row[]): string {
  const cells = [['service', 'target', 'result', 'ms', 'detail'], ...rows.map((r) => [r.service, r.target, r.ok ? 'ok' : 'FAIL', String(r.ms), r.detail])];
  const widths = [0, 1, 2, 3].map((i) => Math.max(...cells.map((c) => c[i].length)));
  return cells.map((c) => c.map((v, i) => (i < 4 ? (i === 3 ? v.padStart(widths[i]) : v.padEnd(widths[i])) : v)).join('  ').trimEnd()).join('\n') + '\n';
}

/**
 * `mailagent test-service [name…]`: probes the mailbox, SMTP, state store, audit log and every
 * configured service adapter in parallel, one row per target. Exit 0 when all answered, 69 when
 * any did not. No secret of the config appears in the output, not even inside a driver's message.
 */
export async function handler(argv: { config?: string; name?: string[] | string; json?: boolean; timeout?: string }): Promise<number> {
  const timeoutMs = parseTimeout(argv.timeout);
  const config = await loadConfig(argv.config);
  const sets: ProbeSet[] = [
    ...agentProbes(config),
    ...configuredServices(config, services).map((name) => ({ service: name, probe: () => services[name].probe(config) })),
  ];
  const wanted = ([] as string[]).concat(argv.name ?? []);
  const unknown = wanted.filter((name) => !sets.some((s) => s.service === name));
  if (unknown.length) {
    throw new UserError(`nothing to probe named ${unknown.map((n) => `"${n}"`).join(', ')}`, EXIT.USAGE, `configured: ${sets.map((s) => s.service).join(', ')}`);
  }
  const chosen = wanted.length ? sets.filter((s) => wanted.includes(s.service)) : sets;
  let rows: Row[];
  try {
    rows = (await Promise.all(chosen.map((set) => runProbe(set, timeoutMs)))).flat();
  } finally {
    await closeDatabases(); // the probes' database pools
  }
  const secrets = secretValues(config);
  const clean = rows.map((r) => ({ ...r, target: withoutSecrets(r.target, secrets), detail: withoutSecrets(r.detail, secrets) }));
  if (argv.json) process.stdout.write(`${JSON.stringify(clean.map(({ service, target, ok, ms, detail }) => ({ service, target, ok, ms, detail })), null, 2)}\n`);
  else process.stdout.write(table(clean));
  return clean.every((r) => r.ok) ? EXIT.OK : EXIT.UNAVAILABLE;
}
