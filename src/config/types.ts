/** The validated configuration, mirroring config.schema.json. Paths are already absolute. */
export type SecretRef = { env: string } | { file: string };

export interface QueryParam {
  type: 'string' | 'int' | 'number' | 'date' | 'bool' | 'enum';
  values?: string[];
  required?: boolean;
  default?: string | number | boolean;
  min?: number;
  max?: number;
  maxLength?: number;
  pattern?: string;
  description?: string;
}

export interface NamedQuery {
  sql: string;
  description?: string;
  params?: Record<string, QueryParam>;
  maxRows?: number;
}

export interface DatabaseConfig {
  sqlite: { path: string };
  queries?: Record<string, NamedQuery>;
  maxRows?: number;
}

export interface DbServiceConfig {
  default?: string;
  databases: Record<string, DatabaseConfig>;
}

export interface ServicesConfig {
  db?: DbServiceConfig;
}

export interface UserConfig {
  address: string;
  name?: string;
  roles: string[];
}

export interface SmtpConfig {
  host: string;
  port?: number;
  secure?: boolean;
  requireTLS?: boolean;
  rejectUnauthorized?: boolean;
  user?: string;
  password?: SecretRef;
  timeoutSeconds?: number;
}

export interface Limits {
  maxCommands: number;
  maxLineBytes: number;
  maxMessageBytes: number;
  tableRowsInBody: number;
}

export interface Config {
  /** Absolute path of the file this came from; secrets and relative paths resolve against its folder. */
  file: string;
  agent: { address: string; name?: string };
  smtp?: SmtpConfig;
  state: { path: string };
  audit: { path: string };
  limits: Limits;
  users: UserConfig[];
  roles: Record<string, string[]>;
  services: ServicesConfig;
}

export const DEFAULT_LIMITS: Limits = {
  maxCommands: 50,
  maxLineBytes: 4096,
  maxMessageBytes: 10 * 1024 * 1024,
  tableRowsInBody: 40,
};
