import type { Config, QueryParam } from '../config/types';
import type { Problem } from '../config/schema-check';

/** What an action returns; render/ turns it into reply text and attachments. */
export type Result =
  | { kind: 'table'; columns: string[]; rows: unknown[][]; note?: string; name?: string }
  | { kind: 'text'; text: string }
  /** Text in the reply plus files attached to it (e.g. the full output of a job run). */
  | { kind: 'files'; text: string; files: ResultFile[] };

/** A file for the reply: its content, or a temporary file (ActionContext.tempFile) that is streamed into it. */
export type ResultFile = { filename: string; contentType: string } & ({ content: string | Buffer } | { path: string });

/** An argument given as `key=value` (or positionally) in a command line. */
export type ArgSpec = QueryParam & { description: string };

/** `usesAttachments`: the command takes files attached to the request (they cannot be confirmed by a reply). */
export type Prepared = { ok: true; args: Record<string, unknown>; usesAttachments?: boolean } | { ok: false, problems: string[] };

/** A file attached to the request mail, spooled to disk; its name is never used as a path. */
export interface RequestAttachment {
  /** The name it was sent with, reduced to a safe base name (no directories, no control characters). */
  filename: string;
  contentType: string;
  /** Decoded size in bytes (counted to the end even when too large to keep). */
  size: number;
  /** Larger than limits.maxAttachmentBytes: its content was not kept. */
  tooLarge: boolean;
  /** Why its content could not be kept in the spool (a full or unwritable disk). */
  storeError?: string;
  /** The content, in a temporary file removed when the request is done; absent when not kept. */
  path?: string;
}

/** What an action may know about the request it is part of, before anything runs. */
export interface RequestInfo {
  attachments: RequestAttachment[];
}

export interface ActionContext {
  config: Config;
  /** The request mail's attachments (files put, mail send attach=…). */
  attachments?: RequestAttachment[];
  /** A new temporary file, removed once the reply is built: large results go there, not into memory. */
  tempFile?: () => string;
  now: () => Date;
  /** Address of the user the command runs for (recorded in run logs). */
  user?: string;
  /**
   * Present when the agent can send a second mail later (watch). Work that outlives the reply is
   * handed over here; its result is mailed to the same sender, threaded under the request, with
   * the status "<title> finished" or "<title> failed". The returned promise settles once that
   * mail is in the outbox.
   */
  followUp?: (title: string, work: Promise<Result>) => void | Promise<void>;
}

export interface Action {
  summary: string;
  /**
   * A realistic command line, starting with the service and the action (`files get logs
   * 2026/11/app.log`), shown by `help` and in docs/commands.md. One ending in `key<<END` is
   * followed by the here-document's lines and the closing `END`, separated by "\n".
   */
  example?: string;
  args: Record<string, ArgSpec>;
  /** Argument names filled, in order, by bare words after the action. */
  positional?: string[];
  /** Set when the action takes further key=value arguments defined by config (named query parameters). */
  extraArgs?: string;
  /** Whether the action changes something (then it needs the stronger evidence tier). */
  mutates: boolean;
  /** For an action that only changes something with some arguments: decides per command line. */
  mutatesWhen?: (args: Record<string, unknown>) => boolean;
  /** Validates and converts the arguments before anything in the message runs. */
  prepare?: (args: Record<string, string>, config: Config, request?: RequestInfo) => Prepared;
  run: (args: Record<string, unknown>, ctx: ActionContext) => Promise<Result>;
}

/** What `test-service` shows for one target: it answered (ok) or why not; never a secret. */
export interface ProbeResult {
  target: string;
  ok: boolean;
  detail: string;
}

export interface Service {
  name: string;
  summary: string;
  actions: Record<string, Action>;
  /** Problems in this service's config section beyond what the schema says. */
  checkConfig: (section: unknown, path: string) => Problem[];
  /** Lines appended to `help <service>`, e.g. the named queries the config defines. */
  helpDetails?: (config: Config, may: (action: string) => boolean) => string[];
  /** One row per thing the service depends on (a database, a job, a share, an account's IMAP…). */
  probe: (config: Config) => Promise<ProbeResult[]>;
}
