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

/** A named statement that changes data: run in a transaction, the reply says how many rows it touched. */
export interface NamedUpdate {
  sql: string;
  description?: string;
  params?: Record<string, QueryParam>;
}

/** TLS to a database server: true (verify against the system CAs) or details. */
export type DbTls = boolean | { rejectUnauthorized?: boolean; ca?: string };

export interface ServerDatabase {
  host: string;
  port?: number;
  user: string;
  password?: SecretRef;
  database: string;
  ssl?: DbTls;
}

/** Exactly one of sqlite, postgres, mysql is set (the schema says so). */
export interface DatabaseConfig {
  sqlite?: { path: string };
  /** `schema` sets the search_path. */
  postgres?: ServerDatabase & { schema?: string };
  /** MySQL or MariaDB. */
  mysql?: ServerDatabase;
  queries?: Record<string, NamedQuery>;
  updates?: Record<string, NamedUpdate>;
  /** Row cap for named queries and `db sql` (default 1000). */
  maxRows?: number;
  /** Statement timeout in seconds for every statement on this database (default 10). */
  timeoutSeconds?: number;
}

export interface DbServiceConfig {
  default?: string;
  databases: Record<string, DatabaseConfig>;
}

/** One batch job: a fixed argv; mail arguments only fill its declared {placeholders}. */
export interface JobConfig {
  /** Program and arguments, never given to a shell; "{param}" is replaced by that argument's value. */
  command: string[];
  description?: string;
  /** Working directory; relative to the config file (default: the config file's folder). */
  cwd?: string;
  /** Variables added to the job's small base environment (PATH, HOME, LANG, TZ). */
  env?: Record<string, string | SecretRef>;
  /** Killed (whole process group) after this many seconds (default 300). */
  timeoutSeconds?: number;
  /** Captured bytes per stream; beyond it the middle is cut (default: the service's maxOutputBytes). */
  maxOutputBytes?: number;
  params?: Record<string, QueryParam>;
  /** Where results of scheduled runs are mailed (default: whoever set the schedule). */
  notify?: string;
}

export interface JobsServiceConfig {
  jobs: Record<string, JobConfig>;
  /** A job still running after this many seconds gets a "started" reply and a second mail with the result (watch). Default 30. */
  replyAfterSeconds?: number;
  /** Default per-stream output cap in bytes (default 262144). */
  maxOutputBytes?: number;
  /** IANA time zone for schedules (default: the machine's). */
  timezone?: string;
  /** Runs kept in the log per job (default 500). */
  keepRuns?: number;
}

/** A directory on an SFTP host, reached with a key; the host key is pinned. */
export interface SftpShare {
  host: string;
  port?: number;
  user: string;
  privateKey: SecretRef;
  passphrase?: SecretRef;
  /** `SHA256:…` as `ssh-keygen -lf` prints it; any other host key is refused. */
  hostKey: string;
  /** Absolute root directory on the host. */
  path: string;
  timeoutSeconds?: number;
}

/** Exactly one of path (a local directory, absolute after loading) and sftp is set. */
export interface FilesShare {
  path?: string;
  sftp?: SftpShare;
  readOnly?: boolean;
  description?: string;
}

export interface FilesServiceConfig {
  shares: Record<string, FilesShare>;
  /** Largest file `files get` attaches (default 10 MiB). */
  maxFileBytes?: number;
}

/** An account of the internal mail system: read over IMAP, sent from over SMTP. */
export interface MailAccount {
  address: string;
  name?: string;
  imap: ImapConfig;
  smtp: SmtpConfig;
  description?: string;
}

export interface MailServiceConfig {
  accounts: Record<string, MailAccount>;
  /** Largest message `mail get` attaches (default 10 MiB). */
  maxMessageBytes?: number;
}

/** SNMPv3 user-based security; keys are secret references. */
export interface SnmpV3User {
  name: string;
  level: 'noAuthNoPriv' | 'authNoPriv' | 'authPriv';
  authProtocol?: 'md5' | 'sha' | 'sha224' | 'sha256' | 'sha384' | 'sha512';
  authKey?: SecretRef;
  privProtocol?: 'des' | 'aes' | 'aes256b' | 'aes256r';
  privKey?: SecretRef;
}

/** How a device is reached over SNMP: v2c with a community, or v3 with a user. */
export interface SnmpDeviceConfig {
  host: string;
  port?: number;
  version: '2c' | '3';
  community?: SecretRef;
  /** Community for `nms set` (v2c); default: the read community. */
  writeCommunity?: SecretRef;
  user?: SnmpV3User;
  timeoutSeconds?: number;
  retries?: number;
  /** Objects `nms set` may change: names (sysLocation, sysContact, sysName, or one of `objects`). */
  writable?: string[];
}

/** One managed device: SNMP, and/or a TCP port or an HTTP(S) URL checked for hosts without SNMP. */
export interface NmsDevice {
  description?: string;
  snmp?: SnmpDeviceConfig;
  tcp?: { host: string; port: number; timeoutSeconds?: number };
  http?: { url: string; expectStatus?: number; timeoutSeconds?: number; rejectUnauthorized?: boolean };
}

export interface NmsServiceConfig {
  devices: Record<string, NmsDevice>;
  /** Named OIDs beyond the built-in MIB names, for get, set and alert conditions. */
  objects?: Record<string, { oid: string; type?: 'string' | 'integer' }>;
  /** `watch` stores a sample of every device this often, for `nms stats` (default 300; 0: never). */
  sampleSeconds?: number;
  /** Samples older than this many days are dropped (default 7). */
  keepDays?: number;
  /** Default per-device timeout for queries and checks (default 3). */
  timeoutSeconds?: number;
  /** An alert that changed state this many times within an hour is held (flapping) until it settles (default 4). */
  flapChanges?: number;
}

/** One thing to back up: sources into a destination directory as tar.gz archives. */
export interface BackupTargetConfig {
  /** Files or directories, absolute after loading (relative ones are taken from the config file's folder). */
  sources: string[];
  /** Glob patterns of paths to leave out, relative to each source's parent ("*.tmp", "cache/**"). */
  exclude?: string[];
  /** Directory the archives go to; absolute after loading. */
  destination: string;
  /** Archives kept; older ones are removed after a good run (default 7). */
  keep?: number;
  /** gzip level 0-9 (default 6). */
  compressionLevel?: number;
  description?: string;
  /** Where results of scheduled runs are mailed (default: whoever set the schedule). */
  notify?: string;
}

export interface BackupServiceConfig {
  targets: Record<string, BackupTargetConfig>;
  /** A backup still running after this many seconds gets a "started" reply and a second mail with the result (watch). Default 30. */
  replyAfterSeconds?: number;
  /** IANA time zone for schedules (default: the machine's). */
  timezone?: string;
}

export interface ServicesConfig {
  db?: DbServiceConfig;
  jobs?: JobsServiceConfig;
  files?: FilesServiceConfig;
  mail?: MailServiceConfig;
  nms?: NmsServiceConfig;
  backup?: BackupServiceConfig;
}

/** Proof of identity, weakest first; totp, pgp and confirm are equally strong. */
export type Evidence = 'allowlist' | 'dkim' | 'totp' | 'pgp' | 'confirm' | 'strong';

export interface UserConfig {
  address: string;
  name?: string;
  roles: string[];
  /** The least evidence any message from this user must carry; failing it means silence. */
  evidence?: Evidence;
  /** Absolute path of the user's armored OpenPGP public key. */
  pgpKey?: string;
}

export interface SecurityConfig {
  /** Set when the dkim tier is available: verified here, or read from the trusted A-R header. */
  dkim?: { trustedAuthservId?: string };
  evidence: Record<string, Evidence>;
  replayWindowHours: number;
  maxFutureMinutes: number;
  confirmMinutes: number;
  messagesPerUserPerHour: number;
  repliesPerHour: number;
}

/** Log in with OAuth 2 access tokens (XOAUTH2 / OAUTHBEARER) instead of a password. */
export interface OAuth2Config {
  provider: 'google' | 'microsoft' | 'generic';
  clientId: string;
  /** Absent for public clients (the device login of an installed application). */
  clientSecret?: SecretRef;
  /** microsoft: the directory (tenant) id or domain (default "organizations"). */
  tenant?: string;
  /** generic: the token endpoint (required), its device authorization endpoint, and the issuer (default: the token URL's origin). */
  tokenUrl?: string;
  deviceAuthorizationUrl?: string;
  issuer?: string;
  /** Default: what the provider needs for IMAP and SMTP. */
  scopes?: string[];
  /** Where the refresh token is kept (mode 0600); default: oauth2-<user>.json beside the state file. */
  tokenFile?: string;
}

export interface SmtpConfig {
  host: string;
  port?: number;
  secure?: boolean;
  requireTLS?: boolean;
  rejectUnauthorized?: boolean;
  user?: string;
  password?: SecretRef;
  /** Instead of a password: OAuth 2 tokens for `user`. */
  oauth2?: OAuth2Config;
  timeoutSeconds?: number;
}

/** The mailbox `watch` reads (imapflow). */
export interface ImapConfig {
  host: string;
  port?: number;
  /** TLS from the first byte (port 993); otherwise STARTTLS when the server offers it. */
  secure?: boolean;
  rejectUnauthorized?: boolean;
  user: string;
  password?: SecretRef;
  /** Instead of a password: OAuth 2 tokens for `user`. */
  oauth2?: OAuth2Config;
  /** Where requests arrive (default INBOX). */
  mailbox?: string;
  /** Created when missing. Defaults: Processing, Processed, Rejected. */
  folders?: { processing?: string; processed?: string; rejected?: string };
  /** Poll every N seconds instead of IDLE (for servers without IDLE); 0 or absent = IDLE. */
  pollSeconds?: number;
  /** Lifetime of an agent's lease on a message it works on, renewed every fifth of it (default 300). */
  leaseSeconds?: number;
}

/** Where the journal, outbox and security memory live. */
export interface StateConfig {
  /** SQLite file (the default store). */
  path: string;
  /** A PostgreSQL server instead, so agents on several hosts share one state. */
  postgres?: { url: SecretRef | string; schema?: string };
}

export interface Limits {
  maxCommands: number;
  maxLineBytes: number;
  maxMessageBytes: number;
  /** Largest request attachment an action may use. */
  maxAttachmentBytes: number;
  tableRowsInBody: number;
}

/** When `mailagent health` calls the agent degraded or down, and how often watch checks its IMAP connection. */
export interface HealthConfig {
  /** A NOOP (or a sync) at least this often, also while idle, proves the IMAP connection alive (default 60). */
  imapCheckSeconds: number;
  /** No good IMAP round trip for this long: degraded (default 180). */
  degradedAfterSeconds: number;
  /** No good IMAP round trip for this long, or no agent reporting: down (default 600). */
  downAfterSeconds: number;
  /** A reply waiting in the outbox longer than this: degraded (default 600). */
  outboxDegradedSeconds: number;
}

export const DEFAULT_HEALTH: HealthConfig = { imapCheckSeconds: 60, degradedAfterSeconds: 180, downAfterSeconds: 600, outboxDegradedSeconds: 600 };

/** Where a heartbeat alert goes: a command (argv, no shell) or an address through an SMTP server of its own. */
export type HeartbeatAlert = { command: string[] } | { mail: { to: string; smtp: SmtpConfig; from?: string } };

/** `watch` mails a probe to its own mailbox now and then; one not back in time raises an alert through a second channel. */
export interface HeartbeatConfig {
  /** A probe this often (default 600). */
  everySeconds: number;
  /** A probe not back within this many seconds: failing (default 300). */
  timeoutSeconds: number;
  alert: HeartbeatAlert;
}

export const DEFAULT_HEARTBEAT = { everySeconds: 600, timeoutSeconds: 300 };

export interface Config {
  /** Absolute path of the file this came from; secrets and relative paths resolve against its folder. */
  file: string;
  agent: { address: string; name?: string };
  smtp?: SmtpConfig;
  imap?: ImapConfig;
  state: StateConfig;
  audit: { path: string; maxBytes?: number; keep?: number };
  limits: Limits;
  users: UserConfig[];
  /** Absolute path of the users file when the allow list lives there. */
  usersFile?: string;
  /** Absolute path of the TOTP secrets file. */
  secretsFile: string;
  roles: Record<string, string[]>;
  security: SecurityConfig;
  health: HealthConfig;
  /** Absent: no heartbeat. */
  heartbeat?: HeartbeatConfig;
  services: ServicesConfig;
}

export const DEFAULT_SECURITY: Omit<SecurityConfig, 'dkim'> = {
  evidence: {},
  replayWindowHours: 24,
  maxFutureMinutes: 10,
  confirmMinutes: 10,
  messagesPerUserPerHour: 30,
  repliesPerHour: 200,
};

export const DEFAULT_LIMITS: Limits = {
  maxCommands: 50,
  maxLineBytes: 4096,
  maxMessageBytes: 10 * 1024 * 1024,
  maxAttachmentBytes: 10 * 1024 * 1024,
  tableRowsInBody: 40,
};
