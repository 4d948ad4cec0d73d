import type { QueryParam } from '../config/types';
import type { ArgSpec, Prepared } from './types';

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/**
 * `record[key]` when `key` is the record's own property, else undefined. Names from a mail go
 * through here, so that `constructor`, `__proto__` or `toString` never find what every object
 * inherits.
 */
export function ownValue<T>(record: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return record !== undefined && Object.hasOwn(record, key) ? record[key] : undefined;
}

/** Converts one textual argument to its declared type, or explains why it cannot. */
export function convertValue(name: string, raw: string, spec: QueryParam): { value?: unknown; problem?: string } {
  switch (spec.type) {
    case 'int':
    case 'number': {
      const ok = spec.type === 'int' ? /^-?\d{1,15}$/.test(raw) : /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw);
      if (!ok) return { problem: `${name}=${raw}: expected ${spec.type === 'int' ? 'an integer' : 'a number'}` };
      const n = Number(raw);
      if (spec.min !== undefined && n < spec.min) return { problem: `${name}=${raw}: must be ≥ ${spec.min}` };
      if (spec.max !== undefined && n > spec.max) return { problem: `${name}=${raw}: must be ≤ ${spec.max}` };
      return { value: n };
    }
    case 'date': {
      const m = DATE.exec(raw);
      const d = m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3])) : undefined;
      if (!m || !d || d.getUTCMonth() !== +m[2] - 1 || d.getUTCDate() !== +m[3]) {
        return { problem: `${name}=${raw}: expected a date YYYY-MM-DD` };
      }
      return { value: raw };
    }
    case 'bool': {
      const v = raw.toLowerCase();
      if (['true', 'yes', '1', 'on'].includes(v)) return { value: 1 };
      if (['false', 'no', '0', 'off'].includes(v)) return { value: 0 };
      return { problem: `${name}=${raw}: expected true or false` };
    }
    case 'enum':
      if (!spec.values?.includes(raw)) return { problem: `${name}=${raw}: expected one of ${spec.values?.join(', ')}` };
      return { value: raw };
    case 'string': {
      const max = spec.maxLength ?? 1000;
      if (raw.length > max) return { problem: `${name}: longer than ${max} characters` };
      if (spec.pattern && !new RegExp(`^(?:${spec.pattern})$`).test(raw)) {
        return { problem: `${name}=${raw}: does not match the allowed form ${spec.pattern}` };
      }
      return { value: raw };
    }
  }
}

/** Checks arguments against their specs: unknown names, missing required ones, types; defaults applied. */
export function convertArgs(
  given: Record<string, string>,
  specs: Record<string, QueryParam>,
  options: { allowUnknown?: boolean } = {},
): Prepared {
  const problems: string[] = [];
  const args: Record<string, unknown> = {};
  for (const [name, raw] of Object.entries(given)) {
    const spec = ownValue(specs, name);
    if (!spec) {
      if (!options.allowUnknown) {
        const known = Object.keys(specs);
        problems.push(`unknown argument "${name}"${known.length ? ` (expected: ${known.join(', ')})` : ' (takes no arguments)'}`);
      }
      continue;
    }
    const { value, problem } = convertValue(name, raw, spec);
    if (problem) problems.push(problem);
    else args[name] = value;
  }
  for (const [name, spec] of Object.entries(specs)) {
    if (Object.hasOwn(given, name)) continue;
    if (spec.default !== undefined) args[name] = spec.default;
    else if (spec.required) problems.push(`missing ${name}=…`);
    else args[name] = null;
  }
  return problems.length ? { ok: false, problems } : { ok: true, args };
}

/** One line per argument for `help`: `name=<type>  description`. */
export function describeArgs(specs: Record<string, ArgSpec | QueryParam>): string[] {
  return Object.entries(specs).map(([name, spec]) => {
    const type = spec.type === 'enum' ? spec.values?.join('|') : spec.type;
    const optional = spec.required ? '' : spec.default !== undefined ? ` (default ${spec.default})` : ' (optional)';
    return `${name}=<${type}>${optional}${spec.description ? `  ${spec.description}` : ''}`;
  });
}
