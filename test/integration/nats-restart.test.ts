import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCrmCommands, type CommandContext, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { POSITION_HEADER } from '../../integration/nats-publisher.ts';
import { IntegrationPublishers } from '../../integration/publishers.ts';
import { storedEvents } from '../support/events.ts';
import { testSchemas } from '../support/postgres.ts';
import { freePort } from './nats-server.ts';
import { eventually } from './support.ts';

/**
 * A NATS server of this file's own (not the shared one on 4222), first without JetStream, then with it,
 * then restarted without its storage: the stream is gone while the client reconnects by itself.
 */
/** Debian's package path, or the first on PATH (.ci/run installs the package where it is missing). */
const NATS_BIN = ['/usr/sbin/nats-server', ...(process.env.PATH ?? '').split(':').map((dir) => join(dir, 'nats-server'))].find((path) => existsSync(path));
if (!NATS_BIN) console.warn('NATS restart tests skipped: no nats-server binary (/usr/sbin/nats-server or on PATH) to run a server of their own');
const PORT = await freePort();
const URL = `nats://127.0.0.1:${PORT}`;
const STREAM = 'CRM_RESTART_TEST';
const schemas = testSchemas('natsrestart');
const dirs: string[] = [];
let server: ChildProcess | undefined;
let database: SqlDatabase;
let store: EventStore;
let commands: CrmCommands;
let personalData: PersonalData;

const startNats = async (jetStream: boolean) => {
  const args = ['-a', '127.0.0.1', '-p', String(PORT)];
  if (jetStream) {
    const dir = mkdtempSync(join(tmpdir(), 'crm-nats-'));
    dirs.push(dir);
    args.push('-js', '-sd', dir);
  }
  const child = spawn(NATS_BIN!, args, { stdio: 'ignore' });
  server = child;
  // Listening: a plain connection succeeds.
  await eventually(
    async () => {
      const nc = await connect({ servers: URL, timeout: 500 }).catch(() => undefined);
      await nc?.close();
      return nc !== undefined;
    },
    10_000,
    () => `nats-server on ${PORT} did not start`,
  );
};

const stopNats = async () => {
  const child = server;
  server = undefined;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
};

/** What the stream holds: message count and the last message's position, or undefined when there is no stream. */
const streamState = async (): Promise<{ messages: number; lastPosition: string | undefined } | undefined> => {
  const nc = await connect({ servers: URL, timeout: 2_000 });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(STREAM).catch(() => undefined);
    if (!info) return undefined;
    const last = info.state.messages > 0 ? await jsm.streams.getMessage(STREAM, { seq: info.state.last_seq }) : null;
    return { messages: info.state.messages, lastPosition: last?.header.get(POSITION_HEADER) };
  } finally {
    await nc.close();
  }
};

/** Event ids in the stream, in stream order. */
const streamIds = async (): Promise<string[]> => {
  const nc = await connect({ servers: URL, timeout: 2_000 });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(STREAM);
    const ids: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++)
      ids.push((await jsm.streams.getMessage(STREAM, { seq }))!.header.get('Nats-Msg-Id'));
    return ids;
  } finally {
    await nc.close();
  }
};

beforeAll(async () => {
  if (!NATS_BIN) return;
  database = connectPostgres(schemas.url, { max: 4 });
  store = await createPostgresEventStore(database, { schema: schemas.events });
  personalData = await createPersonalData(database.db, { schema: schemas.events });
  commands = createCrmCommands({ store, personalData });
});
afterAll(async () => {
  await stopNats();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  await store?.close();
  await database?.close();
  await schemas.dropSchemas();
});

const ctx = (): CommandContext => ({ actor: { userId: 'nats-restart', roles: ['admin'] }, correlationId: randomUUID() });
const register = async (count: number) => {
  for (let i = 0; i < count; i++) await commands.execute({ type: 'RegisterCustomer', name: `R ${i}`, email: `r${i}-${randomUUID()}@example.com` }, ctx());
};

/** Publishers of this file's store to its own NATS server (the analyst view), started. */
const startPublishers = async (log?: (message: string, details?: Record<string, unknown>) => void): Promise<IntegrationPublishers> => {
  const publishers = new IntegrationPublishers({
    ...(log ? { log } : {}),
    db: database.db,
    schema: schemas.events,
    store,
    personalData,
    nats: { url: URL, stream: STREAM, role: 'analyst' },
    reconcileEveryMs: 200,
  });
  await publishers.start();
  return publishers;
};

describe.skipIf(!NATS_BIN)('NATS publisher when the stream is missing on a connection it already has', () => {
  it('backs off after failures even while events keep coming (each new event does not cut the wait short)', async () => {
    await startNats(false);
    const publishers = await startPublishers();
    try {
      const nats = async () => (await publishers.status()).find((p) => p.name === 'nats');
      await eventually(
        async () => (await nats())?.lastError?.includes('jetstream'),
        30_000,
        () => 'a first failure',
      );
      const before = (await nats())!.failures;
      const started = Date.now();
      // About 4 s of steady traffic: the back-off (250 ms doubling) allows a handful of attempts, not one per event.
      while (Date.now() - started < 4_000) await register(1);
      const attempts = (await nats())!.failures - before;
      expect(attempts).toBeGreaterThan(0);
      expect(attempts).toBeLessThanOrEqual(6);
    } finally {
      await publishers.stop();
      await stopNats();
    }
  }, 120_000);

  it('creates the stream once JetStream is on, and again after the server lost it, without a restart of the publisher, with the history published into it again first', async () => {
    await startNats(false);
    const logged: string[] = [];
    const publishers = await startPublishers((message) => logged.push(message));
    try {
      await register(3);
      const nats = async () => (await publishers.status()).find((p) => p.name === 'nats');
      await eventually(
        async () => (await nats())?.lastError?.includes('jetstream'),
        30_000,
        () => 'the publisher reached the server without JetStream',
      );

      // Same port, now with JetStream: the client reconnects by itself; the stream must be created.
      await stopNats();
      await startNats(true);
      const first = await storedEvents(store);
      await eventually(
        async () => (await streamState())?.messages === first.length,
        60_000,
        () => 'the stream holds every event after JetStream came on',
      );

      // Restarted without its storage: the stream is gone, and must be made again for what comes next.
      await stopNats();
      await startNats(true);
      await register(2);
      const all = await storedEvents(store);
      await eventually(
        async () => (await streamState())?.lastPosition === all.at(-1)!.position.toString(),
        60_000,
        () => 'the stream holds the events recorded after the restart',
      );
      // The history first, then what came after the restart: every event once, in position order (the new
      // events went in first, and a replay of the history landed after them, out of order for good).
      expect(await streamIds()).toEqual(all.map((e) => e.id));
      // Created empty where events had been published: said once, with what is done about it.
      const missing = logged.filter((m) => m.includes('was missing and has been created empty'));
      expect(missing).toHaveLength(1);
      expect(missing[0]).toContain('published into it again from the start');
      // The checkpoint follows the acknowledgements.
      await eventually(
        async () => (await nats())?.position === all.at(-1)!.position,
        10_000,
        () => 'the checkpoint at the head',
      );
    } finally {
      await publishers.stop();
    }
  }, 200_000);
});

/** A fresh server of the test's own (the one before holds this file's stream), with a connection of the test's. */
const onFreshServer = async (work: (jsm: JetStreamManager, nc: NatsConnection) => Promise<void>) => {
  await stopNats();
  await startNats(true);
  const nc = await connect({ servers: URL, timeout: 2_000 });
  try {
    await work(await jetstreamManager(nc), nc);
  } finally {
    await nc.close();
    await stopNats();
  }
};
/** Waits until the stream's last message is the store's last event. */
const untilPublished = async (what: string, timeoutMs = 30_000) => {
  const last = (await storedEvents(store)).at(-1)!.position.toString();
  await eventually(
    async () => (await streamState())?.lastPosition === last,
    timeoutMs,
    () => what,
  );
};
describe.skipIf(!NATS_BIN)('NATS publisher on a server where another stream takes the subjects', () => {
  /** Waits until the publisher's last error names the stream in the way and what to do. */
  const untilNamed = async (publishers: IntegrationPublishers, holder: string) => {
    let lastError: string | null | undefined;
    await eventually(
      async () => {
        lastError = (await publishers.status()).find((p) => p.name === 'nats')?.lastError;
        return lastError?.includes(`stream ${holder} on this server already takes`) && lastError.includes('its own NATS account or server');
      },
      30_000,
      () => `the publisher named the stream in the way: ${lastError}`,
    );
    // Publishing into the other installation's stream interleaves two event logs: never advised.
    expect(lastError).not.toContain(`Set CRM_NATS_STREAM=${holder}`);
  };

  it('publishes into its own stream only: deleted, and another stream taking its subjects, the other one receives nothing', async () => {
    await onFreshServer(async (jsm) => {
      const publishers = await startPublishers();
      try {
        await register(2);
        await untilPublished('published');
        await jsm.streams.delete(STREAM);
        await jsm.streams.add({ name: 'OTHER_CRM', subjects: ['crm.>'] });
        await register(2);
        await untilNamed(publishers, 'OTHER_CRM');
        expect((await jsm.streams.info('OTHER_CRM')).state.messages).toBe(0);
        await jsm.streams.delete('OTHER_CRM');
        await untilPublished('published once ours is back', 60_000);
      } finally {
        await publishers.stop();
      }
    });
  }, 200_000);

  it("resumes after the stream's last message only when it is an event of this store, not another publisher's at a later position", async () => {
    await onFreshServer(async (_jsm, nc) => {
      const first = await startPublishers();
      await register(1);
      await untilPublished('published');
      await first.stop();
      // Another installation (or a hand) publishes into the stream with a position far ahead of ours.
      const h = headers();
      h.set(POSITION_HEADER, '90000000000000');
      await jetstream(nc).publish('crm.customer.CustomerRegistered', '{}', { msgID: randomUUID(), headers: h });
      const publishers = await startPublishers();
      try {
        await register(2);
        // Both new events reach the stream after the foreign message (they were skipped before).
        await untilPublished('the new events published');
        // The checkpoint moves just after the acknowledgements: at the head, not at the foreign position.
        const head = (await storedEvents(store)).at(-1)!.position;
        await eventually(
          async () => (await publishers.status()).find((p) => p.name === 'nats')!.position === head,
          10_000,
          () => 'checkpoint at the head',
        );
      } finally {
        await publishers.stop();
      }
    });
  }, 200_000);

  it('says which stream holds them and to give each installation its own account or server, and publishes once that stream is gone', async () => {
    await onFreshServer(async (jsm) => {
      // Another installation's stream, on every crm.> subject.
      await jsm.streams.add({ name: 'OTHER_CRM', subjects: ['crm.>'] });
      const publishers = await startPublishers();
      try {
        await register(2);
        await untilNamed(publishers, 'OTHER_CRM');
        await jsm.streams.delete('OTHER_CRM');
        await untilPublished('the stream holds the events once the other stream is gone', 60_000);
      } finally {
        await publishers.stop();
      }
    });
  }, 200_000);
});

describe.skipIf(!NATS_BIN)('NATS publisher when its stream is deleted while it publishes', () => {
  it('publishes the whole history into the stream created again, then the new events: each once, in position order, said once', async () => {
    await onFreshServer(async (jsm) => {
      const logged: string[] = [];
      const errors: unknown[] = [];
      const publishers = await startPublishers((message, details) => {
        logged.push(message);
        if (message === 'NATS publisher error; retrying') errors.push(details?.error);
      });
      try {
        await register(3);
        await untilPublished('published');
        const before = logged.length;
        await jsm.streams.delete(STREAM);
        await register(2);
        await untilPublished('the events after the deletion published', 60_000);
        const all = await storedEvents(store);
        // Without a word from the operator: the history first, then the new events (they went in first
        // before, and a replay put the history after them, out of order for good).
        expect(await streamIds()).toEqual(all.map((e) => e.id));
        expect(logged.slice(before).filter((m) => m.includes('published into it again from the start'))).toHaveLength(1);
        // The failure says what happened: the stream is missing (it read `JetStreamNotEnabled: jetstream is not enabled`).
        expect(errors).toHaveLength(1);
        expect(errors[0]).toContain(`NATS stream ${STREAM} is missing`);
      } finally {
        await publishers.stop();
      }
    });
  }, 200_000);
});
