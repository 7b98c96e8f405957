import { randomUUID } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { createHarness, type Harness } from '../projections/support.ts';

/**
 * The customer data keys a process caches (up to 50,000) hold 32 bytes each. A key copied with
 * `Buffer.from` is a slice of Node's shared 8 KB pool, and a cached slice keeps its whole block alive:
 * a 37-minute soak of `crm serve` grew external memory by 6.9 KB a customer (53 MB at 7,115), heading
 * for about 400 MB at a full cache.
 */
let h: Harness;

beforeAll(async () => {
  h = await createHarness('key_cache_memory');
});

afterAll(async () => {
  await h?.close();
});

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
const arrayBuffers = () => {
  collectGarbage();
  collectGarbage();
  return process.memoryUsage().arrayBuffers;
};

describe('the cache of customer data keys', () => {
  it('holds each key in its own 32 bytes, not in a block of the shared pool', async () => {
    const personalData = await createPersonalData(h.database.db, { schema: h.schemas.events });
    const customers = Array.from({ length: 1_500 }, () => randomUUID());
    const before = arrayBuffers();
    // One at a time, as requests register customers: between two keys a request's own small buffers
    // (its headers, body and answer, about 8 KB here) are cut from the same pool.
    const requestBuffers: Buffer[] = [];
    for (const customerId of customers) {
      for (let i = 0; i < 64; i += 1) requestBuffers.push(Buffer.from(`header ${i} of a request about ${customerId}`.repeat(3)));
      await personalData.protect('CustomerRegistered', { customerId, name: 'Ada', email: `${customerId}@example.com` });
      requestBuffers.length = 0;
    }
    const grown = arrayBuffers() - before;
    // 1,500 keys of 32 bytes: 48 KB. In pool blocks they held about 12 MB.
    expect(grown).toBeLessThan(2_000_000);
    // The keys are cached (not re-read), or the figure above would say nothing.
    await expect(
      personalData.reveal(
        'CustomerRegistered',
        await personalData.protect('CustomerRegistered', { customerId: customers[0], name: 'Ada', email: 'a@example.com' }),
      ),
    ).resolves.toMatchObject({ name: 'Ada' });
  });
});
