import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/types';
import { processAlive } from '../core/processes';
import type { StateStore } from '../state/store';

/** How long a message lease lasts by default (imap.leaseSeconds); renewed every fifth of it while the message is worked on. */
export const DEFAULT_MESSAGE_LEASE_MS = 5 * 60_000;

/** The configured message lease, in ms. */
export const messageLeaseMs = (config: Config) => (config.imap?.leaseSeconds ?? DEFAULT_MESSAGE_LEASE_MS / 1000) * 1000;

/**
 * Who this agent is, for leases: `${hostname}:${pid}`. Each running agent leaves a marker file
 * (in the state folder) so that an agent restarted after a crash on the same host knows the owner
 * names of its dead predecessors and can take their leases over at once instead of waiting for
 * them to expire. Agents on other hosts wait for the expiry.
 */
export class AgentIdentity {
  readonly owner: string;
  /** Owners on this host whose process is gone. */
  deadOwners: string[];
  private readonly marker: string;

  constructor(private readonly dir: string, pid = process.pid) {
    const host = hostname();
    this.owner = `${host}:${pid}`;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.deadOwners = [];
    for (const name of readdirSync(dir)) {
      const m = /^(.*)\.(\d+)$/.exec(name);
      if (m && m[1] === host && Number(m[2]) !== pid && !processAlive(Number(m[2]))) this.deadOwners.push(`${host}:${m[2]}`);
    }
    this.marker = join(dir, `${host}.${pid}`);
    writeFileSync(this.marker, `${new Date().toISOString()}\n`);
  }

  /** After a full recovery nothing of the dead predecessors is left to take over. */
  forgetDead(): void {
    for (const owner of this.deadOwners) {
      const [host, pid] = [owner.slice(0, owner.lastIndexOf(':')), owner.slice(owner.lastIndexOf(':') + 1)];
      rmSync(join(this.dir, `${host}.${pid}`), { force: true });
    }
    this.deadOwners = [];
  }

  /** Clean exit: nothing of ours needs taking over. */
  retire(): void {
    rmSync(this.marker, { force: true });
  }
}

/** A lease on one message, renewed in the background until finished or released. */
export interface MessageLease {
  /**
   * The message is done: stop renewing but keep the lease until it expires, so that a copy of the
   * same message (two agents' MOVEs of one message can both succeed) is recognised as one.
   */
  finish(): void;
  /** The message is not done (it stays in the processing folder): let anyone retry it. */
  release(): Promise<void>;
}

/**
 * Leases `msg:<key>` for this agent, taking it over from a dead predecessor on this host; undefined
 * when a live agent holds it.
 */
export async function leaseMessage(store: StateStore, identity: AgentIdentity, key: string, leaseMs = DEFAULT_MESSAGE_LEASE_MS, now = Date.now): Promise<MessageLease | undefined> {
  const name = `msg:${key}`;
  const take = () => store.claim(name, identity.owner, now(), now() + leaseMs);
  let held = await take();
  for (const dead of identity.deadOwners) {
    if (held) break;
    await store.release(name, dead);
    held = await take();
  }
  if (!held) return undefined;
  const timer = setInterval(() => {
    take().catch(() => undefined);
  }, leaseMs / 5);
  timer.unref();
  return {
    finish() {
      clearInterval(timer);
    },
    async release() {
      clearInterval(timer);
      await store.release(name, identity.owner);
    },
  };
}

/**
 * Leases of filed messages, kept until they expire so that another agent does not take a second
 * delivered copy meanwhile; given back at a clean stop, when no racing copy can appear any more.
 */
export class KeptLeases {
  private readonly kept = new Map<MessageLease, number>();

  constructor(private readonly leaseMs = () => DEFAULT_MESSAGE_LEASE_MS) {}

  keep(lease: MessageLease, now = Date.now()): void {
    lease.finish();
    // Oldest first (insertion order): drop the expired ones from the front.
    for (const [old, until] of this.kept) {
      if (until > now) break;
      this.kept.delete(old);
    }
    this.kept.set(lease, now + this.leaseMs());
  }

  /**
   * A kept lease outliving a clean stop would keep the next agent from taking a message delivered
   * again (say after a UIDVALIDITY change) for the lease's lifetime (5 minutes by default).
   */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.kept.keys()].map((lease) => lease.release().catch(() => undefined)));
    this.kept.clear();
  }
}
