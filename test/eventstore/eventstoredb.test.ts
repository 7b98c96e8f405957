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

/** The supported server version (eventstore/README.md), insecure, without its own projections. */
const startServer = (environment: Record<string, string>): Promise<StartedTestContainer> =>
  new GenericContainer('eventstore/eventstore:24.10')
    .withEnvironment({ EVENTSTORE_INSECURE: 'true', EVENTSTORE_RUN_PROJECTIONS: 'None', ...environment })
    .withExposedPorts(2113)
    .withWaitStrategy(Wait.forHttp('/health/live', 2113).forStatusCodeMatching((code) => code >= 200 && code < 300))
    .start();
const serverUrlOf = (server: StartedTestContainer): string => `esdb://${server.getHost()}:${server.getMappedPort(2113)}?tls=false`;

let container: StartedTestContainer | undefined;
let url = configuredUrl ?? '';
const stores: EventStore[] = [];

describe.skipIf(skipReason !== undefined)('eventstoredb', () => {
  beforeAll(async () => {
    if (configuredUrl) return;
    container = await startServer({ EVENTSTORE_MEM_DB: 'true' });
    url = serverUrlOf(container);
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

/**
 * Restarts need a container of their own (EVENTSTORE_URL names a server these tests cannot
 * restart), on disk rather than in memory so that a restart keeps the log.
 */
const canRestart = skipReason === undefined && configuredUrl === undefined;
if (!canRestart) console.warn('EventStoreDB restart tests skipped: they need a Docker engine to restart a container (EVENTSTORE_URL alone is not enough).');

describe.runIf(canRestart)('eventstoredb across a server restart', () => {
  let server: StartedTestContainer;
  let serverUrl = '';

  beforeAll(async () => {
    server = await startServer({});
    serverUrl = serverUrlOf(server);
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
  });

  it('keeps every acknowledged append exactly once and a live subscription delivering, through a restart mid-load', async () => {
    const store = createEventStoreDbStore(serverUrl, { resubscribeDelay: 100 });
    const seen: string[] = [];
    const subscription = store.subscribeToAll({ filter: { streamPrefixes: ['restart-'] } }).subscribe((m) => m.kind === 'event' && seen.push(m.event.id));
    const acknowledged: string[] = [];
    let unavailable = 0;
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const event = newEvent('Ping', { i });
        // Retry the same event until acknowledged: a retry of an append that did land must not double it.
        for (;;) {
          try {
            await store.appendToStream(`restart-${i % 4}`, [event]);
            acknowledged.push(event.id);
            break;
          } catch (error) {
            expect(error).toBeInstanceOf(EventStoreUnavailable);
            unavailable += 1;
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
        }
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await server.restart();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    stop = true;
    await writer;
    const deadline = Date.now() + 30_000;
    while (acknowledged.some((id) => !seen.includes(id)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(acknowledged.filter((id) => !seen.includes(id))).toEqual([]);
    expect(new Set(seen).size).toBe(seen.length);
    const stored = await store.readAll({ filter: { streamPrefixes: ['restart-'] } });
    expect(new Set(stored.map((e) => e.id)).size).toBe(stored.length);
    for (const id of acknowledged) expect(stored.some((e) => e.id === id)).toBe(true);
    console.info(`restart: ${acknowledged.length} appends acknowledged, ${unavailable} refused as unavailable while the server was down`);
    subscription.unsubscribe();
    await store.close();
  }, 120_000);
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
