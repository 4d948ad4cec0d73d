import { hostname } from 'node:os';
import type { Config, UserConfig } from '../config/types';
import type { StateStore } from '../state/store';
import { VERSION } from '../version';

/** The `status` command: what the agent is and what it holds. */
export async function statusText(config: Config, store: StateStore, user: UserConfig): Promise<string> {
  const counts = await store.counts();
  return [
    `mailagent ${VERSION} on ${hostname()}`,
    `services: ${Object.keys(config.services).join(', ') || 'none'}`,
    `your roles: ${user.roles.join(', ') || 'none'}`,
    `messages answered: ${counts.replied}; replies waiting to be sent: ${counts['reply-pending']}`,
  ].join('\n');
}
