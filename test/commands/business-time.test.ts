import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { BUSINESS_TIME_SKEW_MS, createCrmCommands, type CommandContext, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { testSchemas } from '../support/postgres.ts';

const schemas = testSchemas('business_time');
const NOW = new Date('2026-03-01T09:00:00.000Z');
let database: SqlDatabase;
let store: EventStore;
let commands: CrmCommands;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  store = await createPostgresEventStore(database, { schema: schemas.events });
  const personalData = await createPersonalData(database.db, { schema: schemas.events });
  commands = createCrmCommands({ store, personalData, clock: () => NOW });
});
afterAll(async () => {
  await store.close();
  await database.close();
  await schemas.dropSchemas();
});

const ctx = (): CommandContext => ({ actor: { userId: 'ann', roles: ['sales'] }, correlationId: randomUUID() });
const occurredAtOf = async (stream: string) => (await store.readStream(stream)).map((e) => e.metadata.occurredAt);

describe('business time on commands', () => {
  it('records the given occurredAt on registering, opening a deal, creating a campaign and submitting feedback', async () => {
    const when = '2016-05-04T10:00:00.000Z';
    const customer = await commands.execute({ type: 'RegisterCustomer', name: 'Ada', email: `ada-${randomUUID()}@example.com`, occurredAt: when }, ctx());
    const deal = await commands.execute(
      {
        type: 'OpenDeal',
        customerId: customer.id,
        title: 'Licence',
        amount: 10,
        currency: 'EUR',
        ownerId: 'ann',
        expectedCloseDate: '2016-06-30',
        occurredAt: '2016-05-05T10:00:00.000Z',
      },
      ctx(),
    );
    await commands.execute({ type: 'MoveDealStage', dealId: deal.id, stage: 'proposal', occurredAt: '2016-05-06T10:00:00.000Z' }, ctx());
    const campaign = await commands.execute(
      { type: 'CreateCampaign', name: 'Spring', channel: 'email', budget: 100, currency: 'EUR', occurredAt: '2016-04-01T08:00:00.000Z' },
      ctx(),
    );
    const feedback = await commands.execute(
      { type: 'SubmitFeedback', customerId: customer.id, kind: 'question', channel: 'email', subject: 'Hi', body: '?', occurredAt: '2016-05-07T10:00:00.000Z' },
      ctx(),
    );
    expect(await occurredAtOf(customer.stream)).toEqual([when]);
    expect(await occurredAtOf(deal.stream)).toEqual(['2016-05-05T10:00:00.000Z', '2016-05-06T10:00:00.000Z']);
    expect(await occurredAtOf(campaign.stream)).toEqual(['2016-04-01T08:00:00.000Z']);
    expect(await occurredAtOf(feedback.stream)).toEqual(['2016-05-07T10:00:00.000Z']);
    // SLA deadlines follow business time, not the clock.
    const state = (await commands.loadAggregate('feedback', feedback.id)).state as unknown as { firstResponseDueAt: string };
    expect(Date.parse(state.firstResponseDueAt)).toBeLessThan(Date.parse('2016-06-01T00:00:00Z'));
  });

  it('defaults to the clock', async () => {
    const customer = await commands.execute({ type: 'RegisterCustomer', name: 'Ada', email: `ada-${randomUUID()}@example.com` }, ctx());
    expect(await occurredAtOf(customer.stream)).toEqual([NOW.toISOString()]);
  });

  it('accepts a small clock skew but refuses the future beyond it, naming occurredAt and appending nothing', async () => {
    const email = `ada-${randomUUID()}@example.com`;
    const skewed = new Date(NOW.getTime() + BUSINESS_TIME_SKEW_MS - 1000).toISOString();
    const ahead = await commands.execute({ type: 'RegisterCustomer', name: 'Ada', email, occurredAt: skewed }, ctx());
    expect(await occurredAtOf(ahead.stream)).toEqual([skewed]);
    const future = new Date(NOW.getTime() + BUSINESS_TIME_SKEW_MS + 60_000).toISOString();
    const customerId = randomUUID();
    const error = await commands
      .execute({ type: 'RegisterCustomer', customerId, name: 'Ada', email: `ada-${randomUUID()}@example.com`, occurredAt: future }, ctx())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(z.ZodError);
    expect((error as z.ZodError).issues[0]!.path).toEqual(['occurredAt']);
    expect(await store.readStream(`customer-${customerId}`)).toEqual([]);
    await expect(commands.execute({ type: 'TagCustomer', customerId: ahead.id, tag: 'vip', occurredAt: future }, ctx())).rejects.toBeInstanceOf(z.ZodError);
  });

  it('refuses an occurredAt that is not an ISO date-time, and on forgetting (it happens now)', async () => {
    const customer = await commands.execute({ type: 'RegisterCustomer', name: 'Ada', email: `ada-${randomUUID()}@example.com` }, ctx());
    await expect(
      commands.execute({ type: 'RegisterCustomer', name: 'Ada', email: `ada-${randomUUID()}@example.com`, occurredAt: 'yesterday' }, ctx()),
    ).rejects.toBeInstanceOf(z.ZodError);
    await expect(commands.execute({ type: 'ForgetCustomer', customerId: customer.id, occurredAt: '2016-01-01T00:00:00Z' }, ctx())).rejects.toBeInstanceOf(
      z.ZodError,
    );
  });
});
