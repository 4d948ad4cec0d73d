import type { Config } from '../config/types';

/**
 * Who gets the result of a scheduled firing: the address the config names for the job or target,
 * else whoever set the schedule, as long as that address is still on the allow list (a user
 * removed since must not keep receiving results). Undefined: the result only goes to the log.
 */
export function scheduledRecipient(config: Config, configured: string | undefined, setBy: string | undefined): string | undefined {
  if (configured) return configured;
  if (!setBy) return undefined;
  const user = config.users.find((u) => u.address.toLowerCase() === setBy.toLowerCase());
  return user?.address;
}
