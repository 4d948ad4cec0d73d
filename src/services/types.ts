import type { Config, QueryParam } from '../config/types';
import type { Problem } from '../config/schema-check';
import type { ServiceStore } from '../state/service-store';

/** What an action returns; render/ turns it into reply text and attachments. */
export type Result =
  /**
   * A table; `intro` is text shown above it (a device's system fields), `files` are attached
   * with it (a series as CSV, its chart as PNG).
   */
  | { kind: 'table'; columns: string[]; rows: unknown[][]; note?: string; name?: string; intro?: string; files?: ResultFile[] }
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

type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type SchedulerLog = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;

/** A mail the agent sends on its own (a scheduled result, an alert), not a reply to a request. */
export interface Notice {
  to: string;
  /** e.g. "backup etc finished", "alert uplink-down: firing". */
  subject: string;
  /** Shown as the command line in the transcript ("backup run target=etc (scheduled)"). */
  command: string;
  outcome: { ok: true; result: Result } | { ok: false; error: string };
}

/** What a firing may use; `notify` is absent where no mail can be sent (then results only go to the log). */
export interface TimedContext {
  config: Config;
  store: ServiceStore;
  now: () => Date;
  log: SchedulerLog;
  /** The moment this firing was due. */
  scheduledAt: Date;
  /** Queues a notice in the outbox; `key` makes it exactly once (a firing's key and time). */
  notify?: (key: string, notice: Notice) => Promise<void>;
}

/**
 * Work a service does on its own time under `watch` (a scheduled job or backup, an alert rule, a
 * device poll), all fired by the one scheduler (services/scheduler.ts) with the same claims, so
 * that of several agents exactly one fires each due moment.
 */
export interface TimedTask {
  /** Unique across services, the claim key of its firings: a job's name, or scheduleKey(service, name). */
  key: string;
  /** How logs name it ("job nightly", "backup etc", "alert uplink"). */
  title: string;
  /** A cron expression (in `timezone`), or a period in ms aligned to the epoch. */
  when: { cron: string; timezone?: string } | { everyMs: number };
  /** When it was set: no firing before this moment is run (the reply to "set" announced the next one). */
  setAt?: number;
  /** Firings missed while no agent ran are dropped without a warning (polls, alert checks). */
  quietMisses?: boolean;
  /** Does the work; settles when it is done. Never runs twice at once for one key. */
  fire: (ctx: TimedContext) => Promise<void>;
}

/** What a service gives the scheduler: its tasks now, and names it ignores with the reason (logged once). */
export interface TimedList {
  tasks: TimedTask[];
  ignored?: { key: string; message: string; fields?: Record<string, unknown> }[];
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
  /** Work this service does on its own under `watch`; read at every scheduler check. */
  timed?: (config: Config, store: ServiceStore) => Promise<TimedList>;
}
