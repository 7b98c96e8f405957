import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { toProblem } from '../../api/errors.ts';
import { CommandsBusy } from '../../commands/index.ts';
import { invalidState, notFound, ruleViolated } from '../../domain/errors.ts';
import { EventStoreUnavailable, IdempotencyConflict, InvalidAppend, MasterKeyMismatch, WrongExpectedRevision } from '../../eventstore/errors.ts';
import { ReadModelStopped, ReadModelTimeout } from '../../projections/errors.ts';

const type = (suffix: string) => `https://crm.example/problems/${suffix}`;

describe('every error the API can meet maps to a problem', () => {
  it('maps domain refusals by kind, keeping the code and the field', () => {
    expect(toProblem(notFound('customer.not_found', 'No such customer')).body()).toMatchObject({
      status: 404,
      type: type('not-found'),
      code: 'customer.not_found',
    });
    expect(toProblem(invalidState('deal.terminal_stage', 'Deal is won')).body()).toMatchObject({
      status: 409,
      type: type('invalid-state'),
      code: 'deal.terminal_stage',
    });
    const rule = toProblem(ruleViolated('refund.exceeds_paid', 'Too much', 'amount')).body();
    expect(rule).toMatchObject({ status: 422, type: type('rule-violated'), code: 'refund.exceeds_paid', errors: [{ field: 'amount', message: 'Too much' }] });
  });

  it('maps store errors: conflicts with the current revision and ETag, idempotency, invalid appends, unavailability', () => {
    const conflict = toProblem(new WrongExpectedRevision('customer-1', 2, 5));
    expect(conflict.body()).toMatchObject({ status: 409, type: type('revision-conflict'), currentRevision: 5 });
    expect(conflict.headers.etag).toBe('"5"');
    // The detail names both revisions: the one the client sent in If-Match and the current one.
    expect(conflict.body()).toMatchObject({ expectedRevision: 2 });
    expect(conflict.message).toMatch(/If-Match named revision 2.*at revision 5/);
    expect(toProblem(new WrongExpectedRevision('customer-1', 2, -1)).status).toBe(404);
    expect(toProblem(new IdempotencyConflict('e', 's')).body()).toMatchObject({ status: 422, type: type('idempotency-conflict') });
    expect(toProblem(new InvalidAppend('payload_too_large', 'too big')).status).toBe(413);
    expect(toProblem(new InvalidAppend('invalid_stream_name', 'bad name')).status).toBe(400);
    const down = toProblem(new EventStoreUnavailable('Cannot reach PostgreSQL at db:5432'));
    expect(down.body()).toMatchObject({ status: 503, type: type('unavailable') });
    expect(down.message).not.toContain('db:5432'); // no infrastructure details to clients
    expect(down.headers['retry-after']).toBe('1');
    // To a command it says how to retry: a command of several steps may have recorded its first.
    const command = toProblem(new EventStoreUnavailable('Cannot reach PostgreSQL at db:5432'), { method: 'POST' } as FastifyRequest);
    expect(command.body()).toMatchObject({ status: 503, type: type('unavailable'), retrySafeWithIdempotencyKey: true });
    expect(command.message).toContain('same Idempotency-Key');
    expect(down.body()).not.toHaveProperty('retrySafeWithIdempotencyKey');
    // A process whose master key was rotated under it: unavailable until restarted, no key talk to clients.
    const rotated = toProblem(new MasterKeyMismatch('The master key was replaced (crm master-key rewrap) while this process ran'));
    expect(rotated.body()).toMatchObject({ status: 503, type: type('unavailable') });
    expect(rotated.message).not.toContain('rewrap');
    expect(rotated.headers['retry-after']).toBe('1');
  });

  it('maps a saturated command layer to 503 with Retry-After, never to a conflict', () => {
    for (const reason of ['queue_full', 'queue_wait', 'contention'] as const) {
      const busy = toProblem(new CommandsBusy(reason, 'customer-1', 3, 'busy'));
      expect(busy.body()).toMatchObject({ status: 503, type: type('unavailable') });
      expect(busy.headers['retry-after']).toBe('3');
    }
  });

  it('maps validation errors to fields, unknown keys included', () => {
    const schema = z.strictObject({ amount: z.number(), nested: z.strictObject({ when: z.string() }) });
    const result = schema.safeParse({ amount: 'x', nested: { when: 1 }, extra: true });
    const body = toProblem(result.error).body();
    expect(body.status).toBe(400);
    expect(body.errors?.map((e) => e.field).sort()).toEqual(['amount', 'extra', 'nested.when']);
  });

  it('maps a read-model timeout to 503 and anything unknown to a 500 that reveals nothing', () => {
    expect(toProblem(new ReadModelTimeout(10n, 100, [])).body()).toMatchObject({ status: 503, type: type('read-model-timeout') });
    const stopped = toProblem(new ReadModelStopped(10n, [{ name: 'deals', state: 'failed', position: 7n }]));
    expect(stopped.body()).toMatchObject({
      status: 503,
      code: 'read-model.stopped',
      details: { waitFor: '10', stopped: [{ name: 'deals', state: 'failed', position: '7' }] },
      detail: expect.stringMatching(/deals \(failed at 7\).*crm projections retry/),
    });
    expect(stopped.headers['retry-after']).toBe('30');
    const internal = toProblem(new Error('password=hunter2 in connection string'));
    expect(internal.status).toBe(500);
    expect(JSON.stringify(internal.body())).not.toContain('hunter2');
  });
});
