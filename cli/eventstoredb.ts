import type { EventStore } from '../eventstore/contract.ts';
import { EventStoreUnavailable } from '../eventstore/errors.ts';

/** Opens the EventStoreDB engine (loaded only when EVENTSTORE_URL is set, so its gRPC client stays out of the default start). */
export async function createEventStoreDbStore(url: string): Promise<EventStore> {
  throw new EventStoreUnavailable(
    `EVENTSTORE_URL is set (${url.replace(/\/\/[^@/]*@/, '//***@')}) but the EventStoreDB engine is not wired yet in this build. Unset EVENTSTORE_URL to keep events in PostgreSQL.`,
  );
}
