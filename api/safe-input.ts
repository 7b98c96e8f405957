import type { FastifyRequest } from 'fastify';
import { isStorableText, STORABLE_TEXT_RULE } from '../domain/shared.ts';
import { validationProblem, type FieldError } from './problems.ts';

/** `+` is a space in a query string; everything else must be valid percent-encoded UTF-8. */
const decodes = (component: string): boolean => {
  try {
    decodeURIComponent(component.replaceAll('+', ' '));
    return true;
  } catch {
    return false;
  }
};

/** Parameter name as the client wrote it, decoded when it can be (the problem names it). */
const nameOf = (raw: string): string => {
  try {
    const name = decodeURIComponent(raw.replaceAll('+', ' '));
    return isStorableText(name) ? name : raw;
  } catch {
    return raw;
  }
};

/**
 * onRequest hook: a query parameter with NUL, an unpaired surrogate or bytes that are not UTF-8 is a
 * 400 naming the parameter; one without a name (`?=1`) is a 400 naming the query. Filters reach PostgreSQL as text parameters, which cannot hold any of
 * these ("invalid byte sequence for encoding UTF8: 0x00"); fastify's parser keeps an undecodable
 * escape such as `%ff` as the literal characters, so the raw query string is checked as well.
 */
export const refuseUnreadableQuery = async (request: FastifyRequest): Promise<void> => {
  const start = request.url.indexOf('?');
  if (start < 0) return;
  const errors: FieldError[] = [];
  for (const pair of request.url.slice(start + 1).split('&')) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    const rawName = equals < 0 ? pair : pair.slice(0, equals);
    const rawValue = equals < 0 ? '' : pair.slice(equals + 1);
    // `?=1`: there is no name to refuse it by (every route's parameters are named).
    if (rawName === '') errors.push({ field: 'query', message: 'a parameter without a name' });
    if (!decodes(rawName) || !decodes(rawValue)) errors.push({ field: nameOf(rawName), message: 'not valid percent-encoded UTF-8' });
  }
  for (const [name, value] of Object.entries((request.query ?? {}) as Record<string, unknown>)) {
    const values = Array.isArray(value) ? value : [value];
    if (!isStorableText(name) || values.some((v) => typeof v === 'string' && !isStorableText(v))) {
      errors.push({ field: isStorableText(name) ? name : 'query', message: STORABLE_TEXT_RULE });
    }
  }
  if (errors.length > 0) throw validationProblem(errors.map((e) => ({ ...e, in: 'query' })));
};
