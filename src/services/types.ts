import type { Config, QueryParam } from '../config/types';
import type { Problem } from '../config/schema-check';

/** What an action returns; render/ turns it into reply text and attachments. */
export type Result =
  | { kind: 'table'; columns: string[]; rows: unknown[][]; note?: string; name?: string }
  | { kind: 'text'; text: string };

/** An argument given as `key=value` (or positionally) in a command line. */
export type ArgSpec = QueryParam & { description: string };

export type Prepared = { ok: true; args: Record<string, unknown> } | { ok: false, problems: string[] };

export interface ActionContext {
  config: Config;
  now: () => Date;
}

export interface Action {
  summary: string;
  args: Record<string, ArgSpec>;
  /** Argument names filled, in order, by bare words after the action. */
  positional?: string[];
  /** Set when the action takes further key=value arguments defined by config (named query parameters). */
  extraArgs?: string;
  mutates: boolean;
  /** Validates and converts the arguments before anything in the message runs. */
  prepare?: (args: Record<string, string>, config: Config) => Prepared;
  run: (args: Record<string, unknown>, ctx: ActionContext) => Promise<Result>;
}

export interface Service {
  name: string;
  summary: string;
  actions: Record<string, Action>;
  /** Problems in this service's config section beyond what the schema says. */
  checkConfig: (section: unknown, path: string) => Problem[];
  /** Lines appended to `help <service>`, e.g. the named queries the config defines. */
  helpDetails?: (config: Config) => string[];
  probe: (config: Config) => Promise<{ ok: boolean; detail: string }>;
}
