/** One MIME part of a message, as the request reader needs it. */
export interface MimePart {
  contentType: string;
  /** The charset parameter as written, when there is one. */
  charset?: string;
  disposition?: string;
  /** Content-Type parameters the reader looks at (report-type). */
  reportType?: string;
  children: MimePart[];
  parent?: MimePart;
  /** Transfer-decoded bytes (base64, quoted-printable, format=flowed undone); only for inline text parts. */
  bytes?: Buffer;
}

type Chunk = import('@zone-eu/mailsplit').SplitterChunk;
type SplitNode = Extract<Chunk, { type: 'node' }>;
/** mailsplit keeps the parsed Content-Type parameters here. */
const contentTypeParams = (node: SplitNode) => (node as unknown as { _parsedContentType?: { params?: Record<string, string> } })._parsedContentType?.params;

const TEXT_TYPES = new Set(['text/plain', 'text/html']);

/** A part under message/* is someone else's message: its text is never read as a request. */
export function isEmbedded(part: MimePart): boolean {
  for (let p = part.parent; p; p = p.parent) if (p.contentType.startsWith('message/')) return true;
  return false;
}

/**
 * Body bytes of one part, as mailsplit hands them over (a line at a time): merged every few
 * thousand pieces, so that a body of a million short lines is not a million live objects.
 */
class ByteSink {
  private merged: Buffer[] = [];
  private pieces: Buffer[] = [];

  add(piece: Buffer): void {
    this.pieces.push(piece);
    if (this.pieces.length >= 4096) this.merge();
  }

  private merge(): void {
    if (this.pieces.length) this.merged.push(Buffer.concat(this.pieces));
    this.pieces = [];
  }

  bytes(): Buffer {
    this.merge();
    return this.merged.length === 1 ? this.merged[0] : Buffer.concat(this.merged);
  }
}

/** Undoes the transfer encoding (and format=flowed) of a whole part body. */
function decodeBody(node: SplitNode, body: Buffer): Buffer {
  let bytes = body;
  if (node.encoding === 'base64') bytes = (require('libbase64') as typeof import('libbase64')).decode(body.toString('latin1'));
  else if (node.encoding === 'quoted-printable') bytes = (require('libqp') as typeof import('libqp')).decode(body.toString('latin1'));
  if (!node.flowed) return bytes;
  const { Libmime } = require('libmime') as { Libmime: new () => { decodeFlowed(text: string, delSp: boolean): string } };
  return Buffer.from(new Libmime().decodeFlowed(bytes.toString('latin1'), Boolean(node.delSp)), 'latin1');
}

/**
 * Splits a message into its MIME tree (mailsplit, streaming and linear). Only the inline text
 * parts are decoded and kept; attachments and embedded messages are walked over, not buffered.
 * Charsets are left to the reader, which needs the bytes to fall back when a label is wrong.
 */
export async function readMimeTree(raw: Buffer): Promise<MimePart> {
  const { Splitter } = require('@zone-eu/mailsplit') as typeof import('@zone-eu/mailsplit');
  // An embedded message stays one opaque part: its text is never read. mailsplit counts each
  // header line as at least 64 bytes; the size cap of the whole message bounds the real size.
  const splitter = new Splitter({ ignoreEmbedded: true, maxHeadSize: 64 * raw.length + 1024 * 1024 });
  const parts = new Map<SplitNode, MimePart>();
  const bodies = new Map<SplitNode, ByteSink>();
  let root: MimePart | undefined;

  splitter.on('data', (data: Chunk) => {
    if (data.type === 'node') {
      const node = data;
      const parent = node.parentNode ? parts.get(node.parentNode as SplitNode) : undefined;
      const part: MimePart = {
        contentType: node.contentType || 'text/plain',
        charset: node.charset || undefined,
        disposition: node.disposition || undefined,
        reportType: contentTypeParams(node)?.['report-type']?.toLowerCase(),
        children: [],
        parent,
      };
      parts.set(node, part);
      if (parent) parent.children.push(part);
      else root ??= part;
      if (TEXT_TYPES.has(part.contentType) && part.disposition !== 'attachment' && !isEmbedded(part)) bodies.set(node, new ByteSink());
    } else if (data.type === 'body') {
      bodies.get(data.node as SplitNode)?.add(data.value);
    }
  });
  await new Promise<void>((resolve, reject) => {
    const events = splitter as unknown as NodeJS.EventEmitter;
    events.on('end', resolve);
    events.on('error', reject);
    splitter.end(raw);
  });
  for (const [node, sink] of bodies) parts.get(node)!.bytes = decodeBody(node, sink.bytes());
  return root ?? { contentType: 'text/plain', children: [], bytes: Buffer.alloc(0) };
}
