import { createHash } from 'node:crypto';

/** The header block of a raw message, with folded lines joined. */
function headerLines(raw: Buffer): string[] {
  const head = raw.subarray(0, Math.min(raw.length, 256 * 1024)).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  return (end >= 0 ? head.slice(0, end) : head).replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/);
}

function header(raw: Buffer, name: string): string | undefined {
  const prefix = `${name.toLowerCase()}:`;
  const line = headerLines(raw).find((l) => l.toLowerCase().startsWith(prefix));
  return line?.slice(prefix.length).trim();
}

/**
 * The journal key the pipeline gives this message (Message-ID, else a hash of the bytes), read
 * without parsing the whole message: agents lease a message under it before processing, and
 * recovery checks the journal with it.
 */
export function messageKey(raw: Buffer): string {
  const id = header(raw, 'Message-ID')?.match(/<[^<>\s]+>/)?.[0];
  return id ? `mid:${id.toLowerCase()}` : `sha256:${createHash('sha256').update(raw).digest('hex')}`;
}

/**
 * The envelope sender that the delivering MTA recorded in Return-Path ("" for a bounce), or
 * undefined when the message has none.
 */
export function envelopeSenderOf(raw: Buffer): string | undefined {
  const value = header(raw, 'Return-Path');
  if (value === undefined) return undefined;
  return value.match(/<([^<>]*)>/)?.[1]?.trim() ?? value;
}
