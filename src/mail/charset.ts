import { isUtf8 } from 'node:buffer';

/**
 * Bytes to text the way mail clients do it: a label is trusted when the bytes agree with it;
 * bytes that are not valid UTF-8 under a UTF-8 or ASCII label (or none) are windows-1252, the
 * charset such mail was almost always written in.
 */

const UTF8_OR_ASCII = new Set(['', 'utf8', 'usascii', 'ascii', 'us', 'ansix341968', 'iso646us', 'csascii', 'cp367', 'ibm367', 'unicode11utf8']);
const UTF7 = new Set(['utf7', 'unicode11utf7', 'csunicode11utf7', 'xunicode20utf7']);

const normalName = (charset: string) => charset.toLowerCase().replace(/[^a-z0-9]/g, '');

function iconv(): typeof import('iconv-lite') {
  return require('iconv-lite') as typeof import('iconv-lite');
}

export function utf8OrWindows1252(bytes: Buffer): string {
  // toString keeps ASCII text a one-byte string: half the memory of a decoder's UTF-16 output.
  return isUtf8(bytes) ? bytes.toString('utf8').replace(/^\uFEFF/, '') : iconv().decode(bytes, 'win1252');
}

/** Decodes a text part: its label when the bytes fit it, UTF-7 included, else UTF-8 or windows-1252. */
export function decodeText(bytes: Buffer, charset?: string): string {
  const name = normalName(charset ?? '');
  if (UTF8_OR_ASCII.has(name)) return utf8OrWindows1252(bytes);
  // UTF-7 is decoded like any charset; the text it gives is then read and checked like any other.
  if (UTF7.has(name)) return iconv().decode(bytes, 'utf7');
  const libmime = require('libmime/lib/charset') as { decode(buf: Buffer, charset: string): string; normalizeCharset(c: string): string };
  const normal = libmime.normalizeCharset(charset!);
  const japanese = /^jis|^iso-?2022-?jp|^EUCJP/i.test(normal);
  if (!japanese && !iconv().encodingExists(normal)) return utf8OrWindows1252(bytes);
  return libmime.decode(bytes, charset!);
}

/** RFC 2047 encoded word; the payload is matched on the raw (latin1) header, 8-bit bytes included. */
const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=/g;

function wordBytes(encoding: string, payload: string): Buffer {
  if (encoding.toUpperCase() === 'B') return Buffer.from(payload, 'base64');
  const bytes: number[] = [];
  for (let i = 0; i < payload.length; i++) {
    const c = payload[i];
    if (c === '_') bytes.push(0x20);
    else if (c === '=' && /^[0-9a-fA-F]{2}$/.test(payload.slice(i + 1, i + 3))) {
      bytes.push(parseInt(payload.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c.charCodeAt(0) & 0xff);
  }
  return Buffer.from(bytes);
}

/**
 * Decodes an unfolded header value given as a latin1 string of its raw bytes: encoded words in
 * their charset (adjacent words of one charset joined first, so a character split across two is
 * whole), raw 8-bit text as UTF-8 or windows-1252. A wrong or missing label never yields U+FFFD
 * for a Latin-1 letter.
 */
export function decodeHeaderValue(rawLatin1: string): string {
  let out = '';
  let at = 0;
  let run: { charset: string; bytes: Buffer[] } | undefined;
  const flush = () => {
    if (run) out += decodeText(Buffer.concat(run.bytes), run.charset.replace(/\*.*$/, ''));
    run = undefined;
  };
  for (const m of rawLatin1.matchAll(ENCODED_WORD)) {
    const between = rawLatin1.slice(at, m.index);
    // Whitespace between two encoded words is not part of the text (RFC 2047 6.2).
    if (!(run && /^\s*$/.test(between))) {
      flush();
      out += utf8OrWindows1252(Buffer.from(between, 'latin1'));
    }
    const bytes = wordBytes(m[2], m[3]);
    if (run && run.charset.toLowerCase() === m[1].toLowerCase()) run.bytes.push(bytes);
    else {
      flush();
      run = { charset: m[1], bytes: [bytes] };
    }
    at = m.index + m[0].length;
  }
  flush();
  return out + utf8OrWindows1252(Buffer.from(rawLatin1.slice(at), 'latin1'));
}
