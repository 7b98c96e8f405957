import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCrmCommands, type CommandContext, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { countingAppends, countingReadCalls, processesOnOneDatabase, racingAppends, type CommandProcess } from '../support/processes.ts';

/**
 * Commands that keep a place in the queue each (commands/index.ts `decidedAlone`): with an email
 * index, registrations and detail changes hold an address around their append, so they are not
 * grouped. They still meet other processes as grouped commands do: a state kept in memory is checked
 * by the append's expected revision, a lost race is decided again, and a claimed revision is checked
 * against the store. Two "processes" (two pools and stores on one database) make the races.
 */
const processes = processesOnOneDatabase('commands_decided_alone');

let a: CommandProcess;
let b: CommandProcess;
beforeAll(async () => {
  a = await processes.start();
  b = await processes.start();
});

const commandsOf = (p: CommandProcess, store: EventStore = p.store, windowMs = 60_000): CrmCommands =>
  createCrmCommands({ store, personalData: p.personalData, emailIndex: p.emailIndex, queue: { windowMs } });

const ctx = (extra: Partial<CommandContext> = {}): CommandContext => ({
  actor: { userId: 'back-office', roles: ['sales'] },
  correlationId: randomUUID(),
  ...extra,
});

const register = async (commands: CrmCommands, name = 'Ann') =>
  (await commands.execute({ type: 'RegisterCustomer', name, email: `${randomUUID()}@example.com` }, ctx())).id;

const rename = (customerId: string, name: string) => ({ type: 'ChangeCustomerDetails', customerId, name });

describe('with an email index', () => {
  it('commands other than registrations and detail changes still share appends on a hot stream', async () => {
    const { store, appends } = countingAppends(a.store);
    const commands = commandsOf(a, store);
    const id = await register(commands);
    appends.n = 0;
    const results = await Promise.all(
      Array.from({ length: 16 }, () => commands.execute({ type: 'RecordPurchase', customerId: id, orderId: randomUUID(), amount: 5, currency: 'EUR' }, ctx())),
    );
    expect(results.map((r) => r.revision).sort((x, y) => x - y)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(appends.n).toBeLessThan(16);
  });

  it('a detail change decided on a kept state that another process made stale is decided again on the stored state and refused', async () => {
    const inA = commandsOf(a, a.store, 3_000);
    const id = await register(inA);
    // Given process B forgets the customer that A keeps in memory as registered
    await commandsOf(b).execute({ type: 'ForgetCustomer', customerId: id }, ctx());
    // Then A's rename, claiming no revision, loses the race on its append and is refused on the stored state
    await expect(inA.execute(rename(id, 'Carol'), ctx())).rejects.toMatchObject({ code: 'customer.forgotten' });
    // And with an idempotency key too: the lost race finds no first result under it, so the command is decided again
    const keyed = await register(inA);
    await commandsOf(b).execute({ type: 'ForgetCustomer', customerId: keyed }, ctx());
    await expect(inA.execute(rename(keyed, 'Carol'), ctx({ idempotencyKey: randomUUID() }))).rejects.toMatchObject({ code: 'customer.forgotten' });
    expect((await a.store.readStream(`customer-${id}`)).map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerForgotten']);
  });

  it('a detail change is decided on the kept state, with nothing read, when this process wrote the stream last', async () => {
    const { store, reads } = countingReadCalls(a.store);
    const inA = commandsOf(a, store);
    const id = await register(inA);
    reads.n = 0;
    expect((await inA.execute(rename(id, 'Fay'), ctx())).revision).toBe(1);
    expect(reads.n).toBe(0);
  });

  it('a detail change that records nothing on a kept state is decided again on the stored state', async () => {
    const inA = commandsOf(a);
    const id = await register(inA, 'Ann');
    // Given process B renames the customer that A keeps in memory as Ann
    await commandsOf(b).execute(rename(id, 'Bob'), ctx());
    // When A renames it to Ann (nothing to record on A's kept state)
    const result = await inA.execute(rename(id, 'Ann'), ctx());
    // Then the rename is recorded after B's
    expect(result.revision).toBe(2);
    expect((await inA.loadAggregate('customer', id)).state.name).toBe('Ann');
  });

  it('a claimed revision is checked against the store when another process wrote since the state was kept', async () => {
    const inA = commandsOf(a);
    const id = await register(inA);
    await commandsOf(b).execute({ type: 'RecordPurchase', customerId: id, orderId: 'from-b', amount: 5, currency: 'EUR' }, ctx());
    // A keeps revision 0; the store holds revision 1, which the caller claims
    expect((await inA.execute(rename(id, 'Dora'), ctx({ expectedRevision: 1 }))).revision).toBe(2);
  });

  it('a keyed detail change whose twin another process stored just before its append gets the twin’s answer, even with a claimed revision', async () => {
    const inB = commandsOf(b);
    const { store, appends, raceNextAppend } = racingAppends(a.store);
    const inA = commandsOf(a, store);
    const id = await register(inA);
    const key = randomUUID();
    let twin: Awaited<ReturnType<CrmCommands['execute']>> | undefined;
    raceNextAppend(async () => {
      twin = await inB.execute(rename(id, 'Eve'), ctx({ idempotencyKey: key }));
    });
    appends.n = 0;
    // When A's attempt, claiming revision 0, reaches its append after B stored the same command with the same key
    const result = await inA.execute(rename(id, 'Eve'), ctx({ idempotencyKey: key, expectedRevision: 0 }));
    // Then A answers with B's result, not a conflict, and the event is stored once
    expect(appends.n).toBe(1);
    expect(result).toMatchObject({ revision: 1, eventIds: twin!.eventIds });
    expect(await a.store.readStream(`customer-${id}`)).toHaveLength(2);
  });
});
