import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { CommandsBusy, createCrmCommands, type CommandContext, type CrmCommandDeps, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { WrongExpectedRevision } from '../../eventstore/errors.ts';
import { countingStreamReads } from '../../eventstore/read-counter.ts';
import { processesOnOneDatabase, type CommandProcess } from '../support/processes.ts';

/**
 * Concurrency of the command layer: per-stream queue in one process, re-deciding lost races across
 * processes (two stores, two pools, one database), the time bound, and the stream cache's reads.
 */
const processes = processesOnOneDatabase('commands_concurrency');

interface Process extends CommandProcess {
  /** Rows the store returned from readStream since the counter was last reset. */
  rowsRead: { n: number };
  commands: (options?: Partial<CrmCommandDeps>) => CrmCommands;
}

/** One "process": its own pool, store and key cache over the shared schemas; reads are counted. */
const startProcess = async (): Promise<Process> => {
  const started = await processes.start();
  const { store, rowsRead } = countingStreamReads(started.store);
  const { personalData } = started;
  return {
    ...started,
    store,
    rowsRead,
    commands: (options = {}) => createCrmCommands({ store, personalData, queue: { windowMs: 60_000 }, ...options }),
  };
};

let a: Process;
let b: Process;
beforeAll(async () => {
  a = await startProcess();
  b = await startProcess();
});

const ctx = (extra: Partial<CommandContext> = {}): CommandContext => ({
  actor: { userId: 'shop-feed', roles: ['sales'] },
  correlationId: randomUUID(),
  ...extra,
});

const purchase = (customerId: string, orderId = randomUUID()) => ({ type: 'RecordPurchase', customerId, orderId, amount: 10, currency: 'EUR' });

const register = async (commands: CrmCommands) =>
  (await commands.execute({ type: 'RegisterCustomer', name: 'Hot Customer', email: `${randomUUID()}@example.com` }, ctx())).id;

const settledErrors = (results: PromiseSettledResult<unknown>[]) =>
  results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String(r.reason));

describe('commands on one stream', () => {
  it('accepts 64 concurrent purchases on one customer without an expected revision, in one process', async () => {
    const commands = a.commands();
    const id = await register(commands);
    const results = await Promise.allSettled(Array.from({ length: 64 }, () => commands.execute(purchase(id), ctx())));
    expect(settledErrors(results)).toEqual([]);
    const revisions = results.map((r) => (r as PromiseFulfilledResult<{ revision: number }>).value.revision).sort((x, y) => x - y);
    expect(revisions).toEqual(Array.from({ length: 64 }, (_, i) => i + 1));
    expect(await a.store.readStream(`customer-${id}`)).toHaveLength(65);
    expect(commands.pending()).toBe(0);
  });

  it('accepts 64 concurrent purchases on one customer from two processes: lost races are decided again, never refused', async () => {
    const inA = a.commands();
    const inB = b.commands();
    const id = await register(inA);
    // Both caches hold the customer, so both decide on cached state and race at the append.
    await inB.execute(purchase(id), ctx());
    await inA.execute(purchase(id), ctx());
    const results = await Promise.allSettled(Array.from({ length: 64 }, (_, i) => (i % 2 ? inA : inB).execute(purchase(id), ctx())));
    expect(settledErrors(results)).toEqual([]);
    const stream = await a.store.readStream(`customer-${id}`);
    expect(stream).toHaveLength(67);
    expect(new Set(stream.map((e) => e.revision)).size).toBe(67);
  });

  it('gives a claimed revision that is stale back as a conflict naming both revisions', async () => {
    const commands = a.commands();
    const id = await register(commands);
    await commands.execute(purchase(id), ctx());
    const error = await commands.execute(purchase(id), ctx({ expectedRevision: 0 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WrongExpectedRevision);
    expect(error).toMatchObject({ expected: 0, actual: 1, stream: `customer-${id}` });
  });

  it('refuses as busy (not as a conflict) when the time bound is spent re-deciding', async () => {
    const inA = a.commands({ queue: { windowMs: 0 } });
    const inB = b.commands();
    const id = await register(inA);
    await inA.execute(purchase(id), ctx());
    // Another process writes: A's cached state is now stale, its append conflicts, and no time is left.
    await inB.execute(purchase(id), ctx());
    const error = await inA.execute(purchase(id), ctx()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandsBusy);
    expect(error).toMatchObject({ reason: 'contention', retryAfterSeconds: 1 });
    // The conflict marked the cached state stale: the next command catches up and is accepted.
    const next = await a.commands({ queue: { windowMs: 60_000 } }).execute(purchase(id), ctx());
    expect(next.revision).toBe(3);
    const after = await inA.execute(purchase(id), ctx());
    expect(after.revision).toBe(4);
  });

  it('refuses at once when the process already holds as many commands as it may', async () => {
    const commands = a.commands({ queue: { windowMs: 60_000, maxPending: 2 } });
    const id = await register(commands);
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => commands.execute(purchase(id), ctx())));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as CommandsBusy);
    expect(refused).toHaveLength(3);
    for (const error of refused) expect(error).toMatchObject({ name: 'CommandsBusy', reason: 'queue_full' });
  });
});

describe('records that refer to a customer, racing a change of that customer in another process', () => {
  const recordsOf = (customerId: string) => ({
    deal: { type: 'OpenDeal', customerId, title: 'Fleet', amount: 100, currency: 'EUR', ownerId: 'sam', expectedCloseDate: '2027-01-31' },
    feedback: { type: 'SubmitFeedback', customerId, kind: 'complaint', channel: 'web', subject: 'Late', body: 'Where is it?' },
    activity: { type: 'LogActivity', customerId, kind: 'note', subject: 'Call back', body: 'Ring them' },
  });

  // (A deactivation is not among them: a deal dated before it is the customer's, whenever it is stored.)
  it.each([
    ['forgotten', 'ForgetCustomer', ['deal', 'feedback', 'activity'], 'customer.forgotten'],
    ['merged into another', 'MergeCustomer', ['deal', 'feedback'], 'customer.merged'],
  ] as const)('records nothing on a customer %s meanwhile: each record is stored before that event, or refused', async (_, type, kinds, code) => {
    const inA = a.commands();
    const inB = b.commands();
    const customerId = await register(inA);
    const records = kinds.map((kind) => recordsOf(customerId)[kind]);
    const stored: bigint[] = [];
    const refused: string[] = [];
    let stop = false;
    const writers = Array.from({ length: 4 }, async () => {
      while (!stop)
        for (const outcome of await Promise.allSettled(records.map((command) => inA.execute(command, ctx()))))
          if (outcome.status === 'fulfilled') stored.push(outcome.value.position);
          else refused.push((outcome.reason as { code?: string }).code ?? String(outcome.reason));
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const change = type === 'MergeCustomer' ? { type, customerId: await register(inB), duplicateId: customerId } : { type, customerId };
    const changed = await inB.execute(change, ctx());
    await new Promise((resolve) => setTimeout(resolve, 200));
    stop = true;
    await Promise.all(writers);
    expect(stored.length).toBeGreaterThan(0);
    expect(stored.filter((position) => position > changed.position)).toEqual([]);
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(refused)).toEqual(new Set([code]));
  });
});

describe('a consent-only campaign racing the withdrawal of consent in another process', () => {
  it('refuses a send decided on the consent read before the withdrawal and appended after it', async () => {
    // Process A's appends to the campaign wait at a gate: A has read the customer (consenting) and
    // decided the send when B withdraws the consent.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let arrived!: () => void;
    const atGate = new Promise<void>((resolve) => (arrived = resolve));
    const gated: EventStore = {
      ...a.store,
      appendToStream: async (stream, events, options) => {
        if (stream.startsWith('campaign-') && events.some((e) => e.type === 'CampaignResponseRecorded')) {
          arrived();
          await gate;
        }
        return a.store.appendToStream(stream, events, options);
      },
    };
    const inA = createCrmCommands({ store: gated, personalData: a.personalData, queue: { windowMs: 60_000 } });
    const inB = b.commands();
    const campaign = await inA.execute(
      { type: 'CreateCampaign', name: 'Members', channel: 'email', budget: 100, currency: 'EUR', targetSegment: { marketingConsentOnly: true } },
      ctx(),
    );
    await inA.execute({ type: 'LaunchCampaign', campaignId: campaign.id }, ctx());
    const customerId = (await inA.execute({ type: 'RegisterCustomer', name: 'Member', email: `${randomUUID()}@example.com`, marketingConsent: true }, ctx()))
      .id;
    const sending = inA.execute({ type: 'RecordCampaignResponse', campaignId: campaign.id, customerId, kind: 'sent' }, ctx());
    await atGate;
    await inB.execute({ type: 'ChangeCustomerDetails', customerId, marketingConsent: false }, ctx());
    open();
    await expect(sending).rejects.toMatchObject({ code: 'campaign.marketing_consent_required' });
    expect((await a.store.readStream(`campaign-${campaign.id}`)).map((e) => e.type)).not.toContain('CampaignResponseRecorded');
  });
});

describe('a claimed revision (If-Match)', () => {
  it('is checked against the store, not against a state this process cached before another wrote', async () => {
    const inA = a.commands();
    const inB = b.commands();
    const id = await register(inA);
    await inA.execute(purchase(id), ctx());
    // The caller read revision 2 through B; A cached revision 1.
    expect((await inB.execute(purchase(id), ctx())).revision).toBe(2);
    const result = await inA.execute(purchase(id), ctx({ expectedRevision: 2 }));
    expect(result.revision).toBe(3);
  });

  it('a keyed command that loses the race to another command, without a claimed revision, is decided again and appended', async () => {
    const inA = a.commands();
    const inB = b.commands();
    const id = await register(inA);
    await inA.execute(purchase(id), ctx());
    await inB.execute(purchase(id), ctx());
    const result = await inA.execute(purchase(id), ctx({ idempotencyKey: randomUUID() }));
    expect(result).toMatchObject({ revision: 3, eventIds: [expect.any(String)] });
  });

  it('a keyed retry that loses the race to its own first attempt in another process gets the first answer, not a conflict', async () => {
    const inA = a.commands();
    const id = await register(inA);
    const key = randomUUID();
    // Personal data: encrypted afresh by each attempt, so the store cannot tell the two appends are one.
    const command = { type: 'ChangeCustomerDetails', customerId: id, phone: '+44 20 7946 0002' };
    let first: Promise<unknown> | undefined;
    // B has read the stream and is about to append when A's attempt of the same key completes.
    const racing: EventStore = {
      ...b.store,
      appendToStream: async (stream, events, options) => {
        first ??= inA.execute(command, ctx({ idempotencyKey: key, expectedRevision: 0 }));
        await first;
        return b.store.appendToStream(stream, events, options);
      },
    };
    const inB = createCrmCommands({ store: racing, personalData: b.personalData });
    const retried = await inB.execute(command, ctx({ idempotencyKey: key, expectedRevision: 0 }));
    expect(retried).toEqual({ ...((await first) as object), replayed: true });
    expect(retried.revision).toBe(1);
    expect((await a.store.readStream(`customer-${id}`)).map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerContactDetailsChanged']);
  });
});

describe('the stream cache', () => {
  it('reads the same number of rows per purchase whatever the length of the customer history', async () => {
    const commands = a.commands();
    const rowsPerPurchase = async (history: number): Promise<number> => {
      const id = await register(commands);
      for (let i = 0; i < history; i++) await commands.execute(purchase(id), ctx());
      a.rowsRead.n = 0;
      for (let i = 0; i < 10; i++) await commands.execute(purchase(id), ctx());
      return a.rowsRead.n / 10;
    };
    const short = await rowsPerPurchase(2);
    const long = await rowsPerPurchase(150);
    expect(long).toBe(short);
    expect(long).toBeLessThan(1);
  });

  it('keeps at most cachedStreams streams: the least recently used is read again', async () => {
    const commands = a.commands({ cachedStreams: 1 });
    const first = await register(commands);
    const second = await register(commands);
    a.rowsRead.n = 0;
    await commands.execute(purchase(second), ctx());
    expect(a.rowsRead.n).toBe(0);
    await commands.execute(purchase(first), ctx());
    expect(a.rowsRead.n).toBe(1);
  });

  it('a state read for another command or for a reader costs only what is new', async () => {
    const commands = a.commands();
    const id = await register(commands);
    for (let i = 0; i < 20; i++) await commands.execute(purchase(id), ctx());
    a.rowsRead.n = 0;
    // The deal's decider needs the customer; the reader wants the current state.
    await commands.execute({ type: 'OpenDeal', customerId: id, title: 'T', amount: 1, currency: 'EUR', ownerId: 'o', expectedCloseDate: '2026-12-31' }, ctx());
    expect((await commands.loadAggregate('customer', id)).revision).toBe(20);
    expect(a.rowsRead.n).toBe(0);
  });

  it('after another process wrote, reads only the newer events', async () => {
    const inA = a.commands();
    const inB = b.commands();
    const id = await register(inA);
    for (let i = 0; i < 30; i++) await inA.execute(purchase(id), ctx());
    await inB.execute(purchase(id), ctx());
    a.rowsRead.n = 0;
    const result = await inA.execute(purchase(id), ctx());
    expect(result.revision).toBe(32);
    // The one event B wrote (the conflict sent A to catch up), not the 32 before it.
    expect(a.rowsRead.n).toBe(1);
  });

  it('after a forget in another process, a command on cached state is refused as for any forgotten customer', async () => {
    const inA = a.commands();
    const inB = b.commands();
    const id = await register(inA);
    await inA.execute(purchase(id), ctx());
    await inB.execute({ type: 'ForgetCustomer', customerId: id }, ctx());
    const error = await inA.execute({ type: 'TagCustomer', customerId: id, tag: 'vip' }, ctx()).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'DomainError' });
    const { state } = await inA.loadAggregate('customer', id);
    expect(state.forgotten).toBe(true);
    expect(state.email).toBe('[erased]');
  });

  it('after a forget in this process, the decrypted state leaves the cache', async () => {
    const commands = a.commands();
    const id = await register(commands);
    a.rowsRead.n = 0;
    await commands.execute({ type: 'ForgetCustomer', customerId: id }, ctx());
    const before = a.rowsRead.n;
    const { state } = await commands.loadAggregate('customer', id);
    // Folded again from the store (two events), the name erased.
    expect(a.rowsRead.n - before).toBe(2);
    expect(state.name).toBe('[erased]');
  });
});
