import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { eventSchemas } from '../../domain/catalogue.ts';
import { ERASED } from '../../domain/shared.ts';
import {
  matchesPatterns,
  patternMatchesSomething,
  PUBLIC_EVENT_TYPE_NAMES,
  PUBLIC_EVENT_TYPES,
  publicFields,
  toIntegrationEvent,
} from '../../integration/envelope.ts';
import { newWebhookSecret, signWebhook } from '../../integration/signing.ts';
import { DEFAULT_DELIVERY_POLICY, retryDelay } from '../../integration/webhook-loop.ts';
import type { ProjectedEvent } from '../../projections/projection.ts';
import { verifySignature } from './support.ts';

const projected = (type: string, data: Record<string, unknown>, stream = 'customer-c1'): ProjectedEvent =>
  ({
    event: { type, data },
    id: randomUUID(),
    stream,
    revision: 0,
    position: 2n ** 60n + 7n,
    recordedAt: new Date('2026-03-01T10:00:00.000Z'),
    metadata: { occurredAt: '2026-03-01T09:59:00.000Z' },
  }) as unknown as ProjectedEvent;

describe('integration envelope', () => {
  it('maps every internal event type to a documented public type', () => {
    expect(PUBLIC_EVENT_TYPE_NAMES.sort()).toEqual(Object.keys(eventSchemas).sort());
    for (const type of PUBLIC_EVENT_TYPE_NAMES) {
      for (const field of PUBLIC_EVENT_TYPES[type].personal) expect(publicFields(type), `${type}.${field}`).toContain(field);
    }
  });

  it('carries the envelope fields, the position as an exact decimal string, and personal data by role', () => {
    const e = projected('CustomerRegistered', { customerId: 'c1', name: 'Ada', email: 'ada@example.com', phone: null, company: 'ACME' });
    const admin = toIntegrationEvent(e, 'admin');
    expect(admin).toEqual({
      id: e.id,
      type: 'CustomerRegistered',
      version: 1,
      occurredAt: '2026-03-01T09:59:00.000Z',
      recordedAt: '2026-03-01T10:00:00.000Z',
      position: (2n ** 60n + 7n).toString(),
      aggregate: { kind: 'customer', id: 'c1' },
      revision: 0,
      data: { customerId: 'c1', name: 'Ada', email: 'ada@example.com', phone: null, company: 'ACME' },
    });
    // The stream revision as recorded: consecutive per aggregate, where positions are sparse.
    expect(toIntegrationEvent({ ...e, revision: 41 }, 'admin').revision).toBe(41);
    expect(toIntegrationEvent(e, 'analyst').data).toEqual({ customerId: 'c1', name: '[masked]', email: '[masked]', phone: null, company: '[masked]' });
    // A business time the client wrote with its offset goes out in UTC, as recordedAt does.
    const offset = { ...e, metadata: { occurredAt: '2026-03-01T11:59:00+02:00' } } as ProjectedEvent;
    expect(toIntegrationEvent(offset, 'admin').occurredAt).toBe('2026-03-01T09:59:00.000Z');
    const forgotten = projected('FeedbackSubmitted', { feedbackId: 'f1', customerId: 'c1', subject: ERASED, body: ERASED }, 'feedback-f1');
    expect(toIntegrationEvent(forgotten, 'support').data).toMatchObject({ subject: ERASED, body: ERASED });
    expect(toIntegrationEvent(forgotten, 'analyst').aggregate).toEqual({ kind: 'feedback', id: 'f1' });
    // A rating's comment is the customer's own words: masked like the feedback's body (it was sent as written).
    const rated = projected('FeedbackRated', { feedbackId: 'f1', customerId: 'c1', csat: 2, comment: 'Jane Roe, call me on +44 7700 900123' }, 'feedback-f1');
    expect(toIntegrationEvent(rated, 'analyst').data).toEqual({ feedbackId: 'f1', customerId: 'c1', csat: 2, comment: '[masked]' });
    expect(toIntegrationEvent(rated, 'support').data).toMatchObject({ comment: 'Jane Roe, call me on +44 7700 900123' });
    // A rating recorded before the field existed names no customer: as stored.
    expect(toIntegrationEvent(projected('FeedbackRated', { feedbackId: 'f1', csat: 3, comment: null }, 'feedback-f1'), 'analyst').data).toEqual({
      feedbackId: 'f1',
      csat: 3,
      comment: null,
    });
  });

  it('sends the instants of the data in UTC, as the API answers them, and leaves dates and text as they are', () => {
    const rate = toIntegrationEvent(
      projected('ExchangeRateSet', { currency: 'CHF', rate: 1.05, validFrom: '2025-03-01T12:00:00+02:00', reason: 'at 2025-03-01T12:00:00+02:00' }),
      'admin',
    );
    expect(rate.data).toEqual({ currency: 'CHF', rate: 1.05, validFrom: '2025-03-01T10:00:00.000Z', reason: 'at 2025-03-01T12:00:00+02:00' });
    const scheduled = toIntegrationEvent(
      projected('CampaignScheduled', { campaignId: 'k1', startsAt: '2027-01-01T09:00:00+05:30', endsAt: null }, 'campaign-k1'),
      'analyst',
    );
    expect(scheduled.data).toEqual({ campaignId: 'k1', startsAt: '2027-01-01T03:30:00.000Z', endsAt: null });
    const created = toIntegrationEvent(
      projected('CampaignCreated', { campaignId: 'k1', schedule: { startsAt: '2027-02-01T00:00:00-08:00', endsAt: '2027-03-01T00:00:00Z' } }, 'campaign-k1'),
      'admin',
    );
    expect(created.data.schedule).toEqual({ startsAt: '2027-02-01T08:00:00.000Z', endsAt: '2027-03-01T00:00:00.000Z' });
    const deal = toIntegrationEvent(projected('DealOpened', { dealId: 'd1', expectedCloseDate: '2027-01-31' }, 'deal-d1'), 'admin');
    expect(deal.data.expectedCloseDate).toBe('2027-01-31');
  });

  it('matches subscription patterns: exact, prefix with *, everything', () => {
    expect(matchesPatterns(['PurchaseRecorded'], 'PurchaseRecorded')).toBe(true);
    expect(matchesPatterns(['PurchaseRecorded'], 'PurchaseRefunded')).toBe(false);
    expect(matchesPatterns(['Deal*'], 'DealWon')).toBe(true);
    expect(matchesPatterns(['Deal*'], 'CustomerRegistered')).toBe(false);
    expect(matchesPatterns(['*'], 'FeedbackRated')).toBe(true);
    expect(patternMatchesSomething('Dael*')).toBe(false);
  });
});

describe('Standard Webhooks signing', () => {
  it('matches the Standard Webhooks reference vector', () => {
    const headers = signWebhook(['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}');
    expect(headers['webhook-signature']).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('signs id.timestamp.body with the decoded secret; any change breaks it', () => {
    const secret = newWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const h = signWebhook([secret], 'e1', 1_700_000_000.9, '{"a":1}');
    expect(h['webhook-timestamp']).toBe('1700000000');
    const received = { id: h['webhook-id'], timestamp: h['webhook-timestamp'], signature: h['webhook-signature'], body: '{"a":1}' };
    expect(verifySignature(secret, received)).toBe(true);
    expect(verifySignature(secret, { ...received, body: '{"a":2}' })).toBe(false);
    expect(verifySignature(secret, { ...received, timestamp: '1700000001' })).toBe(false);
    expect(verifySignature(newWebhookSecret(), received)).toBe(false);
    // A secret of another form is a mistake, never a key: refused, not used as base64.
    expect(() => signWebhook(['c2VjcmV0'], 'e1', 1_700_000_000, '{}')).toThrow('A webhook secret starts with whsec_');
  });

  it('signs with each secret of a rotation, the new one first, separated by a space: either secret verifies', () => {
    const [next, previous] = [newWebhookSecret(), newWebhookSecret()];
    const h = signWebhook([next, previous], 'e1', 1_700_000_000, '{"a":1}');
    const signatures = h['webhook-signature'].split(' ');
    expect(signatures).toHaveLength(2);
    expect(signatures[0]).toBe(signWebhook([next], 'e1', 1_700_000_000, '{"a":1}')['webhook-signature']);
    expect(signatures[1]).toBe(signWebhook([previous], 'e1', 1_700_000_000, '{"a":1}')['webhook-signature']);
    const received = { id: 'e1', timestamp: h['webhook-timestamp'], signature: h['webhook-signature'], body: '{"a":1}' };
    expect(verifySignature(next, received)).toBe(true);
    expect(verifySignature(previous, received)).toBe(true);
    expect(verifySignature(newWebhookSecret(), received)).toBe(false);
  });
});

describe('retry back-off', () => {
  it('doubles from the first delay up to the cap, with jitter between half and the full delay', () => {
    const p = { ...DEFAULT_DELIVERY_POLICY, firstRetryMs: 1_000, maxRetryMs: 60_000 };
    expect(retryDelay(p, 1, () => 1)).toBe(1_000);
    expect(retryDelay(p, 1, () => 0)).toBe(500);
    expect(retryDelay(p, 4, () => 1)).toBe(8_000);
    expect(retryDelay(p, 30, () => 1)).toBe(60_000);
    for (let i = 0; i < 100; i++) {
      const d = retryDelay(p, 3);
      expect(d).toBeGreaterThanOrEqual(2_000);
      expect(d).toBeLessThanOrEqual(4_000);
    }
  });
});
