import type { FastifyRequest } from 'fastify';
import type { ReadModelQueries } from '../deps.ts';
import { ProblemError } from '../problems.ts';
import { scopeOf } from './viewer.ts';
import { streamsInScope } from '../../projections/queries/scope.ts';
import type { ReadModelSource } from '../../projections/queries/page.ts';

/**
 * Audit queries for callers whose visibility is restricted and who are not auditors (an admin user
 * with `own` or `team`): a record's history or past state answers 404 outside their scope, as the
 * record itself does; the event log holds only the events of their scope's records (and of campaigns,
 * users and teams, which have no owner); verification and the hash chain, which span every record,
 * are refused. Auditors see every record's history.
 * A customer's subject access export follows the customer, but for auditors (it is that customer's history). Webhooks and bulk imports, which act on
 * every record, and changes to users, teams and keys, which decide what every key sees, are refused
 * to restricted callers.
 */
export const createScopeGuard =
  (queries: () => ReadModelQueries) =>
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
    // Administration decides who sees what: a restricted admin who could change users and teams or
    // create keys would widen their own scope (visibility "all", a service key) in one request.
    if (url.startsWith('/admin/') && request.method !== 'GET') {
      throw new ProblemError('forbidden', 'Users, teams and API keys decide what every key sees: changing them needs visibility "all" (or a service key).', {});
    }
    // The subject access export (served by the audit routes) is a customer's record too.
    const subjectAccess = url === '/customers/:id/export';
    if (!url.startsWith('/audit/') && !subjectAccess) return;
    // Auditors read every record's history, in clear as the audit routes give it to them: a subject
    // access export (that history, one customer's) is theirs too, whatever their visibility.
    if (request.apiKey?.role === 'auditor') return;
    const params = (request.params ?? {}) as { stream?: string; kind?: string; id?: string };
    let kind: string | undefined;
    let id: string | undefined;
    if (url.startsWith('/audit/streams/:stream') && params.stream) {
      const dash = params.stream.indexOf('-');
      [kind, id] = dash > 0 ? [params.stream.slice(0, dash), params.stream.slice(dash + 1)] : [params.stream, ''];
    } else if (subjectAccess) {
      [kind, id] = ['customer', params.id];
    } else if (url === '/audit/events' || url === '/audit/events/export') {
      // The log itself is filtered to the scope's streams by the route (auditWithin below).
      return;
    } else if (url === '/audit/state/:kind/:id') {
      kind = params.kind === 'activities' ? 'activity' : params.kind?.replace(/s$/, '');
      id = params.id;
    } else {
      throw new ProblemError('forbidden', 'Company-wide audit queries need visibility "all" or the auditor role; a record\'s own history is open to you.', {});
    }
    // Campaigns have no owner; users and teams are administration (admin-only already); exchange rates are company-wide.
    if (kind === 'campaign' || kind === 'user' || kind === 'team' || kind === 'exchangerate' || kind === 'exchangeRate') return;
    const read = queries();
    const found = !id
      ? undefined
      : kind === 'customer'
        ? await read.getCustomer(id, scope)
        : kind === 'deal'
          ? await read.getDeal(id, scope)
          : kind === 'feedback'
            ? await read.getFeedback(id, scope)
            : kind === 'activity'
              ? await read.getActivity(id, scope)
              : undefined;
    if (!found) throw new ProblemError('not_found', `No ${params.stream ?? `${kind} ${id}`}.`);
  };

/** Streams without an owner: every caller who may read the log sees them. */
const UNOWNED_STREAM_PREFIXES = ['campaign-', 'user-', 'team-'] as const;

/**
 * The event-log restriction of a caller (audit/history.ts `EventLogFilter.within`): undefined for
 * auditors and unrestricted callers, else the streams of their scope's records and the unowned ones.
 */
export const auditWithin = async (
  request: FastifyRequest,
  source: ReadModelSource,
): Promise<{ streams: readonly string[]; prefixes: readonly string[] } | undefined> => {
  const scope = scopeOf(request);
  if (!scope || request.apiKey?.role === 'auditor') return undefined;
  return { streams: await streamsInScope(source, scope), prefixes: UNOWNED_STREAM_PREFIXES };
};
