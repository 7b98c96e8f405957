import { z } from 'zod';

export const Id = z.uuid();
export const IsoDateTime = z.iso.datetime({ offset: true });
/**
 * When a fact happened in the business (metadata.occurredAt), given on any command that records one,
 * e.g. to import history: the same schema as a purchase's `occurredAt`. Not in the future beyond a
 * small clock skew (checked by the command handler, which has the clock).
 */
export const BusinessTime = IsoDateTime;

type WithBusinessTime<S> = S extends z.ZodObject<infer Shape, infer Config> ? z.ZodObject<Omit<Shape, 'occurredAt'> & { occurredAt: z.ZodOptional<typeof BusinessTime> }, Config> : S;

/**
 * A command catalogue whose commands each accept `occurredAt` (business time), but those in `except`
 * (facts that can only happen now, such as forgetting a customer). Strictness and refinements are kept.
 */
export const withBusinessTime = <T extends Record<string, z.ZodObject>, X extends keyof T = never>(
  schemas: T,
  except: readonly X[] = [],
): { [K in keyof T]: K extends X ? T[K] : WithBusinessTime<T[K]> } =>
  Object.fromEntries(
    Object.entries(schemas).map(([type, schema]) => [type, except.includes(type as X) ? schema : schema.safeExtend({ occurredAt: BusinessTime.optional() })]),
  ) as never;
export const IsoDate = z.iso.date();
export const ShortText = z.string().trim().min(1).max(200);
export const LongText = z.string().max(10_000);
export const Tag = z.string().trim().min(1).max(50).regex(/^[\p{L}\p{N}_:.\- ]+$/u, 'letters, digits, space, _ : . -');

/** What a personal field reads as once its customer has been forgotten (crypto-shredded). */
export const ERASED = '[erased]';
