import { z } from 'zod';
import { IsoDateTime, SafeText } from './shared.ts';

/** Who issued a command. Roles are the API roles (admin, sales, marketing, support, analyst, auditor, system). */
export const Actor = z.object({
  userId: SafeText.min(1).max(200),
  /** What the actor is called at the time (an API key's name), for people reading the history; `userId` stays the stable id. */
  name: SafeText.min(1).max(200).optional(),
  roles: z.array(SafeText.min(1).max(50)).max(20),
});
export type Actor = z.infer<typeof Actor>;

/**
 * Metadata stored with every event (invariant 2). The event id itself is the store's `id`.
 * `occurredAt` is business time; the store adds record time separately.
 */
export const EventMetadata = z.object({
  actor: Actor,
  correlationId: SafeText.min(1).max(200),
  causationId: SafeText.min(1).max(200).nullable(),
  occurredAt: IsoDateTime,
  schemaVersion: z.number().int().positive(),
  /** The command that produced the event, e.g. `RecordPurchase`. */
  command: SafeText.min(1).max(100),
  idempotencyKey: SafeText.min(1).max(200).optional(),
  /** Hash of the command as validated, so a key reused for a different request is told apart from a retry. */
  commandHash: SafeText.min(1).max(100).optional(),
  /** Why, in the actor's words (auditors read it). */
  reason: SafeText.max(2000).optional(),
});
export type EventMetadata = z.infer<typeof EventMetadata>;
