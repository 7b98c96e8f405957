import { randomUUID } from 'node:crypto';
import type { CrmEvent } from '../../domain/catalogue.ts';
import type { ProjectedEvent } from '../../projections/projection.ts';

let position = 0n;

/** A decoded event as the runner would hand it to a projection. */
export function projected(event: CrmEvent, occurredAt: string): ProjectedEvent {
  position += 1n;
  return {
    event,
    id: randomUUID(),
    stream: 'test',
    revision: 0,
    position,
    recordedAt: new Date(occurredAt),
    metadata: {
      actor: { userId: 'tester', roles: ['admin'] },
      correlationId: 'c',
      causationId: null,
      occurredAt,
      schemaVersion: 1,
      command: 'Test',
    },
  };
}

export const purchase = (customerId: string, orderId: string, amount: number, at: string) =>
  projected({ type: 'PurchaseRecorded', data: { customerId, orderId, amount, currency: 'EUR' } }, at);

export const refund = (customerId: string, orderId: string, amount: number, at: string) =>
  projected({ type: 'PurchaseRefunded', data: { customerId, orderId, refundId: `r-${orderId}-${at}`, amount, currency: 'EUR', reason: null } }, at);

export const registered = (customerId: string, at: string) =>
  projected(
    { type: 'CustomerRegistered', data: { customerId, name: 'x', email: 'x@example.com', phone: null, company: null, tags: [], source: null, marketingConsent: true } },
    at,
  );
