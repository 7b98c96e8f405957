import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchCommands } from '../../commands/batch.ts';
import { createCrmCommands, type CommandContext, type CrmCommands } from '../../commands/index.ts';
import { MAX_MERGE_CHAIN } from '../../domain/customer/decider.ts';
import { DomainError } from '../../domain/errors.ts';
import { OutcomeUnknown } from '../../eventstore/errors.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData, decodeRecordedEvent, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { TEST_CUSTOMER_ID_KEY } from '../support/fixtures.ts';
import { testSchemas } from '../support/postgres.ts';

/**
 * The command handler's checks of other streams, on real PostgreSQL: what a caller with a limited
 * scope may act on (a record outside it is refused as if it did not exist, a reference to a customer
 * outside it as an unknown customer), the parent an activity is logged under, and the owner and teams
 * a command names. A refusal appends nothing.
 */
const schemas = testSchemas('commands_scope');
let database: SqlDatabase;
let store: EventStore;
let personalData: PersonalData;
let commands: CrmCommands;
let ann: string;
let bob: string;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  store = await createPostgresEventStore(database, { schema: schemas.events });
  personalData = await createPersonalData(database.db, { schema: schemas.events });
  commands = createCrmCommands({ store, personalData });
  ann = (await commands.execute({ type: 'RegisterUser', name: 'Ann', email: `ann-${randomUUID()}@example.com`, role: 'sales' }, admin())).id;
  bob = (await commands.execute({ type: 'RegisterUser', name: 'Bob', email: `bob-${randomUUID()}@example.com`, role: 'sales' }, admin())).id;
});
afterAll(async () => {
  await store?.close();
  await database?.close();
  await schemas.dropSchemas();
});

const admin = (extra: Partial<CommandContext> = {}): CommandContext => ({ actor: { userId: 'root', roles: ['admin'] }, correlationId: randomUUID(), ...extra });
/** Ann with visibility `own`: she sees the records she owns or is assigned. */
const asAnn = (extra: Partial<CommandContext> = {}): CommandContext => ({
  actor: { userId: ann, roles: ['sales'] },
  correlationId: randomUUID(),
  scope: { owners: [ann] },
  ...extra,
});

const customerOf = async (ownerId?: string): Promise<string> =>
  (await commands.execute({ type: 'RegisterCustomer', name: 'Scoped', email: `${randomUUID()}@example.com`, ...(ownerId ? { ownerId } : {}) }, admin())).id;

const openDeal = async (customerId: string, ownerId: string): Promise<string> =>
  (await commands.execute({ type: 'OpenDeal', customerId, title: 'Renewal', amount: 100, currency: 'EUR', ownerId, expectedCloseDate: '2026-12-31' }, admin()))
    .id;

const refusal = async (promise: Promise<unknown>): Promise<DomainError> => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  return error as DomainError;
};

/** Events of a stream, decoded: what a later reader (projection, auditor) sees. */
const eventsOf = async (stream: string) => Promise.all((await store.readStream(stream)).map(async (r) => (await decodeRecordedEvent(r, personalData)).event));

describe("commands within a caller's scope", () => {
  it('a customer outside the scope is refused as not found, naming it, and nothing is appended; inside it, or without a scope, the command runs', async () => {
    const mine = await customerOf(ann);
    const theirs = await customerOf(bob);
    const nobodys = await customerOf();
    for (const id of [theirs, nobodys]) {
      const error = await refusal(commands.execute({ type: 'TagCustomer', customerId: id, tag: 'x' }, asAnn()));
      expect(error).toMatchObject({ kind: 'not_found', code: 'customer.not_found', field: 'customerId', details: { customerId: id } });
      expect(error.message).toBe(`Customer ${id} does not exist`);
      expect((await store.readStream(`customer-${id}`)).map((e) => e.type)).toEqual([
        'CustomerRegistered',
        ...(id === theirs ? ['CustomerOwnerAssigned'] : []),
      ]);
    }
    expect((await commands.execute({ type: 'TagCustomer', customerId: mine, tag: 'x' }, asAnn())).eventIds).toHaveLength(1);
    // No scope (null or absent): every record.
    expect((await commands.execute({ type: 'TagCustomer', customerId: theirs, tag: 'x' }, asAnn({ scope: null }))).eventIds).toHaveLength(1);
    expect((await commands.execute({ type: 'TagCustomer', customerId: nobodys, tag: 'x' }, admin())).eventIds).toHaveLength(1);
    // Registering creates the record: nothing to see yet.
    expect((await commands.execute({ type: 'RegisterCustomer', name: 'New', email: `${randomUUID()}@example.com`, ownerId: bob }, asAnn())).revision).toBe(1);
  });

  it('a merge needs both customers in the scope: an unseen primary is not found, an unseen duplicate an unknown duplicateId', async () => {
    const mine = await customerOf(ann);
    const alsoMine = await customerOf(ann);
    const theirs = await customerOf(bob);
    const unseenDuplicate = await refusal(commands.execute({ type: 'MergeCustomer', customerId: mine, duplicateId: theirs }, asAnn()));
    expect(unseenDuplicate).toMatchObject({ kind: 'rule_violated', code: 'customer.not_found', field: 'duplicateId' });
    expect(unseenDuplicate.message).toBe(`Customer ${theirs} does not exist`);
    const unseenPrimary = await refusal(commands.execute({ type: 'MergeCustomer', customerId: theirs, duplicateId: mine }, asAnn()));
    expect(unseenPrimary).toMatchObject({ kind: 'not_found', code: 'customer.not_found', field: 'customerId', details: { customerId: theirs } });
    expect((await eventsOf(`customer-${mine}`)).map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerOwnerAssigned']);
    expect((await eventsOf(`customer-${theirs}`)).map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerOwnerAssigned']);
    const merged = await commands.execute({ type: 'MergeCustomer', customerId: mine, duplicateId: alsoMine }, asAnn());
    expect(merged.eventIds).toHaveLength(2);
  });

  it('a deal, feedback or campaign response naming a customer outside the scope is refused as an unknown customer (422)', async () => {
    const mine = await customerOf(ann);
    const theirs = await customerOf(bob);
    const deal = { type: 'OpenDeal', title: 'T', amount: 1, currency: 'EUR', ownerId: ann, expectedCloseDate: '2026-12-31' } as const;
    const feedback = { type: 'SubmitFeedback', kind: 'question', channel: 'web', subject: 'S', body: 'B' } as const;
    const campaign = (await commands.execute({ type: 'CreateCampaign', name: 'Spring', channel: 'email', budget: 10, currency: 'EUR' }, admin())).id;
    await commands.execute({ type: 'LaunchCampaign', campaignId: campaign }, admin());
    const response = { type: 'RecordCampaignResponse', campaignId: campaign, kind: 'opened' } as const;
    for (const command of [deal, feedback, response]) {
      const error = await refusal(commands.execute({ ...command, customerId: theirs }, asAnn()));
      expect(error).toMatchObject({ kind: 'rule_violated', code: 'customer.not_found', field: 'customerId', details: { customerId: theirs } });
      expect(error.message).toBe(`Customer ${theirs} does not exist`);
      expect((await commands.execute({ ...command, customerId: mine }, asAnn())).eventIds).toHaveLength(1);
    }
    // The campaign itself has no owner: commands on it without a customer run for every scope.
    expect((await commands.execute({ type: 'PauseCampaign', campaignId: campaign }, asAnn())).eventIds).toHaveLength(1);
    expect((await eventsOf(`campaign-${campaign}`)).map((e) => e.type)).toEqual([
      'CampaignCreated',
      'CampaignLaunched',
      'CampaignResponseRecorded',
      'CampaignPaused',
    ]);
  });

  it("a deal is in the scope when it is owned there or its customer's account is (after a merge, the primary's)", async () => {
    const mine = await customerOf(ann);
    const theirs = await customerOf(bob);
    const ownDealOnTheirCustomer = await openDeal(theirs, ann);
    const theirDealOnMyCustomer = await openDeal(mine, bob);
    const theirDeal = await openDeal(theirs, bob);
    // A customer of Bob's merged into one of Ann's: its deals follow the primary's owner.
    const mergedAway = await customerOf(bob);
    const dealOfMerged = await openDeal(mergedAway, bob);
    await commands.execute({ type: 'MergeCustomer', customerId: mine, duplicateId: mergedAway }, admin());
    for (const dealId of [ownDealOnTheirCustomer, theirDealOnMyCustomer, dealOfMerged]) {
      expect((await commands.execute({ type: 'MoveDealStage', dealId, stage: 'proposal' }, asAnn())).eventIds).toHaveLength(1);
    }
    for (const dealId of [theirDeal, randomUUID()]) {
      const error = await refusal(commands.execute({ type: 'MoveDealStage', dealId, stage: 'proposal' }, asAnn()));
      expect(error).toMatchObject({ kind: 'not_found', code: 'deal.not_found', field: 'dealId', details: { dealId } });
      expect(error.message).toBe(`Deal ${dealId} does not exist`);
    }
    expect((await eventsOf(`deal-${theirDeal}`)).map((e) => e.type)).toEqual(['DealOpened']);
  });

  it('feedback is in the scope when assigned there or its customer is', async () => {
    const mine = await customerOf(ann);
    const theirs = await customerOf(bob);
    const submit = async (customerId: string) =>
      (await commands.execute({ type: 'SubmitFeedback', customerId, kind: 'question', channel: 'web', subject: 'S', body: 'B' }, admin())).id;
    const onMine = await submit(mine);
    const assignedToAnn = await submit(theirs);
    await commands.execute({ type: 'AssignFeedback', feedbackId: assignedToAnn, assigneeId: ann }, admin());
    const notHers = await submit(theirs);
    await commands.execute({ type: 'AssignFeedback', feedbackId: notHers, assigneeId: bob }, admin());
    for (const feedbackId of [onMine, assignedToAnn]) {
      expect((await commands.execute({ type: 'EscalateFeedback', feedbackId, reason: 'Waiting' }, asAnn())).eventIds).toHaveLength(1);
    }
    for (const feedbackId of [notHers, randomUUID()]) {
      const error = await refusal(commands.execute({ type: 'EscalateFeedback', feedbackId, reason: 'Waiting' }, asAnn()));
      expect(error).toMatchObject({ kind: 'not_found', code: 'feedback.not_found', field: 'feedbackId', details: { feedbackId } });
      expect(error.message).toBe(`Feedback ${feedbackId} does not exist`);
    }
  });

  it('an activity is in the scope when assigned there, or on a customer or deal of the scope', async () => {
    const mine = await customerOf(ann);
    const theirs = await customerOf(bob);
    const hisDealOnTheirs = await openDeal(theirs, bob);
    const annsDealOnTheirs = await openDeal(theirs, ann);
    const log = async (parent: { customerId: string } | { dealId: string }, assigneeId: string | null) =>
      (await commands.execute({ type: 'LogActivity', kind: 'task', subject: 'Call back', assigneeId, ...parent }, admin())).id;
    const visible = [
      await log({ customerId: mine }, bob),
      await log({ customerId: theirs }, ann),
      await log({ dealId: annsDealOnTheirs }, bob),
      await log({ dealId: hisDealOnTheirs }, ann),
    ];
    const hidden = [await log({ customerId: theirs }, bob), await log({ dealId: hisDealOnTheirs }, null), randomUUID()];
    for (const activityId of visible) {
      expect((await commands.execute({ type: 'CompleteActivity', activityId }, asAnn())).eventIds).toHaveLength(1);
    }
    for (const activityId of hidden) {
      const error = await refusal(commands.execute({ type: 'CompleteActivity', activityId }, asAnn()));
      expect(error).toMatchObject({ kind: 'not_found', code: 'activity.not_found', field: 'activityId', details: { activityId } });
      expect(error.message).toBe(`Activity ${activityId} does not exist`);
    }
  });

  it('an activity is logged only under a parent in the scope: any other parent answers as a missing one (404)', async () => {
    const mine = await customerOf(ann);
    const theirs = await customerOf(bob);
    const theirDeal = await openDeal(theirs, bob);
    const dealOnMine = await openDeal(mine, bob);
    const onCustomer = await refusal(commands.execute({ type: 'LogActivity', kind: 'note', subject: 'Met', customerId: theirs }, asAnn()));
    expect(onCustomer).toMatchObject({ kind: 'not_found', code: 'customer.not_found', field: 'customerId', details: { customerId: theirs } });
    expect(onCustomer.message).toBe(`Customer ${theirs} does not exist`);
    const onDeal = await refusal(commands.execute({ type: 'LogActivity', kind: 'note', subject: 'Met', dealId: theirDeal }, asAnn()));
    expect(onDeal).toMatchObject({ kind: 'not_found', code: 'deal.not_found', field: 'dealId', details: { dealId: theirDeal } });
    expect(onDeal.message).toBe(`Deal ${theirDeal} does not exist`);
    expect((await commands.execute({ type: 'LogActivity', kind: 'note', subject: 'Met', customerId: mine }, asAnn())).eventIds).toHaveLength(1);
    expect((await commands.execute({ type: 'LogActivity', kind: 'note', subject: 'Met', dealId: dealOnMine }, asAnn())).eventIds).toHaveLength(1);
  });

  it("a deal's account is followed through the longest merge chain a merge allows, to its end", async () => {
    // c0 merged into c1, c1 into c2, ... c15 into c16: MAX_MERGE_CHAIN merges (a merge past them is
    // refused). The end, c16, is Ann's: a deal on c0 is hers to move, as `customer_owner_id` has it.
    const chain: string[] = [];
    for (let i = 0; i <= MAX_MERGE_CHAIN; i++) chain.push(await customerOf(i === MAX_MERGE_CHAIN ? ann : bob));
    const dealOnFirst = await openDeal(chain[0]!, bob);
    for (let i = 1; i <= MAX_MERGE_CHAIN; i++) await commands.execute({ type: 'MergeCustomer', customerId: chain[i]!, duplicateId: chain[i - 1]! }, admin());
    // Every customer on the way but the end is Bob's: a walk one merge short would refuse her.
    expect((await commands.execute({ type: 'MoveDealStage', dealId: dealOnFirst, stage: 'proposal' }, asAnn())).eventIds).toHaveLength(1);
  });

  it('users and teams are administration: no scope applies to them', async () => {
    const team = (await commands.execute({ type: 'CreateTeam', name: 'North' }, admin())).id;
    expect((await commands.execute({ type: 'RenameTeam', teamId: team, name: 'South' }, asAnn())).eventIds).toHaveLength(1);
    expect((await commands.execute({ type: 'ChangeUser', userId: bob, name: 'Robert' }, asAnn())).eventIds).toHaveLength(1);
  });
});

describe('the streams a command refers to', () => {
  it("an activity on a deal belongs to the deal's customer, or to the primary that customer was merged into", async () => {
    const primary = await customerOf();
    const duplicate = await customerOf();
    const dealOnDuplicate = await openDeal(duplicate, ann);
    const dealOnPrimary = await openDeal(primary, ann);
    await commands.execute({ type: 'MergeCustomer', customerId: primary, duplicateId: duplicate }, admin());
    const onMerged = await commands.execute({ type: 'LogActivity', kind: 'call', subject: 'Follow-up', dealId: dealOnDuplicate }, admin());
    const onDeal = await commands.execute({ type: 'LogActivity', kind: 'call', subject: 'Follow-up', dealId: dealOnPrimary }, admin());
    for (const [logged, dealId] of [
      [onMerged, dealOnDuplicate],
      [onDeal, dealOnPrimary],
    ] as const) {
      const [event] = await eventsOf(logged.stream);
      expect(event).toMatchObject({ type: 'ActivityLogged', data: { customerId: primary, dealId } });
    }
    const unknownDeal = randomUUID();
    const error = await refusal(commands.execute({ type: 'LogActivity', kind: 'call', subject: 'Follow-up', dealId: unknownDeal }, admin()));
    expect(error).toMatchObject({ kind: 'not_found', code: 'deal.not_found', field: 'dealId', details: { dealId: unknownDeal } });
  });

  it('an activity on a deal whose customer is forgotten is refused; a change or completion of one already logged too', async () => {
    const customerId = await customerOf();
    const dealId = await openDeal(customerId, ann);
    const task = await commands.execute({ type: 'LogActivity', kind: 'task', subject: 'Send offer', customerId }, admin());
    await commands.execute({ type: 'ForgetCustomer', customerId }, admin());
    const onDeal = await refusal(commands.execute({ type: 'LogActivity', kind: 'call', subject: 'Call', dealId }, admin()));
    expect(onDeal).toMatchObject({ kind: 'invalid_state', code: 'customer.forgotten', details: { customerId } });
    for (const command of [
      { type: 'ChangeActivity', activityId: task.id, subject: 'Other' },
      { type: 'CompleteActivity', activityId: task.id },
    ]) {
      expect(await refusal(commands.execute(command, admin()))).toMatchObject({ kind: 'invalid_state', code: 'customer.forgotten', details: { customerId } });
    }
    expect(await store.readStream(task.stream)).toHaveLength(1);
  });

  it("a customer's owner must be a registered, active user; a user's teams must exist (the unknown ones named)", async () => {
    const nobody = randomUUID();
    const ownerRefused = await refusal(
      commands.execute({ type: 'RegisterCustomer', name: 'X', email: `${randomUUID()}@example.com`, ownerId: nobody }, admin()),
    );
    expect(ownerRefused).toMatchObject({ kind: 'rule_violated', code: 'user.not_found', field: 'ownerId', details: { ownerId: nobody } });
    const customerId = await customerOf();
    const carl = (await commands.execute({ type: 'RegisterUser', name: 'Carl', email: `carl-${randomUUID()}@example.com`, role: 'support' }, admin())).id;
    await commands.execute({ type: 'ChangeUser', userId: carl, active: false }, admin());
    for (const command of [
      { type: 'AssignCustomerOwner', customerId, ownerId: carl },
      { type: 'ChangeCustomerDetails', customerId, ownerId: carl },
    ]) {
      expect(await refusal(commands.execute(command, admin()))).toMatchObject({ code: 'user.inactive', field: 'ownerId', details: { ownerId: carl } });
    }
    expect((await commands.execute({ type: 'AssignCustomerOwner', customerId, ownerId: ann }, admin())).eventIds).toHaveLength(1);

    const team = (await commands.execute({ type: 'CreateTeam', name: 'East' }, admin())).id;
    const missing = randomUUID();
    const teamsRefused = await refusal(
      commands.execute(
        { type: 'RegisterUser', name: 'Dana', email: `dana-${randomUUID()}@example.com`, role: 'sales', teamIds: [team, missing, missing] },
        admin(),
      ),
    );
    expect(teamsRefused).toMatchObject({ kind: 'rule_violated', code: 'team.not_found', field: 'teamIds', details: { teamIds: [missing, missing] } });
    const dana = await commands.execute(
      { type: 'RegisterUser', name: 'Dana', email: `dana-${randomUUID()}@example.com`, role: 'sales', teamIds: [team] },
      admin(),
    );
    expect((await eventsOf(dana.stream)).map((e) => e.type)).toEqual(['UserRegistered', 'UserJoinedTeam']);
    const changeRefused = await refusal(commands.execute({ type: 'ChangeUser', userId: dana.id, teamIds: [team, missing] }, admin()));
    expect(changeRefused).toMatchObject({ code: 'team.not_found', details: { teamIds: [missing] } });
  });

  it("a deal's owner or a feedback item's assignee named by a user id is a registered, active user, in a command and in an import's batch; a name is taken", async () => {
    const customerId = await customerOf();
    const nobody = randomUUID();
    const dealOwnedBy = (ownerId: string) => ({
      type: 'OpenDeal',
      customerId,
      title: 'Renewal',
      amount: 100,
      currency: 'EUR',
      ownerId,
      expectedCloseDate: '2026-12-31',
    });
    expect(await refusal(commands.execute(dealOwnedBy(nobody), admin()))).toMatchObject({
      code: 'user.not_found',
      field: 'ownerId',
      details: { ownerId: nobody },
    });
    const [imported] = await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }).executeBatch([
      { command: dealOwnedBy(nobody), ctx: admin({ idempotencyKey: `row-${nobody}` }) },
    ]);
    expect(imported).toMatchObject({ ok: false, error: { code: 'user.not_found', field: 'ownerId', details: { ownerId: nobody } } });
    const dealId = (await commands.execute(dealOwnedBy('Carla from the old CRM'), admin())).id;
    const dora = (await commands.execute({ type: 'RegisterUser', name: 'Dora', email: `dora-${randomUUID()}@example.com`, role: 'sales' }, admin())).id;
    await commands.execute({ type: 'ChangeUser', userId: dora, active: false }, admin());
    expect(await refusal(commands.execute({ type: 'ChangeDeal', dealId, ownerId: dora }, admin()))).toMatchObject({ code: 'user.inactive', field: 'ownerId' });
    expect((await commands.execute({ type: 'ChangeDeal', dealId, ownerId: bob }, admin())).eventIds).toHaveLength(1);

    const feedbackId = (await commands.execute({ type: 'SubmitFeedback', customerId, kind: 'question', channel: 'web', subject: 'S', body: 'B' }, admin())).id;
    const assign = (assigneeId: string) => commands.execute({ type: 'AssignFeedback', feedbackId, assigneeId }, admin());
    expect(await refusal(assign(nobody))).toMatchObject({ code: 'user.not_found', field: 'assigneeId' });
    expect(await refusal(assign(dora))).toMatchObject({ code: 'user.inactive', field: 'assigneeId' });
    expect((await assign(ann)).eventIds).toHaveLength(1);
    expect((await eventsOf(`feedback-${feedbackId}`)).map((e) => e.type)).toEqual(['FeedbackSubmitted', 'FeedbackAssigned']);
  });

  it('forgetting a customer forgets the duplicates merged into it, in the answer too; a keyed retry answers the same', async () => {
    const primary = await customerOf(ann);
    const first = await customerOf(bob);
    const second = await customerOf();
    await commands.execute({ type: 'MergeCustomer', customerId: primary, duplicateId: first }, admin());
    await commands.execute({ type: 'MergeCustomer', customerId: primary, duplicateId: second }, admin());
    const key = randomUUID();
    // Ann sees the primary, not the duplicate Bob owned: it is the same person, forgotten too.
    const forgotten = await commands.execute({ type: 'ForgetCustomer', customerId: primary }, asAnn({ idempotencyKey: key }));
    const streams = [primary, first, second].map((id) => `customer-${id}`);
    const lastOf = await Promise.all(streams.map(async (s) => (await store.readStream(s)).at(-1)!));
    expect(lastOf.map((e) => e.type)).toEqual(['CustomerForgotten', 'CustomerForgotten', 'CustomerForgotten']);
    expect(forgotten.eventIds).toEqual(lastOf.map((e) => e.id));
    // The answer's position covers the duplicates' forgets (read-your-writes waits for the last).
    expect(forgotten.position).toBe(lastOf.map((e) => e.position).reduce((a, b) => (a > b ? a : b)));
    expect(forgotten).toMatchObject({ id: primary, stream: streams[0], revision: lastOf[0]!.revision });
    expect(await commands.execute({ type: 'ForgetCustomer', customerId: primary }, asAnn({ idempotencyKey: key }))).toEqual({ ...forgotten, replayed: true });
    // Each duplicate's forget is a keyed command of its own (its retry is recognised), not the primary's key reused.
    const keys = lastOf.map((e) => e.metadata.idempotencyKey);
    expect(keys[0]).toBe(key);
    expect(new Set(keys).size).toBe(3);
    // Without a key, none of the forgets records one.
    const other = await customerOf();
    const otherDuplicate = await customerOf();
    await commands.execute({ type: 'MergeCustomer', customerId: other, duplicateId: otherDuplicate }, admin());
    await commands.execute({ type: 'ForgetCustomer', customerId: other }, admin());
    for (const id of [other, otherDuplicate]) expect((await store.readStream(`customer-${id}`)).at(-1)!.metadata.idempotencyKey).toBeUndefined();
    for (const s of streams) expect((await store.readStream(s)).filter((e) => e.type === 'CustomerForgotten')).toHaveLength(1);
  });
});

describe('an append whose outcome is unknown', () => {
  it('is given back to the caller even when it committed; the keyed retry then answers the committed result, appended once', async () => {
    const customerId = await customerOf();
    // The append commits, then the connection is lost before the answer (as `OutcomeUnknown` reports it).
    const lostAnswer = new Proxy(store, {
      get(target, prop) {
        if (prop === 'appendToStream')
          return async (...args: Parameters<EventStore['appendToStream']>) => {
            await target.appendToStream(...args);
            throw new OutcomeUnknown('Connection lost after the append was sent');
          };
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const flaky = createCrmCommands({ store: lostAnswer, personalData });
    const key = randomUUID();
    const tag = { type: 'TagCustomer', customerId, tag: 'vip' } as const;
    await expect(flaky.execute(tag, admin({ idempotencyKey: key }))).rejects.toBeInstanceOf(OutcomeUnknown);
    const retried = await commands.execute(tag, admin({ idempotencyKey: key }));
    const stored = await store.readStream(`customer-${customerId}`);
    expect(stored.map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerTagged']);
    expect(retried.eventIds).toEqual([stored[1]!.id]);
  });
});
