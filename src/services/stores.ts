import type { Config } from '../config/types';
import { openServiceStore, type ServiceStore } from '../state/service-store';

/**
 * The jobs store used by mail commands, one per config, opened on first use. The scheduler opens
 * its own connection instead (see scheduler.ts), like a second agent would.
 */
const stores = new Map<Config, Promise<ServiceStore>>();

export function serviceStoreFor(config: Config): Promise<ServiceStore> {
  let store = stores.get(config);
  if (!store) {
    store = openServiceStore(config);
    stores.set(config, store);
    store.catch(() => stores.delete(config)); // a failed open is retried by the next command
  }
  return store;
}

/** Makes commands under this config use `store` (an in-memory store, or one a caller already opened). */
export function bindServiceStore(config: Config, store: ServiceStore): void {
  stores.set(config, Promise.resolve(store));
}

/** Closes every store opened by serviceStoreFor or bound with bindServiceStore. Safe to call more than once. */
export async function closeServiceStores(): Promise<void> {
  const open = [...stores.values()];
  stores.clear();
  await Promise.all(open.map((p) => p.then((s) => s.close()).catch(() => undefined)));
}
