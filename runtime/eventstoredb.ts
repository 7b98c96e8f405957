import type { EventStore } from '../eventstore/contract.ts';
import { EventStoreUnavailable } from '../eventstore/errors.ts';
import { loggableUrl } from '../shared/loggable-url.ts';

/** Opens the EventStoreDB engine (loaded only when EVENTSTORE_URL is set, so its gRPC client stays out of the default start). */
export async function createEventStoreDbStore(url: string, log: (message: string) => void = (message) => console.error(message)): Promise<EventStore> {
  const { createEventStoreDbStore: open } = await import('../eventstore/eventstoredb/index.ts');
  const store = open(url, {
    onIgnoredOptions: (ignored) => log(`EVENTSTORE_URL: ignoring ${ignored.join(', ')} (not options the EventStoreDB client takes, or not supported by it)`),
  });
  // The client connects lazily: probe now, so an unreachable server is reported before anything starts.
  try {
    await Promise.race([store.headPosition(), new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 10 s')), 10_000).unref())]);
  } catch (error) {
    await store.close().catch(() => undefined);
    if (error instanceof EventStoreUnavailable) throw error;
    throw new EventStoreUnavailable(
      `Cannot reach EventStoreDB at ${loggableUrl(url)}: ${(error as Error).message}. Check EVENTSTORE_URL (host, port 2113, ?tls=false for an insecure server) and that the server is running (GET /health/live).`,
      { cause: error },
    );
  }
  return store;
}
