import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedEvent } from '../../eventstore/contract.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { decodeBatch } from '../../projections/apply-batch.ts';
import { personalDataCodec } from '../../projections/codec.ts';
import { createHarness, type Harness } from './support.ts';

/**
 * The personal-data codec's preload (projections/codec.ts): the keys of a run of events are read in
 * one query before decoding, so decoding itself reads no key. Shown by taking the keys table away
 * after the preload: the events still decode, while a codec that did not preload cannot decrypt them.
 */
let h: Harness;
let events: RecordedEvent[];
const names = ['Ada Lovelace', 'Grace Hopper', 'Edsger Dijkstra'];

beforeAll(async () => {
  h = await createHarness('codec_preload');
  for (const name of names)
    await h.run({ type: 'RegisterCustomer', customerId: randomUUID(), name, email: `${name.split(' ')[0]!.toLowerCase()}-${randomUUID()}@example.com` });
  events = await h.store.readAll({ fromPosition: 0n });
});

afterAll(async () => {
  await h?.close();
});

const keysTable = (name: string) => sql.id(h.schemas.events, name);

describe('personalDataCodec', () => {
  it('preloads the keys of a batch in one query, after which decoding needs none', async () => {
    expect(events.filter((e) => e.type === 'CustomerRegistered')).toHaveLength(names.length);
    const preloaded = personalDataCodec(await createPersonalData(h.database.db, { schema: h.schemas.events }));
    const cold = personalDataCodec(await createPersonalData(h.database.db, { schema: h.schemas.events }));
    await preloaded.preload!(events);
    await sql`ALTER TABLE ${keysTable('customer_keys')} RENAME TO customer_keys_away`.execute(h.database.db);
    try {
      const items = await decodeBatch(preloaded, events, () => true);
      const decoded = items.map((i) => i.projected?.event).filter((e) => e?.type === 'CustomerRegistered');
      expect(decoded.map((e) => (e?.data as { name: string }).name)).toEqual(names);
      // Without the preload, each decode looks its key up and finds no table.
      const coldItems = await decodeBatch({ decode: cold.decode, evict: cold.evict }, events, () => true);
      expect(coldItems.filter((i) => i.recorded.type === 'CustomerRegistered').every((i) => i.decodeError !== undefined)).toBe(true);
    } finally {
      await sql`ALTER TABLE ${keysTable('customer_keys_away')} RENAME TO customer_keys`.execute(h.database.db);
    }
  });

  it('a preload that fails for good (no keys table) leaves each event to its own decode instead of failing the batch', async () => {
    const codec = personalDataCodec(await createPersonalData(h.database.db, { schema: h.schemas.events }));
    await sql`ALTER TABLE ${keysTable('customer_keys')} RENAME TO customer_keys_away`.execute(h.database.db);
    try {
      await expect(codec.preload!(events)).resolves.toBeUndefined();
    } finally {
      await sql`ALTER TABLE ${keysTable('customer_keys_away')} RENAME TO customer_keys`.execute(h.database.db);
    }
    const items = await decodeBatch(codec, events, () => true);
    expect(items.every((i) => i.projected !== undefined)).toBe(true);
  });
});
