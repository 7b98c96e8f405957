import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aggregateFolders, streamOf } from '../../commands/aggregates.ts';
import { createCrmCommands, type CommandContext, type CrmCommands } from '../../commands/index.ts';
import { protectForCommand } from '../../commands/prepare.ts';
import { createStreamCache } from '../../commands/stream-cache.ts';
import { DomainError } from '../../domain/errors.ts';
import { customerRegistered } from '../support/fixtures.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { countingStreamReads } from '../../eventstore/read-counter.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { testSchemas } from '../support/postgres.ts';

/** Business time of the events these tests hand to the cache (no decider here reads it). */
const AT = '2026-03-01T09:00:00.000Z';

/**
 * The stream cache on real PostgreSQL, seen through the rows it reads: its bound (least recently used
 * out), `cached` against `fresh` loads, stale and evicted entries, and what it folds in after an append.
 */
const schemas = testSchemas('commands_cache_mut');
let database: SqlDatabase;
let real: EventStore;
let store: EventStore;
let rowsRead: { n: number };
let personalData: PersonalData;
let writer: CrmCommands;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  real = await createPostgresEventStore(database, { schema: schemas.events });
  ({ store, rowsRead } = countingStreamReads(real));
  personalData = await createPersonalData(database.db, { schema: schemas.events });
  // Writes go through its own commands, so the cache under test only ever reads.
  writer = createCrmCommands({ store: real, personalData, cachedStreams: 0 });
});
afterAll(async () => {
  await real?.close();
  await database?.close();
  await schemas.dropSchemas();
});

const ctx = (): CommandContext => ({ actor: { userId: 'tester', roles: ['admin'] }, correlationId: randomUUID() });

/** A customer with `purchases` purchases after registering: `purchases + 1` events. */
const customer = async (purchases = 0): Promise<string> => {
  const { id } = await writer.execute({ type: 'RegisterCustomer', name: 'Cache', email: `${randomUUID()}@example.com` }, ctx());
  for (let i = 0; i < purchases; i++) await writer.execute({ type: 'RecordPurchase', customerId: id, orderId: `o-${i}`, amount: 5, currency: 'EUR' }, ctx());
  return id;
};

/** Rows read by `load`. */
const rowsOf = async (load: () => Promise<unknown>): Promise<number> => {
  const before = rowsRead.n;
  await load();
  return rowsRead.n - before;
};

const newCache = (maxStreams: number) => createStreamCache({ store, personalData, folders: aggregateFolders() }, maxStreams);

describe('the stream cache', () => {
  it('keeps at most its bound of streams, dropping the least recently used', async () => {
    const cache = newCache(2);
    const [a, b, c] = [await customer(1), await customer(1), await customer(1)];
    expect(await rowsOf(() => cache.load('customer', a, 'cached'))).toBe(2);
    expect(await rowsOf(() => cache.load('customer', b, 'cached'))).toBe(2);
    // Using a again makes b the least recently used.
    expect(await rowsOf(() => cache.load('customer', a, 'cached'))).toBe(0);
    expect(await rowsOf(() => cache.load('customer', c, 'cached'))).toBe(2);
    expect(cache.size()).toBe(2);
    expect(await rowsOf(() => cache.load('customer', a, 'cached'))).toBe(0);
    expect(await rowsOf(() => cache.load('customer', b, 'cached'))).toBe(2);
    // b pushed c out. A fresh load that finds nothing new moves its entry to the front too: b goes next.
    expect(await rowsOf(() => cache.load('customer', a, 'fresh'))).toBe(0);
    expect(await rowsOf(() => cache.load('customer', c, 'cached'))).toBe(2);
    expect(await rowsOf(() => cache.load('customer', a, 'cached'))).toBe(0);
    expect(await rowsOf(() => cache.load('customer', b, 'cached'))).toBe(2);
  });

  it('with a bound of 0 keeps nothing and reads the whole stream every time', async () => {
    const cache = newCache(0);
    const id = await customer(2);
    expect(await rowsOf(() => cache.load('customer', id, 'cached'))).toBe(3);
    expect(await rowsOf(() => cache.load('customer', id, 'cached'))).toBe(3);
    expect(cache.size()).toBe(0);
  });

  it('a cached load trusts the entry; a fresh one, or one after stale(), reads what is new and folds it', async () => {
    const cache = newCache(10);
    const id = await customer(1);
    await cache.load('customer', id, 'cached');
    await writer.execute({ type: 'TagCustomer', customerId: id, tag: 'gold' }, ctx());
    const trusted = await cache.load('customer', id, 'cached');
    expect(trusted.revision).toBe(1);
    expect(trusted.state.tags).toEqual([]);
    expect(await rowsOf(() => cache.load('customer', id, 'fresh'))).toBe(1);
    const fresh = await cache.load('customer', id, 'cached');
    expect(fresh.revision).toBe(2);
    expect(fresh.state.tags).toEqual(['gold']);
    expect(fresh.ids.size).toBe(3);
    await writer.execute({ type: 'TagCustomer', customerId: id, tag: 'vip' }, ctx());
    cache.stale(streamOf('customer', id));
    expect(await rowsOf(() => cache.load('customer', id, 'cached'))).toBe(1);
    expect((await cache.load('customer', id, 'cached')).state.tags).toEqual(['gold', 'vip']);
    cache.stale(streamOf('customer', randomUUID()));
    expect(cache.size()).toBe(1);
  });

  it('evict forgets a stream entirely', async () => {
    const cache = newCache(10);
    const id = await customer(2);
    await cache.load('customer', id, 'cached');
    cache.evict(streamOf('customer', id));
    expect(cache.size()).toBe(0);
    expect(await rowsOf(() => cache.load('customer', id, 'cached'))).toBe(3);
  });

  it('folds in what this process appended on the entry it loaded, and leaves any other entry to catch up', async () => {
    const cache = newCache(10);
    const id = await customer(0);
    const base = await cache.load('customer', id, 'cached');
    const tagged = await writer.execute({ type: 'TagCustomer', customerId: id, tag: 'gold' }, ctx());
    cache.appended(
      'customer',
      id,
      base,
      [{ id: tagged.eventIds[0]!, event: { type: 'CustomerTagged', data: { customerId: id, tag: 'gold' } }, commandHash: 'h', occurredAt: AT }],
      {
        revision: tagged.revision,
        position: tagged.position,
      },
    );
    expect(await rowsOf(() => cache.load('customer', id, 'cached'))).toBe(0);
    const after = await cache.load('customer', id, 'cached');
    expect(after).toMatchObject({ revision: 1, position: tagged.position });
    expect(after.state.tags).toEqual(['gold']);
    expect(after.ids.get(tagged.eventIds[0]!)).toEqual({ revision: 1, position: tagged.position, commandHash: 'h' });

    // A revision that does not follow from the base (someone else wrote in between): marked stale.
    const skipped = await writer.execute({ type: 'TagCustomer', customerId: id, tag: 'vip' }, ctx());
    const third = await writer.execute({ type: 'TagCustomer', customerId: id, tag: 'new' }, ctx());
    cache.appended(
      'customer',
      id,
      after,
      [{ id: third.eventIds[0]!, event: { type: 'CustomerTagged', data: { customerId: id, tag: 'new' } }, commandHash: undefined, occurredAt: AT }],
      {
        revision: third.revision,
        position: third.position,
      },
    );
    expect(skipped.revision).toBe(2);
    expect(await rowsOf(() => cache.load('customer', id, 'cached'))).toBe(2);
    expect((await cache.load('customer', id, 'cached')).state.tags).toEqual(['gold', 'vip', 'new']);

    // An append on a base that is no longer the entry: marked stale as well.
    const current = await cache.load('customer', id, 'cached');
    const fourth = await writer.execute({ type: 'UntagCustomer', customerId: id, tag: 'new' }, ctx());
    cache.appended(
      'customer',
      id,
      base,
      [{ id: fourth.eventIds[0]!, event: { type: 'CustomerUntagged', data: { customerId: id, tag: 'new' } }, commandHash: undefined, occurredAt: AT }],
      {
        revision: base.revision + 1,
        position: fourth.position,
      },
    );
    expect(current.revision).toBe(3);
    expect(await rowsOf(() => cache.load('customer', id, 'cached'))).toBe(1);
  });

  it('an append on a stream that has left the cache meanwhile is not folded in, and does not fail', async () => {
    const cache = newCache(1);
    const [a, b] = [await customer(0), await customer(0)];
    const base = await cache.load('customer', a, 'cached');
    await cache.load('customer', b, 'cached');
    const tagged = await writer.execute({ type: 'TagCustomer', customerId: a, tag: 'gold' }, ctx());
    cache.appended(
      'customer',
      a,
      base,
      [{ id: tagged.eventIds[0]!, event: { type: 'CustomerTagged', data: { customerId: a, tag: 'gold' } }, commandHash: undefined, occurredAt: AT }],
      {
        revision: tagged.revision,
        position: tagged.position,
      },
    );
    expect(cache.size()).toBe(1);
    expect((await cache.load('customer', a, 'cached')).state.tags).toEqual(['gold']);
  });

  it('concurrent loads of one stream read it once', async () => {
    const cache = newCache(10);
    const id = await customer(3);
    const before = rowsRead.n;
    const loads = await Promise.all([cache.load('customer', id, 'fresh'), cache.load('customer', id, 'fresh'), cache.load('customer', id, 'cached')]);
    expect(rowsRead.n - before).toBe(4);
    expect(loads.map((l) => l.revision)).toEqual([3, 3, 3]);
  });

  it('a failed read surfaces as the store error and drops the entry, so the next load reads the stream again', async () => {
    let down = false;
    const flaky: EventStore = {
      ...store,
      readStream: async (stream, options) => {
        if (down) throw new Error('the event store is unreachable');
        return store.readStream(stream, options);
      },
    };
    const cache = createStreamCache({ store: flaky, personalData, folders: aggregateFolders() }, 10);
    const id = await customer(1);
    await cache.load('customer', id, 'cached');
    expect(cache.size()).toBe(1);
    down = true;
    await expect(cache.load('customer', id, 'fresh')).rejects.toThrow('the event store is unreachable');
    expect(cache.size()).toBe(0);
    down = false;
    expect(await rowsOf(() => cache.load('customer', id, 'cached'))).toBe(2);
  });

  it('a keyed retry of a command that appended several events answers the revision of its last one', async () => {
    const commands = createCrmCommands({ store, personalData });
    const owner = (await writer.execute({ type: 'RegisterUser', name: 'Owner', email: `${randomUUID()}@example.com`, role: 'sales' }, ctx())).id;
    const key = randomUUID();
    const command = { type: 'RegisterCustomer', name: 'Owned', email: `${randomUUID()}@example.com`, ownerId: owner };
    const first = await commands.execute(command, { ...ctx(), idempotencyKey: key });
    expect(first.revision).toBe(1);
    expect(first.eventIds).toHaveLength(2);
    // Answered from what the cache folded in after the append: nothing is read.
    expect(await rowsOf(async () => expect(await commands.execute(command, { ...ctx(), idempotencyKey: key })).toEqual({ ...first, replayed: true }))).toBe(0);
  });

  it('personal data of a forgotten customer is refused as a domain error naming the customer; other failures pass through', async () => {
    const id = randomUUID();
    expect(await protectForCommand(personalData, 'CustomerRegistered', customerRegistered(id))).not.toEqual(customerRegistered(id));
    await personalData.forget(id);
    const refused = await protectForCommand(personalData, 'CustomerRegistered', customerRegistered(id)).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DomainError);
    expect(refused).toMatchObject({
      kind: 'invalid_state',
      code: 'customer.forgotten',
      message: `Customer ${id} has been forgotten`,
      field: 'customerId',
      details: { customerId: id },
    });
    // Not a forgotten customer (the database gone): the error is not turned into a refusal.
    const closing = connectPostgres(schemas.url, { max: 1 });
    const unreachable = await createPersonalData(closing.db, { schema: schemas.events });
    await closing.close();
    const other = await protectForCommand(unreachable, 'CustomerRegistered', customerRegistered(randomUUID())).catch((e: unknown) => e);
    expect(other).toBeInstanceOf(Error);
    expect(other).not.toBeInstanceOf(DomainError);
  });
});
