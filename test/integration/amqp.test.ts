import { randomBytes, randomUUID } from 'node:crypto';
import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { sql } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createApiMetrics } from '../../api/metrics.ts';
import type { CommandContext } from '../../commands/index.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { AMQP_POSITION_HEADER, AMQP_VERSION_HEADER } from '../../integration/amqp-publisher.ts';
import type { SubscriberRole } from '../../integration/envelope.ts';
import { IntegrationPublishers } from '../../integration/publishers.ts';
import { AMQP_PUBLISHER } from '../../integration/tables.ts';
import { FaultProxy } from '../faults/proxy.ts';
import { commandStoreFor } from '../support/command-store.ts';
import { storedEvents } from '../support/events.ts';
import { eventually } from './support.ts';

/**
 * The RabbitMQ publisher against a real broker (CRM_TEST_AMQP_URL, by default the one on
 * 127.0.0.1:5672), reached through a TCP relay of the test's own (test/faults/proxy.ts) that resets,
 * refuses or loses the broker's answers. Each test declares an exchange and a queue of its own, bound
 * to `crm.#`, and deletes them after.
 */
const AMQP_URL = process.env.CRM_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

// Probed before the suite is declared, so that the suite is skipped (saying why) rather than failing.
let unavailable: string | undefined;
let broker: ChannelModel | undefined;
try {
  broker = await connect(AMQP_URL, { timeout: 3_000 });
  broker.on('error', () => undefined);
} catch (error) {
  unavailable = `RabbitMQ not reachable at ${new URL(AMQP_URL).host} (${(error as Error).message}); start it with rabbitmq-server -detached (.ci/run does)`;
}
if (unavailable) console.warn(`RabbitMQ publishing tests skipped: ${unavailable}`);

const opened = commandStoreFor('amqp');
afterAll(async () => broker?.close().catch(() => undefined));
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const ctx = (): CommandContext => ({ actor: { userId: 'amqp-test', roles: ['admin'] }, correlationId: randomUUID() });

interface Line {
  message: string;
  details: Record<string, unknown> | undefined;
}

interface Fixture {
  exchange: string;
  proxy: FaultProxy;
  /** Every message the test's queue received, in arrival order. */
  received: ConsumeMessage[];
  /** Called as each message arrives, with how many have arrived. */
  onReceived: (count: number) => void;
  lines: Line[];
  publishers: IntegrationPublishers;
  status(): Promise<{ position: bigint; failures: number; lastError: string | null; state: string }>;
  metrics(): Promise<string>;
}

/**
 * An exchange and a queue of the test's own (the queue bound to every routing key the CRM uses),
 * a relay to the broker, and publishers of the file's store publishing through it as `role`.
 */
const fixture = async (role: SubscriberRole = 'analyst', options: { declare?: 'topic' | 'direct' } = {}): Promise<Fixture> => {
  const suffix = randomBytes(4).toString('hex');
  const exchange = `crm.test.${suffix}`;
  const queue = `crm-test-${suffix}`;
  const channel: Channel = await broker!.createChannel();
  channel.on('error', () => undefined);
  cleanups.push(() => channel.close());
  cleanups.push(() => channel.deleteExchange(exchange));
  cleanups.push(() => channel.deleteQueue(queue));
  const received: ConsumeMessage[] = [];
  await channel.assertQueue(queue, { durable: false });
  if (options.declare !== 'direct') {
    await channel.assertExchange(exchange, 'topic', { durable: true });
    await channel.bindQueue(queue, exchange, 'crm.#');
  } else await channel.assertExchange(exchange, 'direct', { durable: false });
  const hooks = { onReceived: (_count: number) => undefined as void };
  await channel.consume(queue, (m) => m && hooks.onReceived(received.push(m)), { noAck: true });

  const proxy = FaultProxy.before(AMQP_URL, 5672);
  await proxy.start();
  cleanups.push(() => proxy.close());
  const lines: Line[] = [];
  const publishers = new IntegrationPublishers({
    db: opened.database.db,
    schema: opened.schemas.events,
    store: opened.store,
    // A key cache of its own, as in a separate publishing process: the forgets are the command side's.
    personalData: await createPersonalData(opened.database.db, { schema: opened.schemas.events }),
    amqp: { url: proxy.urlThrough(AMQP_URL), exchange, role },
    reconcileEveryMs: 200,
    log: (message, details) => lines.push({ message, details }),
  });
  cleanups.push(() => publishers.stop());
  // Each test publishes from the store's current head (the file's store is shared), with no failure stored by the one before.
  const head = await opened.store.headPosition();
  await publishers.tables.migrate();
  await publishers.tables.ensurePublisher(AMQP_PUBLISHER, 'amqp', head);
  await sql`UPDATE ${sql.id(opened.schemas.events, 'integration_publishers')} SET position = ${head.toString()}::bigint, last_error = NULL WHERE name = ${AMQP_PUBLISHER}`.execute(
    opened.database.db,
  );
  await publishers.start();
  const status = async () => {
    const found = (await publishers.status()).find((p) => p.name === AMQP_PUBLISHER);
    if (!found) throw new Error('no amqp publisher');
    return found;
  };
  const metrics = createApiMetrics({ publishers: { status: () => publishers.status() } });
  return {
    exchange,
    proxy,
    received,
    set onReceived(hook: (count: number) => void) {
      hooks.onReceived = hook;
    },
    lines,
    publishers,
    status,
    metrics: () => metrics.registry.metrics(),
  };
};

const register = async (count: number, label = 'A') => {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const { id } = await opened.api.execute(
      { type: 'RegisterCustomer', name: `${label} ${i}`, email: `${label.toLowerCase()}${i}-${randomUUID()}@example.com` },
      ctx(),
    );
    ids.push(id);
  }
  return ids;
};

/** The events recorded after `after`, in position order. */
const eventsAfter = async (after: bigint) => (await storedEvents(opened.store)).filter((e) => e.position > after);
const idsOf = (messages: ConsumeMessage[]) => messages.map((m) => String(m.properties.messageId));
/** Each id at its first arrival: what a consumer deduplicating by message_id keeps. */
const deduplicated = (messages: ConsumeMessage[]) => [...new Set(idsOf(messages))];
const body = (m: ConsumeMessage) => JSON.parse(m.content.toString('utf8')) as { id: string; type: string; position: string; data: Record<string, unknown> };

describe.skipIf(unavailable !== undefined)('the RabbitMQ publisher', () => {
  it('publishes every event once, in position order, persistent, with message_id, type, routing key and position headers; the analyst view masks personal data', async () => {
    const start = await opened.store.headPosition();
    const f = await fixture();
    const [customerId] = await register(3);
    await opened.api.execute({ type: 'RecordPurchase', customerId: customerId!, orderId: 'o-1', amount: 12.5, currency: 'EUR' }, ctx());
    const expected = await eventsAfter(start);
    expect(expected).toHaveLength(4);
    await eventually(
      () => f.received.length >= expected.length,
      30_000,
      () => `received ${f.received.length} of ${expected.length}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(idsOf(f.received)).toEqual(expected.map((e) => e.id));
    for (const [i, m] of f.received.entries()) {
      const event = expected[i]!;
      const envelope = body(m);
      expect(envelope).toMatchObject({ id: event.id, type: event.type, position: event.position.toString() });
      expect(m.fields.exchange).toBe(f.exchange);
      expect(m.fields.routingKey).toBe(`crm.customer.${event.type}`);
      expect(m.properties).toMatchObject({ messageId: event.id, type: event.type, contentType: 'application/json', deliveryMode: 2, appId: 'crm' });
      expect(m.properties.headers).toMatchObject({ [AMQP_POSITION_HEADER]: event.position.toString(), [AMQP_VERSION_HEADER]: 1 });
    }
    expect(body(f.received[0]!).data).toMatchObject({ name: '[masked]', email: '[masked]' });
    expect(body(f.received[3]!).data).toMatchObject({ customerId, orderId: 'o-1', amount: 12.5, currency: 'EUR' });
    await eventually(
      async () => (await f.status()).position === expected.at(-1)!.position,
      10_000,
      () => 'the checkpoint at the last event',
    );
    expect((await f.status()).state).toBe('running');
  }, 60_000);

  it('loses nothing when the relay resets the connection mid-stream (live, and in a page of 300): what was not confirmed is sent again (deduplicable by message_id), first copies in position order', async () => {
    const start = await opened.store.headPosition();
    const f = await fixture();
    // Appends go on while the connection is reset three times.
    const appending = register(150, 'R');
    for (let reset = 0; reset < 3; reset++) {
      await eventually(
        () => f.received.length > 20 + reset * 40,
        30_000,
        () => `received ${f.received.length} before reset ${reset + 1}`,
      );
      f.proxy.resetAll();
    }
    await appending;
    await eventually(
      async () => (await f.status()).state === 'running' && deduplicated(f.received).length === 150,
      60_000,
      () => `received ${deduplicated(f.received).length} distinct of 150`,
    );
    // A backlog published as one page of 300, its connection reset as the queue holds the 100th of them:
    // the checkpoint moves past what the broker confirmed, and the rest is sent again.
    f.proxy.refuse();
    await register(300, 'B');
    const before = f.received.length;
    let resetAt: number | undefined;
    f.onReceived = (count) => {
      if (count !== before + 100) return;
      resetAt = count;
      f.proxy.resetAll();
    };
    f.proxy.pass();
    const expected = (await eventsAfter(start)).map((e) => e.id);
    await eventually(
      () => deduplicated(f.received).length >= expected.length,
      60_000,
      () => `received ${deduplicated(f.received).length} distinct of ${expected.length}`,
    );
    let last: unknown;
    await eventually(
      async () => ((last = await f.status()) as { state: string }).state === 'running',
      60_000,
      () => `running again; status ${JSON.stringify(last, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}; log ${JSON.stringify(f.lines)}`,
    );
    expect(deduplicated(f.received)).toEqual(expected);
    const duplicates = f.received.length - expected.length;
    // Every copy beyond the first is a message of this run with the same body (at least once, never another event).
    for (const m of f.received) expect(expected).toContain(m.properties.messageId);
    // Per aggregate (here each customer's one event) and overall, the first copies keep the position order.
    const positions = deduplicated(f.received).map((id) => BigInt(body(f.received.find((m) => m.properties.messageId === id)!).position));
    expect(positions).toEqual([...positions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    const status = await f.status();
    expect(status.failures).toBeGreaterThan(0);
    expect(status.lastError).toBeNull();
    const failed = f.lines.filter((l) => l.message === 'RabbitMQ publisher error; retrying');
    const recovered = f.lines.filter((l) => l.message === 'RabbitMQ publisher publishing again');
    expect(failed.length).toBeGreaterThan(0);
    // At most one outage per reset and one for the refused connections while the backlog was recorded.
    expect(failed.length).toBeLessThanOrEqual(5);
    expect(recovered).toHaveLength(failed.length);
    expect(resetAt).toBeDefined();
    console.log(
      `RabbitMQ: ${expected.length} events through 4 connection resets (the last in a page of 300, after 100 were routed), ${duplicates} duplicate deliveries, ${status.failures} failed attempts`,
    );
  }, 120_000);

  it('moves the checkpoint only after the broker confirmed: a confirm lost, the message is sent again on a new connection after the 5 s bound', async () => {
    const start = await opened.store.headPosition();
    const f = await fixture();
    await register(2, 'C');
    await eventually(
      () => f.received.length === 2,
      30_000,
      () => 'the first events',
    );
    const confirmedUpTo = (await eventsAfter(start)).at(-1)!.position;
    await eventually(
      async () => (await f.status()).position === confirmedUpTo,
      10_000,
      () => 'checkpoint after the first events',
    );

    f.proxy.loseRepliesOpen();
    await register(3, 'C');
    const expected = (await eventsAfter(start)).map((e) => e.id);
    // The next message reaches the queue; the broker's confirm does not reach the publisher, which waits for it.
    await eventually(
      () => f.received.length >= 3,
      30_000,
      () => 'the unconfirmed message routed',
    );
    const routedAt = performance.now();
    await new Promise((r) => setTimeout(r, 1_000));
    if (performance.now() - routedAt < 4_000) expect((await f.status()).position).toBe(confirmedUpTo);
    // After the confirm timeout the connection is dropped and what was not confirmed published again, then confirmed.
    await eventually(
      async () => {
        const s = await f.status();
        return s.position === (await eventsAfter(start)).at(-1)!.position && s.lastError === null;
      },
      30_000,
      () => 'the checkpoint at the last event after the confirms on a new connection',
    );
    expect(deduplicated(f.received)).toEqual(expected);
    // The unconfirmed message arrived twice: at least once, deduplicable by message_id.
    expect(f.received.length).toBeGreaterThan(expected.length);
    expect(idsOf(f.received).filter((id) => id === expected[2])).toHaveLength(2);
    for (const id of idsOf(f.received)) expect(expected).toContain(id);
    expect(f.lines.find((l) => l.message === 'RabbitMQ publisher error; retrying')?.details?.error).toMatch(/did not answer within 5000 ms/);
  }, 90_000);

  it('shows retrying (status, /metrics) while RabbitMQ refuses, logging it once, and recovers by itself, idle too', async () => {
    const start = await opened.store.headPosition();
    const f = await fixture();
    await register(1, 'D');
    await eventually(
      async () => (await f.status()).state === 'running' && f.received.length === 1,
      30_000,
      () => 'running',
    );
    expect(await f.metrics()).toMatch(/crm_publisher_failing\{publisher="amqp",kind="amqp"\} 0/);

    f.proxy.refuse();
    const refusedAt = Date.now();
    await eventually(
      async () => (await f.status()).state === 'retrying',
      10_000,
      () => 'retrying while RabbitMQ refuses and nothing is published',
    );
    console.log(`an idle RabbitMQ publisher showed the outage ${Date.now() - refusedAt} ms after the broker went away`);
    await register(2, 'D');
    await eventually(
      async () => (await f.status()).failures >= 3,
      30_000,
      () => 'three failed attempts',
    );
    expect(await f.metrics()).toMatch(/crm_publisher_failing\{publisher="amqp",kind="amqp"\} 1/);
    expect(await f.metrics()).toContain('crm_publisher_state{publisher="amqp",kind="amqp",state="retrying"} 1');
    const failed = f.lines.filter((l) => l.message === 'RabbitMQ publisher error; retrying');
    expect(failed).toHaveLength(1);
    // The line names the broker without its password, and what to check.
    expect(failed[0]!.details).toMatchObject({ server: `amqp://127.0.0.1:${f.proxy.port}`, check: expect.stringContaining('CRM_AMQP_URL') });

    f.proxy.pass();
    const expected = (await eventsAfter(start)).map((e) => e.id);
    await eventually(
      () => deduplicated(f.received).length === expected.length,
      60_000,
      () => 'every event once RabbitMQ is reachable again',
    );
    await eventually(
      async () => /crm_publisher_failing\{publisher="amqp",kind="amqp"\} 0/.test(await f.metrics()),
      10_000,
      () => 'no longer failing',
    );
    expect(deduplicated(f.received)).toEqual(expected);
    expect(f.lines.filter((l) => l.message === 'RabbitMQ publisher error; retrying')).toHaveLength(1);
    expect(f.lines.filter((l) => l.message === 'RabbitMQ publisher publishing again')).toHaveLength(1);
  }, 90_000);

  it('says so while its exchange exists as another type (the broker closes the channel), and publishes once it is gone', async () => {
    const f = await fixture('analyst', { declare: 'direct' });
    const lastError = await eventually(
      async () => {
        const s = await f.status();
        return s.state === 'retrying' && s.lastError;
      },
      15_000,
      () => 'retrying on the exchange of another type',
    );
    expect(lastError).toContain(`RabbitMQ exchange ${f.exchange} exists with other settings`);
    expect(lastError).toContain('CRM_AMQP_EXCHANGE');

    const channel = await broker!.createChannel();
    cleanups.push(() => channel.close());
    await channel.deleteExchange(f.exchange);
    await eventually(
      async () => (await f.status()).state === 'running',
      40_000,
      () => 'running once the exchange is declared as a topic exchange',
    );
    await channel.checkExchange(f.exchange);
    const queue = `crm-test-after-${randomBytes(4).toString('hex')}`;
    await channel.assertQueue(queue, { durable: false });
    cleanups.push(() => channel.deleteQueue(queue));
    await channel.bindQueue(queue, f.exchange, 'crm.customer.*');
    const start = await opened.store.headPosition();
    await register(1, 'E');
    const [event] = await eventsAfter(start);
    const got = await eventually(
      async () => (await channel.get(queue, { noAck: true })) || undefined,
      30_000,
      () => 'the event on the topic exchange',
    );
    expect(got.properties.messageId).toBe(event!.id);
  }, 90_000);

  it('after a forget, later deliveries and replays carry [erased] where the role saw the person', async () => {
    const start = await opened.store.headPosition();
    const f = await fixture('admin');
    const email = `zelda-${randomUUID()}@example.com`;
    const { id } = await opened.api.execute({ type: 'RegisterCustomer', name: 'Zelda Plaintext', email, phone: '+44 20 7946 0999' }, ctx());
    await eventually(
      () => f.received.length === 1,
      30_000,
      () => 'the registration',
    );
    expect(body(f.received[0]!).data).toMatchObject({ name: 'Zelda Plaintext', email });

    // The broker away while the customer changes their name and is forgotten: published after the forget.
    f.proxy.refuse();
    await opened.api.execute({ type: 'ChangeCustomerDetails', customerId: id, name: 'Zelda Newname' }, ctx());
    await opened.api.execute({ type: 'ForgetCustomer', customerId: id }, ctx());
    f.proxy.pass();
    await eventually(
      () => f.received.some((m) => m.properties.type === 'CustomerForgotten'),
      60_000,
      () => 'forget published',
    );
    const changed = f.received.map(body).find((e) => e.type === 'CustomerContactDetailsChanged');
    expect(changed!.data.name).toBe('[erased]');
    expect(f.received.some((m) => m.content.toString().includes('Newname'))).toBe(false);

    // Published again from the start: the registration carries no plaintext now.
    const before = f.received.length;
    await sql`UPDATE ${sql.id(opened.schemas.events, 'integration_publishers')} SET position = ${start.toString()}::bigint WHERE name = ${AMQP_PUBLISHER}`.execute(
      opened.database.db,
    );
    await eventually(
      () => f.received.length >= before + 3,
      30_000,
      () => 'published again',
    );
    const replayed = f.received.slice(before);
    for (const m of replayed) {
      expect(m.content.toString()).not.toContain('Zelda');
      expect(m.content.toString()).not.toContain(email);
    }
    expect(body(replayed[0]!).data).toMatchObject({ name: '[erased]', email: '[erased]', phone: '[erased]' });
  }, 90_000);
});
