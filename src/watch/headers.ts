import { journalKey, messageIdOf } from '../mail/parse';

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
 * What of the message to parse for its Message-ID: the header block and a blank line. Without a
 * blank line the pipeline parses all of a message within the size limit, and 64 KiB of a larger one.
 */
function headerBlock(raw: Buffer, maxMessageBytes: number): Buffer {
  const cut = [raw.indexOf('\r\n\r\n'), raw.indexOf('\n\n')].filter((i) => i >= 0).sort((a, b) => a - b)[0];
  if (cut === undefined && raw.length <= maxMessageBytes) return raw;
  return Buffer.concat([cut === undefined ? raw.subarray(0, 64 * 1024) : raw.subarray(0, cut), Buffer.from('\r\n\r\n')]);
}

/**
 * The journal key the pipeline gives this message (its Message-ID, else a hash of the bytes):
 * agents lease a message under it before claiming it, and recovery checks the journal with it.
 * The Message-ID comes from the same parser the pipeline uses (on its own header field only), so that
 * unbracketed, folded, encoded or repeated Message-ID headers give the same key in both places.
 */
export async function messageKey(raw: Buffer, maxMessageBytes = Infinity): Promise<string> {
  let id: string | undefined;
  try {
    id = await messageIdOf(headerBlock(raw, maxMessageBytes));
  } catch {
    // The pipeline drops an unparseable message; the hash names it all the same.
  }
  return journalKey(id, raw);
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
