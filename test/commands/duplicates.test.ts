import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchCommands, type BatchCommands, type BatchItem } from '../../commands/batch.ts';
import { createCrmCommands, type CommandContext, type CrmCommands } from '../../commands/index.ts';
import { DomainError } from '../../domain/errors.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { OutcomeUnknown, WrongExpectedRevision } from '../../eventstore/errors.ts';
import { createEmailIndex, type EmailIndex } from '../../eventstore/email-index.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { testSchemas } from '../support/postgres.ts';
import { TEST_CUSTOMER_ID_KEY } from '../support/fixtures.ts';

const schemas = testSchemas('duplicates');
let database: SqlDatabase;
let store: EventStore;
let emailIndex: EmailIndex;
let commands: CrmCommands;
/** Bulk import's handler, holding addresses in the same index. */
let batch: BatchCommands;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 8 });
  store = await createPostgresEventStore(database, { schema: schemas.events });
  const personalData = await createPersonalData(database.db, { schema: schemas.events });
  emailIndex = await createEmailIndex(database.db, { schema: schemas.events });
  commands = createCrmCommands({ store, personalData, emailIndex });
  batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, emailIndex });
});
afterAll(async () => {
  await store.close();
  await database.close();
  await schemas.dropSchemas();
});

const ctx = (extra: Partial<CommandContext> = {}): CommandContext => ({ actor: { userId: 'ann', roles: ['sales'] }, correlationId: randomUUID(), ...extra });
const register = (email: string, extra: Record<string, unknown> = {}) =>
  commands.execute({ type: 'RegisterCustomer', name: 'Grace Hopper', email, ...extra }, ctx());
const refusal = async (work: Promise<unknown>): Promise<DomainError> => {
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  return error as DomainError;
};
const indexRows = async () =>
  (
    await sql<{ email_hmac: Buffer; customer_id: string }>`SELECT email_hmac, customer_id FROM ${sql.id(schemas.events, 'customer_email_index')}`.execute(
      database.db,
    )
  ).rows;

describe('duplicate registrations', () => {
  it('refuses an email already taken, compared trimmed and case-insensitively, naming the existing customer', async () => {
    const first = await register(`grace-${randomUUID()}@navy.example`);
    const email = (await commands.loadAggregate('customer', first.id)).state.email!;
    // The schema refuses surrounding spaces; the comparison trims anyway (imports, older events).
    const error = await refusal(register(email.replace('grace', 'GRACE').replace('navy', 'Navy')));
    expect(error).toMatchObject({ kind: 'invalid_state', code: 'customer.email_taken', field: 'email', details: { customerId: first.id } });
    const again = await refusal(register(email.toUpperCase()));
    expect(again.details).toEqual({ customerId: first.id });
  });

  it('stores the email normalised', async () => {
    const result = await register(`MiXeD-${randomUUID()}@Navy.Example`);
    expect((await commands.loadAggregate('customer', result.id)).state.email).toMatch(/^mixed-.*@navy\.example$/);
  });

  it('registers a second customer with the same email when allowDuplicate is true', async () => {
    const email = `twin-${randomUUID()}@navy.example`;
    const first = await register(email);
    const second = await register(email, { allowDuplicate: true });
    expect(second.id).not.toBe(first.id);
    expect((await commands.loadAggregate('customer', second.id)).state.exists).toBe(true);
  });

  it('lets exactly one of many concurrent identical registrations succeed', async () => {
    const email = `race-${randomUUID()}@navy.example`;
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => register(email)));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    const winner = (won[0] as PromiseFulfilledResult<{ id: string }>).value.id;
    for (const r of results.filter((r) => r.status === 'rejected'))
      expect(r.reason).toMatchObject({ code: 'customer.email_taken', details: { customerId: winner } });
  });

  it('a retry with the same idempotency key is the same registration, not a duplicate', async () => {
    const email = `retry-${randomUUID()}@navy.example`;
    const key = randomUUID();
    const first = await commands.execute({ type: 'RegisterCustomer', name: 'Grace Hopper', email }, ctx({ idempotencyKey: key }));
    const retry = await commands.execute({ type: 'RegisterCustomer', name: 'Grace Hopper', email }, ctx({ idempotencyKey: key }));
    expect(retry).toEqual({ ...first, replayed: true });
  });

  it('keeps a keyed hash, not the email, and an email change moves the claim', async () => {
    const email = `change-${randomUUID()}@navy.example`;
    const customer = await register(email);
    const rows = (await indexRows()).filter((r) => r.customer_id === customer.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.email_hmac.toString('latin1')).not.toContain('navy');
    const next = `moved-${randomUUID()}@navy.example`;
    await commands.execute({ type: 'ChangeCustomerDetails', customerId: customer.id, email: next }, ctx());
    // The old address is free again, the new one is taken.
    await register(email);
    expect(await refusal(register(next))).toMatchObject({ details: { customerId: customer.id } });
    // Someone else's address cannot be taken over by a change either.
    const other = await register(`other-${randomUUID()}@navy.example`);
    expect(await refusal(commands.execute({ type: 'ChangeCustomerDetails', customerId: other.id, email: next }, ctx()))).toMatchObject({
      code: 'customer.email_taken',
    });
  });

  it('an email change that fails (stale expected revision) leaves the new address free', async () => {
    const customer = await register(`stale-${randomUUID()}@navy.example`);
    const wanted = `wanted-${randomUUID()}@navy.example`;
    const stale = await commands
      .execute({ type: 'ChangeCustomerDetails', customerId: customer.id, email: wanted }, ctx({ expectedRevision: customer.revision + 5 }))
      .then(
        () => 'changed',
        (error: unknown) => error,
      );
    expect(stale).toBeInstanceOf(WrongExpectedRevision);
    expect(stale).toMatchObject({ stream: `customer-${customer.id}`, expected: customer.revision + 5, actual: customer.revision });
    expect(await emailIndex.holder(wanted)).toBeUndefined();
    expect((await register(wanted)).id).not.toBe(customer.id);
  });

  it('a registration whose outcome is unknown (stored, the answer lost) keeps its address: the retry answers it, a twin is refused', async () => {
    const email = `unknown-${randomUUID()}@navy.example`;
    const personalData = await createPersonalData(database.db, { schema: schemas.events });
    // The append commits, then the connection is lost before its answer: the caller cannot know.
    const losing: EventStore = {
      ...store,
      appendToStream: async (...args) => {
        await store.appendToStream(...args);
        throw new OutcomeUnknown('the connection was lost while the append was sent; it may or may not have committed.');
      },
    };
    const key = randomUUID();
    const command = { type: 'RegisterCustomer', name: 'Grace Hopper', email };
    await expect(createCrmCommands({ store: losing, personalData, emailIndex }).execute(command, ctx({ idempotencyKey: key }))).rejects.toBeInstanceOf(
      OutcomeUnknown,
    );
    const retried = await commands.execute(command, ctx({ idempotencyKey: key }));
    expect(await emailIndex.holder(email)).toBe(retried.id);
    const twin = await refusal(register(email));
    expect(twin).toMatchObject({ code: 'customer.email_taken', details: { customerId: retried.id } });
  });

  it('an email change whose outcome is unknown frees the new address (its holder exists: a kept claim would never be taken over); its retry claims it again', async () => {
    const personalData = await createPersonalData(database.db, { schema: schemas.events });
    const customer = await register(`before-${randomUUID()}@navy.example`);
    const wanted = `after-${randomUUID()}@navy.example`;
    // Lost before it was stored: nothing committed.
    const lost: EventStore = {
      ...store,
      appendToStream: () => Promise.reject(new OutcomeUnknown('the connection was lost while the append was sent; it may or may not have committed.')),
    };
    const change = { type: 'ChangeCustomerDetails', customerId: customer.id, email: wanted };
    const key = randomUUID();
    await expect(createCrmCommands({ store: lost, personalData, emailIndex }).execute(change, ctx({ idempotencyKey: key }))).rejects.toBeInstanceOf(
      OutcomeUnknown,
    );
    expect(await emailIndex.holder(wanted)).toBeUndefined();
    // The retry stores it and holds the address.
    await commands.execute(change, ctx({ idempotencyKey: key }));
    expect(await emailIndex.holder(wanted)).toBe(customer.id);
  });

  it('forgetting a customer removes their lookup entry and frees the address', async () => {
    const email = `forget-${randomUUID()}@navy.example`;
    const customer = await register(email);
    await commands.execute({ type: 'ForgetCustomer', customerId: customer.id }, ctx());
    expect((await indexRows()).filter((r) => r.customer_id === customer.id)).toHaveLength(0);
    expect((await register(email)).id).not.toBe(customer.id);
  });

  it('takes over a claim whose registration never happened once it is old', async () => {
    const email = `abandoned-${randomUUID()}@navy.example`;
    const ghost = randomUUID();
    await emailIndex.claim(email, ghost);
    // Young: it may be a registration in flight.
    expect(await refusal(register(email))).toMatchObject({ details: { customerId: ghost } });
    await sql`UPDATE ${sql.id(schemas.events, 'customer_email_index')} SET claimed_at = now() - interval '1 hour' WHERE customer_id = ${ghost}`.execute(
      database.db,
    );
    const real = await register(email);
    expect(await emailIndex.holder(email)).toBe(real.id);
  });
  it("a registered customer's address is never taken over, however old its claim; a take-over whose registration fails frees the address", async () => {
    const email = `old-${randomUUID()}@navy.example`;
    const holder = await register(email);
    const age = (customerId: string) =>
      sql`UPDATE ${sql.id(schemas.events, 'customer_email_index')} SET claimed_at = now() - interval '1 hour' WHERE customer_id = ${customerId}`.execute(
        database.db,
      );
    await age(holder.id);
    expect(await refusal(register(email))).toMatchObject({ code: 'customer.email_taken', details: { customerId: holder.id } });

    const abandoned = `abandoned-${randomUUID()}@navy.example`;
    const ghost = randomUUID();
    await emailIndex.claim(abandoned, ghost);
    await age(ghost);
    // Taken over, then the registration fails (a stale If-Match): the address is nobody's.
    await expect(commands.execute({ type: 'RegisterCustomer', name: 'Late', email: abandoned }, ctx({ expectedRevision: 0 }))).rejects.toBeInstanceOf(
      WrongExpectedRevision,
    );
    expect(await emailIndex.holder(abandoned)).toBeUndefined();
  });

  it('a claim held by a customer forgotten meanwhile is taken over at once, however young', async () => {
    const email = `forgotten-${randomUUID()}@navy.example`;
    const gone = await register(email);
    await commands.execute({ type: 'ForgetCustomer', customerId: gone.id }, ctx());
    // The forgotten customer's claim made again just now: a registration that raced the forget.
    await emailIndex.claim(email, gone.id);
    const next = await register(email);
    expect(await emailIndex.holder(email)).toBe(next.id);
  });

  it('an address held by a merged duplicate is refused naming the primary', async () => {
    const email = `merged-${randomUUID()}@navy.example`;
    const duplicate = await register(email);
    const primary = await register(`primary-${randomUUID()}@navy.example`);
    await commands.execute({ type: 'MergeCustomer', customerId: primary.id, duplicateId: duplicate.id }, ctx());
    const error = await refusal(register(email));
    expect(error).toMatchObject({ kind: 'invalid_state', code: 'customer.email_taken', field: 'email', details: { customerId: primary.id } });
    expect(error.message).toBe(`Customer ${primary.id} already has this email address`);
  });

  it("a command the customer's state refuses anyway is refused for that, not for the address, and claims nothing", async () => {
    const takenEmail = `taken-${randomUUID()}@navy.example`;
    const taken = await register(takenEmail);
    const existing = await register(`existing-${randomUUID()}@navy.example`);
    const forgotten = await register(`gone-${randomUUID()}@navy.example`);
    await commands.execute({ type: 'ForgetCustomer', customerId: forgotten.id }, ctx());
    const merged = await register(`dup-${randomUUID()}@navy.example`);
    await commands.execute({ type: 'MergeCustomer', customerId: existing.id, duplicateId: merged.id }, ctx());
    expect(await refusal(register(takenEmail, { customerId: existing.id }))).toMatchObject({ code: 'customer.already_registered' });
    const unknown = randomUUID();
    const change = (customerId: string, email: string) => commands.execute({ type: 'ChangeCustomerDetails', customerId, email }, ctx());
    expect(await refusal(change(unknown, takenEmail))).toMatchObject({ code: 'customer.not_found', details: { customerId: unknown } });
    expect(await refusal(change(forgotten.id, takenEmail))).toMatchObject({ code: 'customer.forgotten' });
    expect(await refusal(change(merged.id, takenEmail))).toMatchObject({ code: 'customer.merged' });
    const free = `free-${randomUUID()}@navy.example`;
    for (const id of [unknown, forgotten.id, merged.id]) await refusal(change(id, free));
    expect(await emailIndex.holder(free)).toBeUndefined();
    expect(await emailIndex.holder(takenEmail)).toBe(taken.id);
  });

  it('a change without an address, or to the address already held, keeps the claim, also when the change fails', async () => {
    const email = `keep-${randomUUID()}@navy.example`;
    const customer = await register(email);
    await commands.execute({ type: 'ChangeCustomerDetails', customerId: customer.id, phone: '+44 20 7946 0001' }, ctx());
    await expect(
      commands.execute({ type: 'ChangeCustomerDetails', customerId: customer.id, email, phone: '+1 555 0100' }, ctx({ expectedRevision: 0 })),
    ).rejects.toBeInstanceOf(WrongExpectedRevision);
    expect(await emailIndex.holder(email)).toBe(customer.id);
    expect(await refusal(register(email))).toMatchObject({ details: { customerId: customer.id } });
  });
});

describe('addresses held by bulk imports', () => {
  const row = (command: BatchItem['command']): BatchItem => ({
    command,
    ctx: { actor: { userId: 'crm-import', roles: ['admin'] }, correlationId: randomUUID(), idempotencyKey: `import:${randomUUID()}` },
  });
  const registration = (email: string, customerId = randomUUID(), extra: Record<string, unknown> = {}) =>
    row({ type: 'RegisterCustomer', customerId, name: 'Imported', email, ...extra });
  const streamLength = async (customerId: string) => (await store.readStream(`customer-${customerId}`)).length;

  it('an imported customer holds its address against the API, and an imported row for an address the API holds is refused naming its customer', async () => {
    const importedEmail = `imported-${randomUUID()}@navy.example`;
    const imported = randomUUID();
    expect(await batch.executeBatch([registration(importedEmail, imported)])).toMatchObject([{ ok: true }]);
    expect(await emailIndex.holder(importedEmail)).toBe(imported);
    expect(await refusal(register(importedEmail.toUpperCase()))).toMatchObject({ code: 'customer.email_taken', details: { customerId: imported } });

    const apiEmail = `api-${randomUUID()}@navy.example`;
    const viaApi = await register(apiEmail);
    const late = randomUUID();
    const [outcome] = await batch.executeBatch([registration(apiEmail, late)]);
    expect(outcome).toMatchObject({ ok: false, error: { code: 'customer.email_taken', field: 'email', details: { customerId: viaApi.id } } });
    expect(await streamLength(late)).toBe(0);
    expect(await emailIndex.holder(apiEmail)).toBe(viaApi.id);
  });

  it('two rows of one batch with one address: the first registers, the other is refused naming it; the batch again refuses nothing new and appends nothing', async () => {
    const email = `twice-${randomUUID()}@navy.example`;
    const [first, second] = [randomUUID(), randomUUID()];
    const rows = [registration(email, first), registration(email.toUpperCase(), second), registration(`other-${randomUUID()}@navy.example`)];
    const outcomes = await batch.executeBatch(rows);
    expect(outcomes).toMatchObject([{ ok: true }, { ok: false, error: { code: 'customer.email_taken', details: { customerId: first } } }, { ok: true }]);
    expect(await streamLength(second)).toBe(0);
    // A fresh handler (a new `crm import` process) running the same rows again.
    const again = await createBatchCommands({
      store,
      personalData: await createPersonalData(database.db, { schema: schemas.events }),
      emailIndex,
      customerIdKey: emailIndex.customerIdKey,
    }).executeBatch(rows);
    expect(again).toMatchObject([
      { ok: true, alreadyDone: true },
      { ok: false, error: { code: 'customer.email_taken' } },
      { ok: true, alreadyDone: true },
    ]);
    expect(await streamLength(first)).toBe(1);
    expect(await emailIndex.holder(email)).toBe(first);
  });

  it('an old claim of a row of the batch (a run that stopped) is not taken over by another row of the same batch', async () => {
    const email = `stopped-${randomUUID()}@navy.example`;
    const [first, second] = [randomUUID(), randomUUID()];
    await emailIndex.claim(email, first);
    await sql`UPDATE ${sql.id(schemas.events, 'customer_email_index')} SET claimed_at = now() - interval '1 hour' WHERE customer_id = ${first}`.execute(
      database.db,
    );
    const outcomes = await batch.executeBatch([registration(email, first), registration(email, second)]);
    expect(outcomes).toMatchObject([{ ok: true }, { ok: false, error: { code: 'customer.email_taken', details: { customerId: first } } }]);
    expect(await emailIndex.holder(email)).toBe(first);
    expect(await streamLength(second)).toBe(0);
  });

  it('a row refused after its address was claimed frees it; allowDuplicate claims nothing', async () => {
    const email = `refused-${randomUUID()}@navy.example`;
    // No such user: the decider refuses the owner after the address was claimed.
    const [outcome] = await batch.executeBatch([registration(email, randomUUID(), { ownerId: randomUUID() })]);
    expect(outcome).toMatchObject({ ok: false });
    expect(await emailIndex.holder(email)).toBeUndefined();

    const held = await register(`dup-allowed-${randomUUID()}@navy.example`);
    const heldEmail = (await commands.loadAggregate('customer', held.id)).state.email!;
    const duplicate = randomUUID();
    expect(await batch.executeBatch([registration(heldEmail, duplicate, { allowDuplicate: true })])).toMatchObject([{ ok: true }]);
    expect(await emailIndex.holder(heldEmail)).toBe(held.id);
  });

  it('an email change in a batch holds the new address and frees the old one, and is refused for an address another customer holds', async () => {
    const oldEmail = `before-${randomUUID()}@navy.example`;
    const customer = await register(oldEmail);
    const taken = await register(`taken-${randomUUID()}@navy.example`);
    const takenEmail = (await commands.loadAggregate('customer', taken.id)).state.email!;
    const change = (email: string) => row({ type: 'ChangeCustomerDetails', customerId: customer.id, email });
    expect(await batch.executeBatch([change(takenEmail)])).toMatchObject([
      { ok: false, error: { code: 'customer.email_taken', details: { customerId: taken.id } } },
    ]);
    const newEmail = `after-${randomUUID()}@navy.example`;
    expect(await batch.executeBatch([change(newEmail)])).toMatchObject([{ ok: true }]);
    expect(await emailIndex.holder(newEmail)).toBe(customer.id);
    expect(await emailIndex.holder(oldEmail)).toBeUndefined();
  });
});
