/**
 * A small built-in MIB: the well-known objects of SNMPv2-MIB's system group and IF-MIB's ifTable
 * and ifXTable, by name, with their numeric OIDs and value kinds. Enough to ask a device about
 * itself and its interfaces without loading MIB files (which devices' owners rarely have at hand,
 * and which would cost start-up time). Other objects are given by numeric OID or defined in the
 * configuration (`extra`).
 */

/** How a value is encoded on the wire (the SNMP type names the client reports). */
export type ValueKind =
  | 'Integer'
  | 'OctetString'
  | 'ObjectIdentifier'
  | 'TimeTicks'
  | 'Counter32'
  | 'Counter64'
  | 'Gauge32';

/** scalar: one instance, `.0`; column: one instance per table row, `.<index>`; table: a subtree to walk. */
export type ObjectShape = 'scalar' | 'column' | 'table';

export interface MibObject {
  name: string;
  /** Numeric, without a leading dot. */
  oid: string;
  shape: ObjectShape;
  /** Absent for tables. */
  kind?: ValueKind;
  /** Octets meant to be shown as hex (aa:bb:...), whatever they happen to look like (MAC addresses). */
  hex?: boolean;
  writable?: boolean;
  enumeration?: Readonly<Record<number, string>>;
}

/** IF-MIB ifOperStatus (RFC 2863). */
export const IF_OPER_STATUS: Readonly<Record<number, string>> = Object.freeze({
  1: 'up', 2: 'down', 3: 'testing', 4: 'unknown', 5: 'dormant', 6: 'notPresent', 7: 'lowerLayerDown',
});

/** IF-MIB ifAdminStatus: RFC 2863 defines only the first three values of ifOperStatus for it. */
export const IF_ADMIN_STATUS: Readonly<Record<number, string>> = Object.freeze({ 1: 'up', 2: 'down', 3: 'testing' });

/** The IANAifType values met on ordinary hosts and switches; others show as numbers. */
export const IF_TYPE: Readonly<Record<number, string>> = Object.freeze({
  1: 'other', 6: 'ethernetCsmacd', 24: 'softwareLoopback', 53: 'propVirtual', 71: 'ieee80211', 131: 'tunnel',
  135: 'l2vlan', 136: 'l3ipvlan', 161: 'ieee8023adLag', 209: 'bridge',
});

const SYSTEM = '1.3.6.1.2.1.1';
const IF_ENTRY = '1.3.6.1.2.1.2.2.1';
const IFX_ENTRY = '1.3.6.1.2.1.31.1.1.1';

const scalar = (name: string, oid: string, kind: ValueKind, more: Partial<MibObject> = {}): MibObject =>
  ({ name, oid, shape: 'scalar', kind, ...more });
const column = (name: string, entry: string, n: number, kind: ValueKind, more: Partial<MibObject> = {}): MibObject =>
  ({ name, oid: `${entry}.${n}`, shape: 'column', kind, ...more });
const table = (name: string, oid: string): MibObject => ({ name, oid, shape: 'table' });

export const MIB_OBJECTS: readonly MibObject[] = Object.freeze([
  // SNMPv2-MIB system group (RFC 3418)
  table('system', SYSTEM),
  scalar('sysDescr', `${SYSTEM}.1`, 'OctetString'),
  scalar('sysObjectID', `${SYSTEM}.2`, 'ObjectIdentifier'),
  scalar('sysUpTime', `${SYSTEM}.3`, 'TimeTicks'),
  scalar('sysContact', `${SYSTEM}.4`, 'OctetString', { writable: true }),
  scalar('sysName', `${SYSTEM}.5`, 'OctetString', { writable: true }),
  scalar('sysLocation', `${SYSTEM}.6`, 'OctetString', { writable: true }),
  // IF-MIB (RFC 2863)
  table('interfaces', '1.3.6.1.2.1.2'),
  scalar('ifNumber', '1.3.6.1.2.1.2.1', 'Integer'),
  table('ifTable', '1.3.6.1.2.1.2.2'),
  column('ifIndex', IF_ENTRY, 1, 'Integer'),
  column('ifDescr', IF_ENTRY, 2, 'OctetString'),
  column('ifType', IF_ENTRY, 3, 'Integer', { enumeration: IF_TYPE }),
  column('ifMtu', IF_ENTRY, 4, 'Integer'),
  column('ifSpeed', IF_ENTRY, 5, 'Gauge32'),
  column('ifPhysAddress', IF_ENTRY, 6, 'OctetString', { hex: true }),
  column('ifAdminStatus', IF_ENTRY, 7, 'Integer', { enumeration: IF_ADMIN_STATUS, writable: true }),
  column('ifOperStatus', IF_ENTRY, 8, 'Integer', { enumeration: IF_OPER_STATUS }),
  column('ifLastChange', IF_ENTRY, 9, 'TimeTicks'),
  column('ifInOctets', IF_ENTRY, 10, 'Counter32'),
  column('ifInUcastPkts', IF_ENTRY, 11, 'Counter32'),
  column('ifInDiscards', IF_ENTRY, 13, 'Counter32'),
  column('ifInErrors', IF_ENTRY, 14, 'Counter32'),
  column('ifOutOctets', IF_ENTRY, 16, 'Counter32'),
  column('ifOutUcastPkts', IF_ENTRY, 17, 'Counter32'),
  column('ifOutDiscards', IF_ENTRY, 19, 'Counter32'),
  column('ifOutErrors', IF_ENTRY, 20, 'Counter32'),
  table('ifXTable', '1.3.6.1.2.1.31.1.1'),
  column('ifName', IFX_ENTRY, 1, 'OctetString'),
  column('ifHCInOctets', IFX_ENTRY, 6, 'Counter64'),
  column('ifHCOutOctets', IFX_ENTRY, 10, 'Counter64'),
  column('ifHighSpeed', IFX_ENTRY, 15, 'Gauge32'),
  column('ifAlias', IFX_ENTRY, 18, 'OctetString', { writable: true }),
].map((o) => Object.freeze(o)));

// Maps, not plain objects: a name such as "__proto__" or "constructor" must never find anything.
const BY_NAME = new Map(MIB_OBJECTS.map((o) => [o.name, o]));
// Longest OIDs first, so that nameOf() finds the most specific object (a column before its table).
const BY_OID_LENGTH = [...MIB_OBJECTS].sort((a, b) => b.oid.split('.').length - a.oid.split('.').length);

export interface ResolvedName {
  /** Numeric, without a leading dot. */
  oid: string;
  /** For display: `sysUpTime.0`, `ifOperStatus.2`, a config name, or the numeric OID. */
  name: string;
  enumeration?: Readonly<Record<number, string>>;
  /** The built-in object it belongs to, when there is one. */
  object?: MibObject;
}

/** Objects defined in the configuration, by name. */
export type ExtraObjects = Record<string, { oid: string }>;

const MAX_SUBIDS = 128; // RFC 2578: an OID has at most 128 sub-identifiers
const MAX_SUBID = 4294967295;

/** A numeric OID ("1.3.6.1.2.1.1.5.0" or ".1.3.6...") without its leading dot, or an error string. */
export function parseNumericOid(text: string): string | { error: string } {
  const oid = text.startsWith('.') ? text.slice(1) : text;
  if (!/^\d+(\.\d+)+$/.test(oid)) return { error: `"${text}" is not a numeric OID (like 1.3.6.1.2.1.1.5.0)` };
  const arcs = oid.split('.');
  if (arcs.length > MAX_SUBIDS) return { error: `OID ${text} is too long (at most ${MAX_SUBIDS} numbers)` };
  if (Number(arcs[0]) > 2 || (Number(arcs[0]) < 2 && Number(arcs[1]) > 39)) return { error: `OID ${text} cannot exist: it must start with 0, 1 or 2 (and 0.x, 1.x with x < 40)` };
  if (arcs.some((a) => Number(a) > MAX_SUBID || (a.length > 1 && a.startsWith('0')))) return { error: `OID ${text} has a number out of range or with leading zeros` };
  return arcs.join('.');
}

const isError = (v: string | { error: string }): v is { error: string } => typeof v !== 'string';

// Never object names, even when a parsed config file holds them as own keys (JSON.parse does that for "__proto__").
const RESERVED = new Set(['__proto__', 'constructor', 'prototype']);

function ownExtra(extra: ExtraObjects | undefined, name: string): { oid: string } | undefined {
  // Own properties only: inherited ones (constructor, toString...) are not config objects.
  if (!extra || RESERVED.has(name) || !Object.prototype.hasOwnProperty.call(extra, name)) return undefined;
  const entry = extra[name];
  return entry && typeof entry === 'object' && typeof entry.oid === 'string' ? entry : undefined;
}

function builtin(name: string, suffix: string, ref: string): ResolvedName | string {
  const object = BY_NAME.get(name)!;
  const index = suffix ? suffix.slice(1) : '';
  if (object.shape === 'scalar') {
    // A scalar has exactly one instance, .0; without it the name means that instance.
    if (index && index !== '0') return `${name} is a single value (its only instance is ${name}.0), so "${ref}" does not exist`;
    const oid = `${object.oid}.0`;
    return { oid, name: `${name}.0`, object, ...(object.enumeration && { enumeration: object.enumeration }) };
  }
  // A column without an index, or a table, stands for the subtree (to walk); with one, for that row.
  const oid = index ? `${object.oid}.${index}` : object.oid;
  return { oid, name: index ? `${name}.${index}` : name, object, ...(object.enumeration && { enumeration: object.enumeration }) };
}

/**
 * Turns what a user typed into an OID: a built-in name (`sysUpTime` or `sysUpTime.0` for a scalar,
 * `ifOperStatus.2` for a table cell, `ifOperStatus` or `ifTable` for a subtree), a numeric OID (the
 * leading dot is optional), or a name defined in the configuration (`extra`, optionally followed
 * by an index). Built-in names win over configured ones. Returns an error string when it cannot.
 */
export function resolveName(ref: string, extra?: ExtraObjects): ResolvedName | string {
  const text = typeof ref === 'string' ? ref.trim() : '';
  if (!text) return 'an object name or OID is needed (like sysUpTime or 1.3.6.1.2.1.1.3.0)';
  if (/^\.?\d/.test(text)) {
    const oid = parseNumericOid(text);
    if (isError(oid)) return oid.error;
    return { oid, name: nameOf(oid, extra), ...enumerationOf(oid) };
  }
  const m = /^([A-Za-z_][\w-]*)((?:\.\d+)*)$/.exec(text);
  if (!m) return `"${text}" is neither an object name (like ifOperStatus.2) nor a numeric OID`;
  const [, name, suffix] = m;
  if (BY_NAME.has(name)) {
    const resolved = builtin(name, suffix, text);
    if (typeof resolved !== 'string') {
      const checked = parseNumericOid(resolved.oid);
      if (isError(checked)) return checked.error;
    }
    return resolved;
  }
  const configured = ownExtra(extra, name);
  if (configured) {
    const base = parseNumericOid(configured.oid);
    if (isError(base)) return `the configured object ${name} has a bad OID: ${base.error}`;
    const oid = parseNumericOid(base + suffix);
    if (isError(oid)) return oid.error;
    return { oid, name: name + suffix };
  }
  return `unknown object name "${name}": use a known name (like sysDescr, ifOperStatus.1), a numeric OID, or define it in the configuration`;
}

function enumerationOf(oid: string): { enumeration?: Readonly<Record<number, string>>; object?: MibObject } {
  const hit = lookup(oid);
  if (!hit) return {};
  // Only an instance (or the column itself) takes the column's values, not some deeper OID.
  const { object, rest } = hit;
  const instance = object.shape === 'scalar' ? rest === '0' : object.shape === 'column';
  if (!instance) return {};
  return { object, ...(object.enumeration && { enumeration: object.enumeration }) };
}

/** The built-in object an OID belongs to, and what follows its OID ('' for the object itself). */
export function lookup(oid: string): { object: MibObject; rest: string } | undefined {
  const bare = oid.startsWith('.') ? oid.slice(1) : oid;
  for (const object of BY_OID_LENGTH) {
    if (bare === object.oid) return { object, rest: '' };
    if (bare.startsWith(`${object.oid}.`)) return { object, rest: bare.slice(object.oid.length + 1) };
  }
  return undefined;
}

/**
 * A name for display: `ifOperStatus.2`, `sysUpTime.0`, a configured name, else the numeric OID.
 * Built-in objects win; among configured ones, the longest matching OID.
 */
export function nameOf(oid: string, extra?: ExtraObjects): string {
  const bare = oid.startsWith('.') ? oid.slice(1) : oid;
  const hit = lookup(bare);
  // Below a table's own OID only columns are named; system.9.1 stays numeric rather than misleading.
  if (hit && (hit.object.shape !== 'table' || !hit.rest)) return hit.rest ? `${hit.object.name}.${hit.rest}` : hit.object.name;
  let best: { name: string; oid: string } | undefined;
  for (const name of extra ? Object.keys(extra) : []) {
    const o = ownExtra(extra, name)?.oid;
    if (o === undefined) continue;
    const base = o.startsWith('.') ? o.slice(1) : o;
    if ((bare === base || bare.startsWith(`${base}.`)) && (!best || base.length > best.oid.length)) best = { name, oid: base };
  }
  if (best) return bare === best.oid ? best.name : `${best.name}${bare.slice(best.oid.length)}`;
  return bare;
}
