import type { FastifyRequest } from 'fastify';
import type { ReadModelQueries } from '../deps.ts';
import { ProblemError } from '../problems.ts';
import { scopeOf } from './viewer.ts';

/**
 * Audit queries for callers whose visibility is restricted and who are not auditors (an admin user
 * with `own` or `team`): a record's history or past state answers 404 outside their scope, as the
 * record itself does; company-wide audit queries (the event log, verification, the hash chain) are
 * refused, because the log would show records outside it. Auditors see every record's history.
 * A customer's subject access export follows the customer. Webhooks and bulk imports, which act on
 * every record, are refused to restricted callers.
 */
export const createScopeGuard =
  (queries: () => ReadModelQueries | undefined) =>
  async (request: FastifyRequest): Promise<void> => {
    const url = request.routeOptions.url;
    if (url === undefined) return;
    const scope = scopeOf(request);
    if (!scope) return;
    // Company-wide channels a restricted caller could read or write every record through: webhook
    // subscriptions export every event; a bulk import runs commands without record-level checks.
    if (url.startsWith('/webhooks') || (url === '/imports' && request.method === 'POST')) {
      throw new ProblemError('forbidden', 'Webhooks and bulk imports act on every record: they need visibility "all" (or a service key).', {});
    }
    // The subject access export (served by the audit routes) is a customer's record too.
    const subjectAccess = url === '/customers/:id/export';
    if (!url.startsWith('/audit/') && !subjectAccess) return;
    if (request.apiKey?.role === 'auditor') return;
    const params = (request.params ?? {}) as { stream?: string; kind?: string; id?: string };
    let kind: string | undefined;
    let id: string | undefined;
    if (url.startsWith('/audit/streams/:stream') && params.stream) {
      const dash = params.stream.indexOf('-');
      [kind, id] = dash > 0 ? [params.stream.slice(0, dash), params.stream.slice(dash + 1)] : [params.stream, ''];
    } else if (subjectAccess) {
      [kind, id] = ['customer', params.id];
    } else if (url === '/audit/state/:kind/:id') {
      kind = params.kind?.replace(/s$/, '');
      id = params.id;
    } else {
      throw new ProblemError('forbidden', 'Company-wide audit queries need visibility "all" or the auditor role; a record\'s own history is open to you.', {});
    }
    // Campaigns have no owner; users and teams are administration (admin-only already).
    if (kind === 'campaign' || kind === 'user' || kind === 'team') return;
    const read = queries();
    const found =
      !read || !id ? undefined
      : kind === 'customer' ? await read.getCustomer(id, scope)
      : kind === 'deal' ? await read.getDeal(id, scope)
      : kind === 'feedback' ? await read.getFeedback(id, scope)
      : undefined;
    if (!found) throw new ProblemError('not_found', `No ${params.stream ?? `${params.kind} ${params.id}`}.`);
  };
