/**
 * Checks a value against the subset of JSON Schema (draft-07) that config.schema.json uses and
 * returns every problem at once. The shipped schema stays the single source of truth; this
 * avoids compiling a validator at start-up.
 */
export interface SchemaNode {
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  required?: string[];
  additionalProperties?: boolean | SchemaNode;
  items?: SchemaNode;
  enum?: unknown[];
  oneOf?: SchemaNode[];
  $ref?: string;
  pattern?: string;
  minLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minItems?: number;
  minProperties?: number;
  description?: string;
  definitions?: Record<string, SchemaNode>;
}

export interface Problem {
  path: string;
  message: string;
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function matchesType(value: unknown, type: string): boolean {
  const actual = typeOf(value);
  return actual === type || (type === 'number' && actual === 'integer');
}

export function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  const plain = /^[A-Za-z_$][\w$-]*$/.test(key);
  const segment = plain ? key : JSON.stringify(key);
  if (!path) return plain ? segment : `[${segment}]`;
  return plain ? `${path}.${segment}` : `${path}[${segment}]`;
}

function describeForm(node: SchemaNode): string {
  return node.required?.length ? `{ ${node.required.map((k) => `"${k}": …`).join(', ')} }` : (node.type as string) ?? 'value';
}

export function checkSchema(root: SchemaNode, value: unknown): Problem[] {
  const problems: Problem[] = [];
  const resolve = (node: SchemaNode): SchemaNode => {
    if (!node.$ref) return node;
    const name = node.$ref.replace('#/definitions/', '');
    const target = root.definitions?.[name];
    if (!target) throw new Error(`schema: unknown $ref ${node.$ref}`);
    return resolve(target);
  };

  const visit = (raw: SchemaNode, v: unknown, path: string, out: Problem[]): void => {
    const node = resolve(raw);
    const at = path || '(top level)';
    if (node.oneOf) {
      const matching = node.oneOf.filter((alt) => {
        const scratch: Problem[] = [];
        visit(alt, v, path, scratch);
        return scratch.length === 0;
      });
      if (matching.length !== 1) {
        const forms = node.oneOf.map((alt) => describeForm(resolve(alt))).join(' or ');
        out.push({ path: at, message: matching.length ? `expected exactly one of ${forms}, not several` : `expected one of ${forms}` });
      }
      // The node's own keywords (type, properties…) apply as well, as in JSON Schema.
    }
    if (node.type) {
      const types = Array.isArray(node.type) ? node.type : [node.type];
      if (!types.some((t) => matchesType(v, t))) {
        out.push({ path: at, message: `expected ${types.join(' or ')}, got ${typeOf(v)}` });
        return;
      }
    }
    if (node.enum && !node.enum.includes(v)) {
      out.push({ path: at, message: `expected one of ${node.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${JSON.stringify(v)}` });
    }
    if (typeof v === 'string') {
      if (node.minLength !== undefined && v.length < node.minLength) out.push({ path: at, message: 'must not be empty' });
      if (node.pattern && !new RegExp(node.pattern).test(v)) {
        out.push({ path: at, message: `${JSON.stringify(v)} is not ${node.description ? node.description.replace(/\.$/, '').replace(/^A /, 'a ') : `matching ${node.pattern}`}` });
      }
    }
    if (typeof v === 'number') {
      if (node.minimum !== undefined && v < node.minimum) out.push({ path: at, message: `must be ≥ ${node.minimum}` });
      if (node.maximum !== undefined && v > node.maximum) out.push({ path: at, message: `must be ≤ ${node.maximum}` });
      if (node.exclusiveMinimum !== undefined && v <= node.exclusiveMinimum) out.push({ path: at, message: `must be > ${node.exclusiveMinimum}` });
    }
    if (Array.isArray(v)) {
      if (node.minItems !== undefined && v.length < node.minItems) out.push({ path: at, message: `needs at least ${node.minItems} item(s)` });
      if (node.items) v.forEach((item, i) => visit(node.items!, item, childPath(path, i), out));
    }
    if (typeOf(v) === 'object') {
      const obj = v as Record<string, unknown>;
      for (const key of node.required ?? []) {
        if (!(key in obj)) out.push({ path: childPath(path, key), message: 'is required' });
      }
      if (node.minProperties !== undefined && Object.keys(obj).length < node.minProperties) {
        out.push({ path: at, message: `needs at least ${node.minProperties} entr${node.minProperties === 1 ? 'y' : 'ies'}` });
      }
      for (const [key, child] of Object.entries(obj)) {
        const declared = node.properties?.[key];
        if (declared) visit(declared, child, childPath(path, key), out);
        else if (node.additionalProperties === false) {
          const known = Object.keys(node.properties ?? {}).filter((k) => k !== '$schema');
          out.push({ path: childPath(path, key), message: `unknown key (expected one of: ${known.join(', ')})` });
        } else if (typeof node.additionalProperties === 'object') visit(node.additionalProperties, child, childPath(path, key), out);
      }
    }
  };

  visit(root, value, '', problems);
  return problems;
}
