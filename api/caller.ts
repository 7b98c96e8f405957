import type { FastifyRequest } from 'fastify';

/**
 * The user the caller's API key belongs to, or null when the key belongs to no user (a service key).
 * Read in one place so that `ApiKeyRecord.userId` (users and teams) is one line to adopt.
 */
export const callerUserId = (request: FastifyRequest): string | null =>
  (request.apiKey as { userId?: string | null } | null | undefined)?.userId ?? null;
