import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenericContainer, Wait, getContainerRuntimeClient, type StartedTestContainer } from 'testcontainers';
import type { EventStore } from '../../eventstore/contract.ts';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import { createEventStoreDbStore } from '../../eventstore/eventstoredb/store.ts';
import { eventStoreContract, newEvent } from './contract.ts';

/**
 * EventStoreDB runs when EVENTSTORE_URL names a server, or in a container when a Docker engine
 * answers; otherwise the suite is skipped and says why.
 */
const configuredUrl = process.env.EVENTSTORE_URL;

const dockerProblem = async (): Promise<string | undefined> => {
  if (configuredUrl) return undefined;
  try {
    await getContainerRuntimeClient();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
};

const skipReason = await dockerProblem();
if (skipReason) {
  console.warn(`EventStoreDB contract tests skipped: EVENTSTORE_URL is not set and testcontainers found no Docker engine (${skipReason}).`);
}

let container: StartedTestContainer | undefined;
let url = configuredUrl ?? '';
const stores: EventStore[] = [];

describe.skipIf(skipReason !== undefined)('eventstoredb', () => {
  beforeAll(async () => {
    if (configuredUrl) return;
    container = await new GenericContainer('eventstore/eventstore:24.10')
      .withEnvironment({ EVENTSTORE_INSECURE: 'true', EVENTSTORE_RUN_PROJECTIONS: 'None', EVENTSTORE_MEM_DB: 'true' })
      .withExposedPorts(2113)
      .withWaitStrategy(Wait.forHttp('/health/live', 2113).forStatusCodeMatching((code) => code >= 200 && code < 300))
      .start();
    url = `esdb://${container.getHost()}:${container.getMappedPort(2113)}?tls=false`;
  }, 180_000);

  afterAll(async () => {
    await Promise.all(stores.map((store) => store.close().catch(() => undefined)));
    await container?.stop();
  });

  eventStoreContract({
    name: 'eventstoredb',
    createStore: async () => {
      const store = createEventStoreDbStore(url);
      stores.push(store);
      return store;
    },
    concurrency: { writers: 16, appendsPerWriter: 200, streams: 32 },
    isolatedFeed: false,
    // Stream by stream: the all-or-nothing test is skipped for this engine (see eventstore/README.md).
    atomicMultiStream: false,
    globalEventIds: false,
  });
});

// Needs no server: it checks how a connection failure is reported.
describe('eventstoredb engine without a server', () => {
  it('reports an unreachable server as EventStoreUnavailable naming what to check', async () => {
    const store = createEventStoreDbStore('esdb://127.0.0.1:1?tls=false');
    const error = await store.appendToStream('customer-1', [newEvent()]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EventStoreUnavailable);
    expect((error as Error).message).toMatch(/EVENTSTORE_URL/);
    await store.close();
  });
});
