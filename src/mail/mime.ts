import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { once } from 'node:events';
import type { Transform } from 'node:stream';
import type { RequestAttachment } from '../services/types';
import type { Spool } from './spool';

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
const FEED_BYTES = 64 * 1024;

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

/** A file name from a mail, as a plain base name: never a path, never control characters. */
export function safeFilename(name: string | undefined, n: number): string {
  const base = (name ?? '').replace(/\\/g, '/').split('/').pop()!.replace(/[\u0000-\u001f\u007f-\u009f]/g, '').trim();
  const cut = Array.from(base).slice(0, 200).join('');
  return cut === '' || cut === '.' || cut === '..' ? `attachment-${n}` : cut;
}

/**
 * An attachment's decoded bytes go straight to a spool file (nothing is buffered); past the size
 * cap the file is dropped and only the size is still counted.
 */
class AttachmentWriter {
  private fd?: number;
  readonly done: Promise<void>;

  constructor(readonly attachment: RequestAttachment, decoder: Transform, spool: Spool | undefined, cap: number) {
    if (spool) {
      try {
        attachment.path = spool.nextFile();
        this.fd = openSync(attachment.path, 'wx', 0o600);
      } catch (err) {
        this.fail(err);
      }
    }
    decoder.on('data', (chunk: Buffer) => {
      attachment.size += chunk.length;
      if (attachment.size > cap && !attachment.tooLarge) {
        attachment.tooLarge = true;
        this.drop();
      }
      if (this.fd === undefined) return;
      try {
        writeSync(this.fd, chunk);
      } catch (err) {
        this.fail(err);
      }
    });
    this.done = new Promise((resolve, reject) => {
      decoder.on('end', () => {
        if (this.fd !== undefined) closeSync(this.fd);
        this.fd = undefined;
        resolve();
      });
      decoder.on('error', reject);
    });
  }

  /** A disk that is full or not writable: the request goes on, a command that needs the file is refused. */
  private fail(err: unknown): void {
    this.attachment.storeError = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    this.drop();
  }

  private drop(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    if (this.attachment.path) rmSync(this.attachment.path, { force: true });
    this.attachment.path = undefined;
  }
}

export interface MimeOptions {
  /** Where attachments are kept; without one they are only counted. */
  spool?: Spool;
  maxAttachmentBytes?: number;
}

/**
 * Splits a message into its MIME tree (mailsplit, streaming and linear). Only the inline text
 * parts are decoded and kept in memory; attachments are streamed to the spool (or only counted);
 * an embedded message is one opaque part whose text is never read (attached, it is an attachment).
 * Charsets are left to the reader, which needs the bytes to fall back when a label is wrong.
 */
export async function readMimeTree(message: Buffer[], options: MimeOptions = {}): Promise<{ root: MimePart; attachments: RequestAttachment[] }> {
  const size = message.reduce((n, b) => n + b.length, 0);
  const { Splitter } = require('@zone-eu/mailsplit') as typeof import('@zone-eu/mailsplit');
  // An embedded message stays one opaque part: its text is never read. mailsplit counts each
  // header line as at least 64 bytes; the size cap of the whole message bounds the real size.
  const splitter = new Splitter({ ignoreEmbedded: true, maxHeadSize: 64 * size + 1024 * 1024 });
  const parts = new Map<SplitNode, MimePart>();
  const bodies = new Map<SplitNode, ByteSink>();
  const writers = new Map<SplitNode, { decoder: Transform; writer: AttachmentWriter }>();
  const attachments: RequestAttachment[] = [];
  const cap = options.maxAttachmentBytes ?? Infinity;
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
      if (isEmbedded(part) || node.multipart) return;
      if (TEXT_TYPES.has(part.contentType) && part.disposition !== 'attachment') bodies.set(node, new ByteSink());
      if (part.disposition === 'attachment' || !TEXT_TYPES.has(part.contentType) || node.filename) {
        const attachment: RequestAttachment = { filename: safeFilename(node.filename || undefined, attachments.length + 1), contentType: part.contentType, size: 0, tooLarge: false };
        attachments.push(attachment);
        const decoder = node.getDecoder() as Transform;
        writers.set(node, { decoder, writer: new AttachmentWriter(attachment, decoder, options.spool, cap) });
      }
    } else if (data.type === 'body') {
      bodies.get(data.node as SplitNode)?.add(data.value);
      writers.get(data.node as SplitNode)?.decoder.write(data.value);
    }
  });
  const events = splitter as unknown as NodeJS.EventEmitter;
  const ended = new Promise<void>((resolve, reject) => {
    events.on('end', resolve);
    events.on('error', reject);
  });
  // Fed in slices: handed one buffer, mailsplit passes a whole attachment on as one chunk, and
  // its decoder then holds several string copies of it at once.
  for (const buffer of message) {
    for (let at = 0; at < buffer.length; at += FEED_BYTES) {
      if (!splitter.write(buffer.subarray(at, at + FEED_BYTES))) await Promise.race([once(events, 'drain'), ended]);
    }
  }
  splitter.end();
  await ended;
  for (const { decoder } of writers.values()) decoder.end();
  await Promise.all([...writers.values()].map(({ writer }) => writer.done));
  for (const [node, sink] of bodies) parts.get(node)!.bytes = decodeBody(node, sink.bytes());
  return { root: root ?? { contentType: 'text/plain', children: [], bytes: Buffer.alloc(0) }, attachments };
}
