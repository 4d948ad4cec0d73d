/**
 * OpenPGP signatures on command mails, checked against the sender's configured public key.
 *
 * - PGP/MIME (RFC 3156): a top-level `multipart/signed; protocol="application/pgp-signature"`.
 *   The signature covers the first body part byte for byte (its MIME headers included, line
 *   endings as CRLF; the CRLF before the next delimiter belongs to the delimiter). The commands
 *   are the decoded first text/plain inside that part, and nothing outside it.
 * - Inline: a clearsigned block (`-----BEGIN PGP SIGNED MESSAGE-----`) in the first text/plain
 *   part. Only the signed text counts; anything around the block is ignored.
 *
 * The result says nothing about why a signature failed: a caller must not tell a forger which
 * part of the forgery was wrong.
 */
import type { Key } from 'openpgp';
import { parseMail } from '../mail/parse';

export type PgpResult =
  | { ok: true; signedText: string; keyId: string }
  | { ok: false; reason: 'unsigned' | 'bad signature' | 'unusable key' };

const BAD: PgpResult = { ok: false, reason: 'bad signature' };
const UNSIGNED: PgpResult = { ok: false, reason: 'unsigned' };
const BEGIN_SIGNED = '-----BEGIN PGP SIGNED MESSAGE-----';
const END_SIGNATURE = '-----END PGP SIGNATURE-----';

type OpenPgp = typeof import('openpgp');
const openpgp = (): OpenPgp => require('openpgp') as OpenPgp;

interface Entity {
  /** Lower-case header name → unfolded value, first occurrence only. */
  headers: Map<string, string>;
  /** Body as a latin1 string (one char per byte). */
  body: string;
}

/** Splits a MIME entity (latin1 string) into its header fields and body. */
function splitEntity(text: string): Entity {
  const end = /\r?\n\r?\n/.exec(text);
  // An entity that starts with an empty line has no headers at all.
  const startsEmpty = /^\r?\n/.exec(text);
  const headerText = startsEmpty ? '' : end ? text.slice(0, end.index) : text;
  const body = startsEmpty ? text.slice(startsEmpty[0].length) : end ? text.slice(end.index + end[0].length) : '';
  const headers = new Map<string, string>();
  for (const field of headerText.replace(/\r?\n(?=[ \t])/g, '').split(/\r?\n/)) {
    const colon = field.indexOf(':');
    if (colon <= 0) continue;
    const name = field.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, field.slice(colon + 1).trim());
  }
  return { headers, body };
}

/** `type/subtype; a=b; c="d"` → the lower-case type and its parameters (names lower-case). */
export function parseContentType(value: string | undefined): { type: string; params: Map<string, string> } {
  const params = new Map<string, string>();
  if (!value) return { type: 'text/plain', params };
  const semi = value.indexOf(';');
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  const re = /;\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]*))/g;
  let m: RegExpExecArray | null;
  const rest = semi < 0 ? '' : value.slice(semi);
  while ((m = re.exec(rest))) {
    const name = m[1].toLowerCase();
    if (!params.has(name)) params.set(name, m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]);
  }
  return { type, params };
}

/** The body parts of a multipart body (latin1), exactly as they appear between the delimiters. */
function multipartParts(body: string, boundary: string): string[] {
  const escaped = boundary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // A delimiter line: at the start of the body or after a line break, then transport padding.
  const re = new RegExp(`(?:^|\\r?\\n)--${escaped}(--)?[ \\t]*(?=\\r?\\n|$)`, 'g');
  const parts: string[] = [];
  let start = -1;
  let m: RegExpExecArray | null;
  while ((m = re.exec(body))) {
    if (start >= 0) parts.push(body.slice(start, m.index));
    if (m[1]) return parts; // the close delimiter
    const after = body.slice(m.index + m[0].length).match(/^\r?\n/);
    start = m.index + m[0].length + (after ? after[0].length : 0);
  }
  return parts; // no close delimiter: the unterminated last part is ignored
}

const canonical = (latin1: string) => latin1.replace(/\r?\n/g, '\r\n');

function decodeQuotedPrintable(text: string): string {
  return text.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The detached signature from the second part: armored (any transfer encoding) or binary. */
async function readDetachedSignature(part: string): Promise<import('openpgp').Signature> {
  const { headers, body } = splitEntity(part);
  const cte = (headers.get('content-transfer-encoding') ?? '').toLowerCase();
  const bytes = cte === 'base64'
    ? Buffer.from(body.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64')
    : Buffer.from(cte === 'quoted-printable' ? decodeQuotedPrintable(body) : body, 'latin1');
  const text = bytes.toString('latin1');
  const begin = text.indexOf('-----BEGIN PGP SIGNATURE-----');
  if (begin >= 0) {
    const end = text.indexOf(END_SIGNATURE, begin);
    if (end < 0) throw new Error('unterminated signature');
    return openpgp().readSignature({ armoredSignature: text.slice(begin, end + END_SIGNATURE.length) });
  }
  return openpgp().readSignature({ binarySignature: new Uint8Array(bytes) });
}

/**
 * The key ID of the first signature that verifies with `key` and whose signing (sub)key is valid
 * now: openpgp checks the key as it was when the signature was made, but a key that has expired
 * or been revoked since must not authorise anything today.
 */
async function anyVerified(key: Key, signatures: { keyID: import('openpgp').KeyID; verified: Promise<true> }[]): Promise<string | undefined> {
  for (const s of signatures) {
    try {
      if ((await s.verified) !== true) continue;
      const now = new Date();
      await key.verifyPrimaryKey(now);
      await key.getSigningKey(s.keyID, now);
      return s.keyID.toHex();
    } catch { /* bad, unknown key, expired, revoked */ }
  }
  return undefined;
}

async function verifyPgpMime(raw: string, boundary: string, key: Key): Promise<PgpResult> {
  const parts = multipartParts(raw, boundary);
  if (parts.length < 2) return BAD;
  const signedBytes = Buffer.from(canonical(parts[0]), 'latin1');
  let keyId: string | undefined;
  try {
    const pgp = openpgp();
    const signature = await readDetachedSignature(parts[1]);
    const message = await pgp.createMessage({ binary: new Uint8Array(signedBytes) });
    const result = await pgp.verify({ message, signature, verificationKeys: key, format: 'binary' });
    keyId = await anyVerified(key, result.signatures);
  } catch {
    return BAD;
  }
  if (!keyId) return BAD;
  const inner = await parseMail(signedBytes);
  return { ok: true, signedText: inner.bodySource === 'plain' ? inner.body.replace(/\r\n?/g, '\n') : '', keyId };
}

async function verifyCleartext(body: string, key: Key): Promise<PgpResult> {
  const begin = body.search(/^-----BEGIN PGP SIGNED MESSAGE-----[ \t]*\r?$/m);
  const endAt = begin < 0 ? -1 : body.indexOf(END_SIGNATURE, begin);
  if (endAt < 0) return BAD;
  try {
    const pgp = openpgp();
    const message = await pgp.readCleartextMessage({ cleartextMessage: body.slice(begin, endAt + END_SIGNATURE.length) });
    const result = await pgp.verify({ message, verificationKeys: key });
    const keyId = await anyVerified(key, result.signatures);
    if (!keyId) return BAD;
    return { ok: true, signedText: message.getText().replace(/\r\n/g, '\n'), keyId };
  } catch {
    return BAD;
  }
}

/**
 * Checks the message's OpenPGP signature against `armoredPublicKey`. A message with neither a
 * PGP/MIME signature nor a clearsigned block is `unsigned`; everything else that does not verify
 * (altered, another key, expired or revoked key, malformed) is `bad signature`. A key that cannot
 * be read, or is a private key, is `unusable key` (a configuration problem).
 */
export async function verifyPgp(raw: Buffer, armoredPublicKey: string): Promise<PgpResult> {
  const text = raw.toString('latin1');
  const top = splitEntity(text);
  const { type, params } = parseContentType(top.headers.get('content-type'));
  const pgpMime = type === 'multipart/signed' && (params.get('protocol') ?? '').toLowerCase() === 'application/pgp-signature';

  let body: string | undefined;
  if (!pgpMime) {
    const mail = await parseMail(raw);
    if (mail.bodySource !== 'plain' || !mail.body.includes(BEGIN_SIGNED)) return UNSIGNED;
    body = mail.body;
  }

  let key: Key;
  try {
    key = await openpgp().readKey({ armoredKey: armoredPublicKey });
    if (key.isPrivate()) return { ok: false, reason: 'unusable key' };
  } catch {
    return { ok: false, reason: 'unusable key' };
  }

  if (pgpMime) {
    const boundary = params.get('boundary');
    return boundary ? verifyPgpMime(top.body, boundary, key) : BAD;
  }
  return verifyCleartext(body!, key);
}
