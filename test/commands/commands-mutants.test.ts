import { randomUUID } from 'node:crypto';
import { v5 as referenceUuidV5 } from 'uuid';
import { ZodError } from 'zod';
import { describe, expect, it } from 'vitest';
import { commandHash, createdIdFor, eventIdFor, uuidV5 } from '../../commands/ids.ts';
import { fillDerivedIds, needsCustomerSnapshot, prepareCommand } from '../../commands/prepare.ts';
import { BUSINESS_TIME_SKEW_MS } from '../../domain/shared.ts';
import { CommandsBusy, createStreamQueue } from '../../commands/stream-queue.ts';
import { commandTypes } from '../../commands/schemas.ts';
import type { CommandContext } from '../../commands/index.ts';
import { WrongExpectedRevision } from '../../eventstore/errors.ts';

/**
 * The command path's pure parts at the edges the handler tests do not reach: name-based ids against
 * the `uuid` package's RFC 4122 v5, the canonical command hash, command preparation (business time,
 * reasons, derived ids) and the per-stream queue's bounds.
 */
const NAMESPACE = '6f1c2a5e-8b3d-4f7a-9c0e-1b2d3f4a5b6c';
const ctx = (extra: Partial<CommandContext> = {}): CommandContext => ({ actor: { userId: 'sam@sales', roles: ['sales'] }, correlationId: 'corr-1', ...extra });
const NOW = new Date('2026-06-01T12:00:00.000Z');

/** Resolves after `ms`; used only to give a queued promise the chance to run when it must not. */
const tick = (ms = 5) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe('name-based ids', () => {
  it('uuidV5 is RFC 4122 version 5 in the CRM namespace, as the uuid package computes it', () => {
    for (const name of ['', 'a', 'event\ncustomer-1\nkey\n0', 'Zoë 👩‍👩‍👧', 'x'.repeat(1000)]) {
      expect(uuidV5(name)).toBe(referenceUuidV5(name, NAMESPACE));
    }
    expect(eventIdFor('customer-1', 'key', 2)).toBe(referenceUuidV5('event\ncustomer-1\nkey\n2', NAMESPACE));
    expect(createdIdFor('OpenDeal', 'key')).toBe(referenceUuidV5('create\nOpenDeal\nkey', NAMESPACE));
  });

  it('the command hash ignores key order and undefined fields, keeps array order and nested values', () => {
    const base = commandHash({ type: 'TagCustomer', customerId: 'c', tag: 'vip', nested: { b: 1, a: [1, 2] } });
    expect(commandHash({ nested: { a: [1, 2], b: 1 }, tag: 'vip', customerId: 'c', type: 'TagCustomer' })).toBe(base);
    expect(commandHash({ type: 'TagCustomer', customerId: 'c', tag: 'vip', extra: undefined, nested: { b: 1, a: [1, 2], z: undefined } })).toBe(base);
    expect(commandHash({ type: 'TagCustomer', customerId: 'c', tag: 'vip', nested: { b: 1, a: [2, 1] } })).not.toBe(base);
    expect(commandHash({ type: 'TagCustomer', customerId: 'c', tag: 'vip', nested: { b: 2, a: [1, 2] } })).not.toBe(base);
    expect(commandHash({ type: 'TagCustomer', customerId: 'c', tag: 'vip', nested: { b: 1, a: [1, 2] }, extra: null })).not.toBe(base);
    // An array and an object with the same entries are different requests.
    expect(commandHash({ tags: ['a', 'b'] })).not.toBe(commandHash({ tags: { 0: 'a', 1: 'b' } }));
    // base64url of a SHA-256: 43 characters.
    expect(base).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('command preparation', () => {
  const customerId = randomUUID();

  it('refuses an unknown type as a ZodError on `type`', () => {
    for (const type of ['Nope', 'toString', '__proto__', 42]) {
      const error = (() => {
        try {
          prepareCommand({ type } as never, ctx(), NOW);
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(ZodError);
      expect((error as ZodError).issues[0]).toMatchObject({ code: 'custom', path: ['type'], message: `Unknown command type ${JSON.stringify(type)}` });
    }
  });

  it('accepts business time up to the skew ahead of the clock, refuses beyond it, and prefers the command time to the context', () => {
    const at = (ms: number) => new Date(NOW.getTime() + ms).toISOString();
    const edge = prepareCommand(
      { type: 'RecordPurchase', customerId, orderId: 'o', amount: 1, currency: 'EUR', occurredAt: at(BUSINESS_TIME_SKEW_MS) },
      ctx({ occurredAt: '2020-01-01T00:00:00.000Z' }),
      NOW,
    );
    expect(edge.metadata.occurredAt).toBe(at(BUSINESS_TIME_SKEW_MS));
    expect(edge.command.occurredAt).toBe(at(BUSINESS_TIME_SKEW_MS));
    expect(() =>
      prepareCommand({ type: 'RecordPurchase', customerId, orderId: 'o', amount: 1, currency: 'EUR', occurredAt: at(BUSINESS_TIME_SKEW_MS + 1) }, ctx(), NOW),
    ).toThrow(`must not be more than ${BUSINESS_TIME_SKEW_MS / 60_000} minutes in the future`);
    expect(BUSINESS_TIME_SKEW_MS / 60_000).toBe(5);
    // The time a deal entered its stage tells when something happened too.
    const deal = { type: 'OpenDeal', customerId, title: 'Fleet', amount: 1, currency: 'EUR', ownerId: 'ann', expectedCloseDate: '2026-06-30' };
    expect(prepareCommand({ ...deal, stageEnteredAt: at(BUSINESS_TIME_SKEW_MS) }, ctx(), NOW).command.stageEnteredAt).toBe(at(BUSINESS_TIME_SKEW_MS));
    expect(() => prepareCommand({ ...deal, stageEnteredAt: at(BUSINESS_TIME_SKEW_MS + 1) }, ctx(), NOW)).toThrow(
      expect.objectContaining({ issues: [expect.objectContaining({ path: ['stageEnteredAt'] })] }),
    );
    expect(prepareCommand({ type: 'TagCustomer', customerId, tag: 'vip' }, ctx({ occurredAt: '2020-01-01T00:00:00.000Z' }), NOW).metadata.occurredAt).toBe(
      '2020-01-01T00:00:00.000Z',
    );
    expect(prepareCommand({ type: 'TagCustomer', customerId, tag: 'vip' }, ctx(), NOW).metadata.occurredAt).toBe(NOW.toISOString());
  });

  it("records the command's own reason, else the caller's, and none when neither is given", () => {
    const own = prepareCommand({ type: 'DeactivateCustomer', customerId, reason: 'moved abroad' }, ctx({ reason: 'cleanup' }), NOW);
    expect(own.metadata.reason).toBe('moved abroad');
    const absent = prepareCommand({ type: 'DeactivateCustomer', customerId }, ctx({ reason: 'cleanup' }), NOW);
    expect(absent.metadata.reason).toBe('cleanup');
    for (const reason of ['', '   ', null]) {
      const blank = prepareCommand({ type: 'DeactivateCustomer', customerId, reason }, ctx({ reason: 'cleanup' }), NOW);
      expect(blank.metadata.reason, JSON.stringify(reason)).toBe('cleanup');
    }
    const none = prepareCommand({ type: 'DeactivateCustomer', customerId }, ctx(), NOW);
    expect('reason' in none.metadata).toBe(false);
  });

  it('stamps the actor, correlation, causation (null by default), the type, and a key with its hash', () => {
    const plain = prepareCommand({ type: 'TagCustomer', customerId, tag: 'vip' }, ctx(), NOW);
    expect(plain.metadata).toEqual({
      actor: { userId: 'sam@sales', roles: ['sales'] },
      correlationId: 'corr-1',
      causationId: null,
      occurredAt: NOW.toISOString(),
      command: 'TagCustomer',
    });
    expect(plain.stream).toBe(`customer-${customerId}`);
    expect(plain.kind).toBe('customer');
    const keyed = prepareCommand({ type: 'TagCustomer', customerId, tag: 'vip' }, ctx({ idempotencyKey: 'k-1', causationId: 'cause' }), NOW);
    expect(keyed.metadata).toMatchObject({
      idempotencyKey: 'k-1',
      causationId: 'cause',
      commandHash: commandHash({ type: 'TagCustomer', customerId, tag: 'vip' }),
    });
  });

  it('gives a created aggregate a key-derived id with a key, a fresh one without, and keeps a given id', () => {
    const keyed = prepareCommand(
      { type: 'OpenDeal', customerId, title: 'T', amount: 1, currency: 'EUR', ownerId: 'o', expectedCloseDate: '2026-07-01' },
      ctx({ idempotencyKey: 'k-2' }),
      NOW,
    );
    expect(keyed.id).toBe(createdIdFor('OpenDeal', 'k-2'));
    expect(keyed.command.dealId).toBe(keyed.id);
    const a = prepareCommand({ type: 'RegisterCustomer', name: 'A', email: 'a@example.com' }, ctx(), NOW);
    const b = prepareCommand({ type: 'RegisterCustomer', name: 'A', email: 'a@example.com' }, ctx(), NOW);
    expect(a.id).not.toBe(b.id);
    expect(a.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('derives refund and cost ids stably per key and stream, leaves given ones, and makes the actor the responder', () => {
    const refund = (key?: string, refundId?: string) => {
      const p = prepareCommand(
        { type: 'RefundPurchase', customerId, orderId: 'o', amount: 1, currency: 'EUR', ...(refundId ? { refundId } : {}) },
        ctx(key ? { idempotencyKey: key } : {}),
        NOW,
      );
      fillDerivedIds(p, 'sam@sales');
      return p.command.refundId;
    };
    expect(refund('k')).toBe(uuidV5(`refund\ncustomer-${customerId}\nk`));
    expect(refund('k')).toBe(refund('k'));
    expect(refund()).not.toBe(refund());
    expect(refund('k', 'r-given')).toBe('r-given');
    const campaignId = randomUUID();
    const cost = prepareCommand({ type: 'RecordCampaignCost', campaignId, amount: 2, currency: 'EUR' }, ctx({ idempotencyKey: 'k' }), NOW);
    fillDerivedIds(cost, 'sam@sales');
    expect(cost.command.costId).toBe(uuidV5(`cost\ncampaign-${campaignId}\nk`));
    const respond = prepareCommand({ type: 'RespondToFeedback', feedbackId: randomUUID(), message: 'hello' }, ctx(), NOW);
    fillDerivedIds(respond, 'sam@sales');
    expect(respond.command.responderId).toBe('sam@sales');
    const other = prepareCommand({ type: 'RespondToFeedback', feedbackId: randomUUID(), message: 'hello', responderId: 'eve@support' }, ctx(), NOW);
    fillDerivedIds(other, 'sam@sales');
    expect(other.command.responderId).toBe('eve@support');
    const tag = prepareCommand({ type: 'TagCustomer', customerId, tag: 'vip' }, ctx(), NOW);
    fillDerivedIds(tag, 'sam@sales');
    expect(Object.keys(tag.command).sort()).toEqual(['customerId', 'occurredAt', 'tag', 'type']);
  });

  it('asks for a customer snapshot exactly for deals opened, feedback submitted and campaign responses', () => {
    expect(commandTypes.filter(needsCustomerSnapshot).sort()).toEqual(['OpenDeal', 'RecordCampaignResponse', 'SubmitFeedback']);
  });
});

describe('the per-stream queue', () => {
  it('runs commands on one stream one after another, and on different streams at once', async () => {
    const queue = createStreamQueue({ windowMs: 10_000 });
    const order: string[] = [];
    let releaseFirst!: () => void;
    const first = queue.run('s', undefined, async () => {
      order.push('first starts');
      await new Promise<void>((resolve) => (releaseFirst = resolve));
      order.push('first ends');
      return 1;
    });
    const second = queue.run('s', undefined, async () => {
      order.push('second starts');
      return 2;
    });
    const elsewhere = await queue.run('t', undefined, async () => 'other stream');
    expect(elsewhere).toBe('other stream');
    await tick();
    expect(order).toEqual(['first starts']);
    expect(queue.pending()).toBe(2);
    releaseFirst();
    expect(await Promise.all([first, second])).toEqual([1, 2]);
    expect(order).toEqual(['first starts', 'first ends', 'second starts']);
    expect(queue.pending()).toBe(0);
  });

  it('a failed command does not block the next one on its stream', async () => {
    const queue = createStreamQueue();
    const failing = queue.run('s', undefined, async () => {
      throw new Error('refused');
    });
    const next = queue.run('s', undefined, async () => 'ran');
    await expect(failing).rejects.toThrow('refused');
    expect(await next).toBe('ran');
  });

  it('refuses at once beyond maxPending, naming the reason and a retry delay of at least a second', async () => {
    const queue = createStreamQueue({ maxPending: 2, windowMs: 2_500 });
    let release!: () => void;
    const blocker = new Promise<void>((resolve) => (release = resolve));
    const held = [queue.run('a', undefined, () => blocker), queue.run('b', undefined, () => blocker)];
    const refused = await queue.run('c', undefined, async () => 'never').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CommandsBusy);
    expect(refused).toMatchObject({
      reason: 'queue_full',
      stream: 'c',
      retryAfterSeconds: 3,
      message: '2 commands are already waiting in this process; retry shortly.',
    });
    release();
    await Promise.all(held);
    expect(await queue.run('c', undefined, async () => 'now')).toBe('now');
    const short = createStreamQueue({ maxPending: 0, windowMs: 10 });
    expect(await short.run('c', undefined, async () => 'x').catch((e: unknown) => e)).toMatchObject({ reason: 'queue_full', retryAfterSeconds: 1 });
  });

  it('refuses a command whose turn does not come within the window, and the one after it still waits for the first', async () => {
    const queue = createStreamQueue({ windowMs: 1_000 });
    let release!: () => void;
    const order: string[] = [];
    const first = queue.run('s', undefined, () => new Promise<string>((resolve) => (release = () => resolve('first'))));
    const starved = await queue.run('s', undefined, async () => 'starved ran').catch((e: unknown) => e);
    expect(starved).toMatchObject({ reason: 'queue_wait', stream: 's', retryAfterSeconds: 1 });
    expect(String((starved as Error).message)).toContain('1000 ms');
    const third = queue.run('s', undefined, async () => {
      order.push('third');
      return 'third';
    });
    await tick();
    expect(order).toEqual([]);
    release();
    expect(await first).toBe('first');
    expect(await third).toBe('third');
    expect(queue.pending()).toBe(0);
  });

  it('after a command gave up waiting, the commands queued later still run one at a time', async () => {
    const queue = createStreamQueue({ windowMs: 1_000 });
    const order: string[] = [];
    const gate = () => {
      let open!: () => void;
      const opened = new Promise<void>((resolve) => (open = resolve));
      return { open, opened };
    };
    const firstGate = gate();
    const thirdGate = gate();
    const first = queue.run('s', undefined, () => firstGate.opened);
    await queue.run('s', undefined, async () => 'starved').catch(() => undefined);
    const third = queue.run('s', undefined, async () => {
      order.push('third starts');
      await thirdGate.opened;
      order.push('third ends');
    });
    firstGate.open();
    await first;
    await tick();
    expect(order).toEqual(['third starts']);
    const fourth = queue.run('s', undefined, async () => {
      order.push('fourth starts');
    });
    await tick();
    expect(order).toEqual(['third starts']);
    thirdGate.open();
    await Promise.all([third, fourth]);
    expect(order).toEqual(['third starts', 'third ends', 'fourth starts']);
  });

  it('decides again after a lost race on an unclaimed stream, gives a claimed conflict back as is, and counts re-decisions', async () => {
    const queue = createStreamQueue({ windowMs: 10_000 });
    let attempts = 0;
    const result = await queue.run('s', undefined, async () => {
      attempts++;
      if (attempts < 3) throw new WrongExpectedRevision('s', attempts, attempts + 1);
      return 'won';
    });
    expect(result).toBe('won');
    expect(attempts).toBe(3);
    expect(queue.redecided()).toBe(2);
    let claimedAttempts = 0;
    const conflict = await queue
      .run('s', 's', async () => {
        claimedAttempts++;
        throw new WrongExpectedRevision('s', 1, 2);
      })
      .catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(WrongExpectedRevision);
    expect(claimedAttempts).toBe(1);
    // A conflict on another stream than the claimed one (a merge's second stream) is decided again.
    let mergeAttempts = 0;
    expect(
      await queue.run('s', 's', async () => {
        mergeAttempts++;
        if (mergeAttempts === 1) throw new WrongExpectedRevision('other', 1, 2);
        return 'merged';
      }),
    ).toBe('merged');
    // Other errors are not retried.
    let failures = 0;
    await expect(
      queue.run('s', undefined, async () => {
        failures++;
        throw new Error('store down');
      }),
    ).rejects.toThrow('store down');
    expect(failures).toBe(1);
    expect(queue.redecided()).toBe(3);
  });

  it('gives up re-deciding as busy (contention) once the window has passed', async () => {
    const queue = createStreamQueue({ windowMs: 30 });
    let attempts = 0;
    const busy = await queue
      .run('s', undefined, async () => {
        attempts++;
        throw new WrongExpectedRevision('s', 0, 1);
      })
      .catch((e: unknown) => e);
    expect(busy).toMatchObject({
      reason: 'contention',
      stream: 's',
      retryAfterSeconds: 1,
      message: 's kept changing under this command for 30 ms; retry shortly.',
    });
    expect(attempts).toBeGreaterThan(1);
    expect(queue.pending()).toBe(0);
  });
});
