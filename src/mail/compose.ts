import type MailComposerClass from 'nodemailer/lib/mail-composer';
import type Mail from 'nodemailer/lib/mailer';

/**
 * The one way mail of the agent's own is turned into bytes: nodemailer's MailComposer, so headers
 * are encoded and folded (and injection refused) by one well-tested implementation.
 *
 * MimeNode.build() streams even a short text through a chain of Transform streams (content,
 * encoder, LastNewline, pipeline bookkeeping, a setImmediate between steps): for a reply, a large
 * part of the agent's CPU per request. A message that is one text part is therefore put together
 * here from the same pieces without streams: MimeNode's own header block, the body encoded by
 * nodemailer's own quoted-printable or base64 encoder, and the final line break LastNewline adds.
 * The bytes are the same (test/compose.test.ts compares both ways over a corpus); anything else
 * (attachments, a multipart tree, transforms) goes through build().
 */
export async function composeMessage(options: Mail.Options): Promise<Buffer> {
  // async: whatever throws (a header nodemailer refuses) rejects, as a failed build() does.
  const MailComposer = require('nodemailer/lib/mail-composer') as typeof MailComposerClass;
  const root = new MailComposer(options).compile();
  return buildOnePart(root as unknown as OnePartNode) ?? buildStreamed(root);
}

/** The streamed way, for any MIME tree; also what the direct way is checked against. */
export function buildStreamed(root: { build(callback: (err: Error | null, message: Buffer) => void): void }): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => root.build((err, message) => (err ? reject(err) : resolve(message))));
}

/** What of MimeNode the direct way reads (nodemailer's own fields; checked before use). */
interface OnePartNode {
  multipart?: unknown;
  childNodes?: unknown[];
  content?: unknown;
  newline?: unknown;
  _raw?: unknown;
  _transforms?: unknown[];
  _processFuncs?: unknown[];
  buildHeaders(): string;
  getTransferEncoding(): string | false;
}

/** nodemailer's qp and base64 encoders: Transform streams. */
type EncoderClass = new (options?: { binary?: boolean }) => {
  push(chunk: unknown, encoding?: BufferEncoding): boolean;
  _transform(chunk: Buffer, encoding: string, done: (err?: Error | null) => void): void;
  _flush(done: (err?: Error | null) => void): void;
};

/** The bytes of a message that is one text part given as a string; undefined for anything else. */
export function buildOnePart(node: OnePartNode): Buffer | undefined {
  const plain =
    !node.multipart &&
    Array.isArray(node.childNodes) && node.childNodes.length === 0 &&
    typeof node.content === 'string' &&
    !node.newline && !node._raw &&
    Array.isArray(node._transforms) && node._transforms.length === 0 &&
    Array.isArray(node._processFuncs) && node._processFuncs.length === 0;
  if (!plain) return undefined;
  const encoding = node.getTransferEncoding();
  const content = node.content as string;
  let body: string;
  if (encoding === 'quoted-printable') {
    body = encodeAtOnce((require('nodemailer/lib/qp') as { Encoder: EncoderClass }).Encoder, content);
  } else if (encoding === 'base64') {
    body = encodeAtOnce((require('nodemailer/lib/base64') as { Encoder: EncoderClass }).Encoder, content);
  } else if (encoding === '7bit' || (encoding === false && content === '')) {
    // An empty text has no Content-Transfer-Encoding and no body.
    body = content;
  } else {
    return undefined;
  }
  const message = Buffer.from(`${node.buildHeaders()}\r\n\r\n${body}`, 'utf8');
  // LastNewline: the message ends with a line break (CR gets its LF).
  const last = message.length ? message[message.length - 1] : undefined;
  if (last === 0x0a) return message;
  return Buffer.concat([message, Buffer.from(last === 0x0d ? '\n' : '\r\n')]);
}

/**
 * The encoder's own code run on the whole text as the one chunk the stream would give it (a
 * string content arrives in one piece), its output taken as it pushes it: the same soft line
 * breaks to the byte, without a stream around it. A text part is not binary (a CR or LF alone
 * is a line break, as MimeNode tells its encoder).
 */
function encodeAtOnce(Encoder: EncoderClass, text: string): string {
  const encoder = new Encoder({ binary: false });
  const out: string[] = [];
  encoder.push = (chunk) => {
    if (chunk !== null && chunk !== undefined) out.push(typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('latin1'));
    return true;
  };
  const fail = (err?: Error | null) => {
    if (err) throw err;
  };
  encoder._transform(Buffer.from(text, 'utf8'), 'buffer', fail);
  encoder._flush(fail);
  return out.join('');
}
