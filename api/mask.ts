import type { FastifyRequest } from 'fastify';
import { seesPersonalData } from './roles.ts';

/** What a personal field reads as for roles that may not see personal data (analysts). */
export const MASKED = '[masked]';

// `company` too: a sole trader's business name is their name.
export const CUSTOMER_PERSONAL_FIELDS = ['name', 'email', 'phone', 'company'] as const;
/** What the customer wrote, and the resolution, which quotes them (a record as it stood shows it). */
export const FEEDBACK_PERSONAL_FIELDS = ['subject', 'body', 'resolution'] as const;
/** What was said or is to be done: about the customer. */
export const ACTIVITY_PERSONAL_FIELDS = ['body'] as const;

/** Deep copy of `value` with every non-null value under one of `fields` replaced by MASKED. */
export const maskFields = <T>(value: T, fields: readonly string[]): T => {
  const names = new Set(fields);
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v === null || typeof v !== 'object' || v instanceof Date) return v;
    const out: Record<string, unknown> = {};
    for (const [k, inner] of Object.entries(v)) out[k] = names.has(k) && inner !== null && inner !== undefined ? MASKED : walk(inner);
    return out;
  };
  return walk(value) as T;
};

/** Masks `fields` when the caller's role may not see personal data; otherwise returns `value` untouched. */
export const forCaller = <T>(request: FastifyRequest, value: T, fields: readonly string[]): T => {
  const role = request.apiKey?.role;
  return role !== undefined && !seesPersonalData(role) ? maskFields(value, fields) : value;
};
