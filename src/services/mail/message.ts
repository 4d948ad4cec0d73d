/**
 * Reading a fetched message for `mail get`: its first text/plain part, decoded. services/ never
 * imports mail/, so this is a small reader of its own on mailsplit (the same streaming, linear
 * MIME splitter the request reader uses), loaded on first use.
 */

type Chunk = import('@zone-eu/mailsplit').SplitterChunk;
type SplitNode = Extract<Chunk, { type: 'node' }>;

/** Undoes the transfer encoding and format=flowed of a part body, then its charset. */
function decodeText(node: SplitNode, body: Buffer): string {
  let bytes = body;
  if (node.encoding === 'base64') bytes = (require('libbase64') as typeof import('libbase64')).decode(body.toString('latin1'));
  else if (node.encoding === 'quoted-printable') bytes = (require('libqp') as typeof import('libqp')).decode(body.toString('latin1'));
  if (node.flowed) {
    const { Libmime } = require('libmime') as { Libmime: new () => { decodeFlowed(text: string, delSp: boolean): string } };
    bytes = Buffer.from(new Libmime().decodeFlowed(bytes.toString('latin1'), Boolean(node.delSp)), 'latin1');
  }
  const charset = (node.charset || 'utf-8').toLowerCase();
  const iconv = require('iconv-lite') as typeof import('iconv-lite');
  if (charset === 'utf-8' || charset === 'utf8' || charset === 'us-ascii' || !iconv.encodingExists(charset)) return bytes.toString('utf8');
  return iconv.decode(bytes, charset);
}

/**
 * The first text/plain part that is not an attachment, decoded to a string; undefined when the
 * message has none. An embedded message (message/rfc822) is one opaque part: its text is not
 * the message's own.
 */
export async function firstPlainText(raw: Buffer): Promise<string | undefined> {
  const { Splitter } = require('@zone-eu/mailsplit') as typeof import('@zone-eu/mailsplit');
  const splitter = new Splitter({ ignoreEmbedded: true, maxHeadSize: 64 * raw.length + 1024 * 1024 });
  let chosen: SplitNode | undefined;
  let done = false;
  const pieces: Buffer[] = [];
  splitter.on('data', (data: Chunk) => {
    if (data.type === 'node') {
      if (chosen) done = true;
      if (done || data.multipart) return;
      const type = (data.contentType || 'text/plain').toLowerCase();
      if (type === 'text/plain' && data.disposition !== 'attachment') chosen = data;
    } else if (data.type === 'body' && !done && chosen && data.node === chosen) {
      pieces.push(data.value);
    }
  });
  await new Promise<void>((resolve, reject) => {
    const events = splitter as unknown as NodeJS.EventEmitter;
    events.on('end', resolve);
    events.on('error', reject);
    splitter.end(raw);
  });
  return chosen ? decodeText(chosen, Buffer.concat(pieces)) : undefined;
}

/**
 * Whether the bytes can travel as a message/rfc822 part unchanged: such a part may not be
 * base64-encoded (RFC 2046 5.2.1), so it must already be fit for SMTP — CRLF line ends only,
 * lines of at most 998 bytes, no NUL.
 */
export function fitsMessagePart(raw: Buffer): boolean {
  let lineStart = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === 0) return false;
    if (c === 13) {
      if (raw[i + 1] !== 10) return false;
      if (i - lineStart > 998) return false;
      i++;
      lineStart = i + 1;
    } else if (c === 10) {
      return false;
    }
  }
  return raw.length - lineStart <= 998;
}

/** Control characters out of a header value read from a foreign message (a reply line is one line). */
export function oneLine(text: string | undefined): string {
  return (text ?? '').replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();
}

export function formatAddresses(list: { name?: string; address?: string }[] | undefined): string {
  return (list ?? [])
    .map((a) => {
      const name = oneLine(a.name);
      const address = oneLine(a.address);
      return name && address ? `${name} <${address}>` : name || address;
    })
    .filter(Boolean)
    .join(', ');
}

/** `2026-11-20 09:30:00 UTC`, or '' for a missing or invalid date. */
export function formatDate(date: Date | undefined): string {
  if (!date || Number.isNaN(date.getTime())) return '';
  return date.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC');
}
