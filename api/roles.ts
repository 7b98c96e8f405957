import { ROLES, seesPersonalData, type Role } from '../domain/user/roles.ts';

/**
 * Who may call what: the single role matrix. The auth guard enforces it, `api/ROLES.md` is generated
 * from it (`npx tsx api/roles-doc.ts > api/ROLES.md`) and the tests loop over it.
 */
export { ROLES, seesPersonalData, type Role };

/** `public` routes need no key (probes, metrics scraping, the API description). */
export type Access = 'public' | readonly Role[];

export interface RouteRule {
  /** Fastify route pattern, `METHOD /path/:param`; a trailing `/*` matches a whole family (audit, analytics). */
  route: string;
  access: Access;
  /** One line for ROLES.md. */
  summary: string;
  /** The If-Match header is required (428 without it). */
  ifMatch?: 'required' | 'optional';
}

const ALL: readonly Role[] = ROLES;
const WRITE_CUSTOMERS: readonly Role[] = ['admin', 'sales', 'marketing', 'support'];
const SALES: readonly Role[] = ['admin', 'sales'];
const MARKETING: readonly Role[] = ['admin', 'marketing'];
const SUPPORT: readonly Role[] = ['admin', 'support'];
const ANALYTICS_READ: readonly Role[] = ['admin', 'sales', 'marketing', 'analyst', 'auditor'];
const AUDIT: readonly Role[] = ['admin', 'auditor'];
const INTEGRATION: readonly Role[] = ['admin'];

export const routeRules: readonly RouteRule[] = [
  // Ops and documentation.
  { route: 'GET /health', access: 'public', summary: 'liveness' },
  { route: 'GET /ready', access: 'public', summary: 'readiness: projections caught up within the bound' },
  { route: 'GET /metrics', access: 'public', summary: 'Prometheus metrics' },
  { route: 'GET /me', access: ALL, summary: "the caller's key, role, user, visibility and teams" },
  { route: 'GET /openapi.json', access: 'public', summary: 'OpenAPI 3.1 document' },
  { route: 'GET /docs/*', access: 'public', summary: 'Swagger UI' },
  { route: 'GET /docs', access: 'public', summary: 'Swagger UI' },
  { route: 'GET /', access: 'public', summary: 'web console (its screens are hash routes: /#/customers)' },
  { route: 'GET /console', access: 'public', summary: 'redirects to the web console at / (as do /console/ and /console/index.html)' },
  { route: 'GET /console/*', access: 'public', summary: 'web console assets' },
  // Customers.
  { route: 'POST /customers', access: WRITE_CUSTOMERS, summary: 'register a customer (body may carry a client-chosen id)' },
  { route: 'PATCH /customers/:id', access: WRITE_CUSTOMERS, summary: 'change contact details or marketing consent', ifMatch: 'required' },
  { route: 'POST /customers/:id/purchases', access: SALES, summary: 'record a purchase', ifMatch: 'optional' },
  { route: 'POST /customers/:id/refunds', access: ['admin', 'sales', 'support'], summary: 'refund part or all of a purchase', ifMatch: 'optional' },
  { route: 'POST /customers/:id/merge', access: SALES, summary: 'merge a duplicate into this customer', ifMatch: 'required' },
  { route: 'POST /customers/:id/forget', access: SUPPORT, summary: 'forget the customer (crypto-shredding)', ifMatch: 'optional' },
  { route: 'POST /customers/:id/tags', access: WRITE_CUSTOMERS, summary: 'tag the customer', ifMatch: 'optional' },
  { route: 'POST /customers/:id/untag', access: WRITE_CUSTOMERS, summary: 'remove a tag', ifMatch: 'optional' },
  { route: 'POST /customers/:id/deactivate', access: ['admin', 'sales', 'support'], summary: 'deactivate the customer', ifMatch: 'required' },
  { route: 'POST /customers/:id/reactivate', access: ['admin', 'sales', 'support'], summary: 'reactivate the customer', ifMatch: 'required' },
  { route: 'POST /customers/:id/owner', access: WRITE_CUSTOMERS, summary: 'assign the account owner (a user)', ifMatch: 'optional' },
  { route: 'GET /customers', access: ALL, summary: 'list, filter, search, sort, cursor' },
  { route: 'GET /customers/duplicates', access: ALL, summary: 'likely duplicates (same email, phone or name) for a merge' },
  { route: 'GET /customers/export', access: ALL, summary: 'every customer as CSV or NDJSON (masked for analysts)' },
  { route: 'GET /customers/:id', access: ALL, summary: 'one customer (also ?asOf=)' },
  { route: 'GET /customers/:id/timeline', access: ALL, summary: 'what happened to a customer' },
  { route: 'GET /customers/:id/export', access: ['admin', 'support', 'auditor'], summary: 'subject access request export' },
  { route: 'GET /purchases/export', access: ALL, summary: 'every purchase (order id, customer, amount, currency, business time) as CSV or NDJSON' },
  { route: 'GET /refunds/export', access: ALL, summary: 'every refund (refund id, order id, customer, amount, reason, time) as CSV or NDJSON' },
  // Deals.
  { route: 'POST /deals', access: SALES, summary: 'open a deal' },
  { route: 'PATCH /deals/:id', access: SALES, summary: 'change amount, owner, expected close, probability', ifMatch: 'required' },
  { route: 'POST /deals/:id/stage', access: SALES, summary: 'move to another open stage', ifMatch: 'required' },
  { route: 'POST /deals/:id/won', access: SALES, summary: 'mark won', ifMatch: 'required' },
  { route: 'POST /deals/:id/lost', access: SALES, summary: 'mark lost (reason required)', ifMatch: 'required' },
  { route: 'POST /deals/:id/reopen', access: SALES, summary: 'reopen a won or lost deal', ifMatch: 'required' },
  { route: 'GET /deals', access: ALL, summary: 'list deals' },
  { route: 'GET /deals/export', access: ALL, summary: 'every deal as CSV or NDJSON' },
  { route: 'GET /deals/:id', access: ALL, summary: 'one deal' },
  { route: 'GET /pipeline', access: ALL, summary: 'pipeline summary by stage, owner, close month' },
  // Campaigns.
  { route: 'POST /campaigns', access: MARKETING, summary: 'create a campaign' },
  ...(['schedule', 'launch', 'pause', 'resume', 'complete', 'cancel'] as const).map((action): RouteRule => ({
    route: `POST /campaigns/:id/${action}`,
    access: MARKETING,
    summary: `${action} the campaign`,
    ifMatch: 'required',
  })),
  { route: 'POST /campaigns/:id/costs', access: MARKETING, summary: 'record a cost', ifMatch: 'optional' },
  { route: 'POST /campaigns/:id/cost-corrections', access: MARKETING, summary: 'correct a recorded cost (0 voids it), with a reason', ifMatch: 'optional' },
  { route: 'POST /campaigns/:id/responses', access: MARKETING, summary: "record a customer's response", ifMatch: 'optional' },
  { route: 'GET /campaigns', access: ALL, summary: 'list campaigns' },
  { route: 'GET /campaigns/export', access: ALL, summary: 'every campaign (status, times, segment, figures) as CSV or NDJSON' },
  { route: 'GET /responses/export', access: ALL, summary: 'every campaign response (campaign, customer, kind, revenue, time) as CSV or NDJSON' },
  {
    route: 'GET /costs/export',
    access: ALL,
    summary:
      'every campaign cost (campaign, cost id, amount, description, time) as CSV or NDJSON; a corrected cost at its current amount, a voided one left out',
  },
  { route: 'GET /campaigns/:id', access: ALL, summary: 'one campaign' },
  // Feedback.
  { route: 'POST /feedback', access: SUPPORT, summary: 'submit feedback' },
  ...(['assign', 'escalate', 'resolve', 'reopen', 'close'] as const).map((action): RouteRule => ({
    route: `POST /feedback/:id/${action}`,
    access: SUPPORT,
    summary: `${action} the feedback`,
    ifMatch: 'required',
  })),
  { route: 'POST /feedback/:id/respond', access: SUPPORT, summary: 'respond to the customer', ifMatch: 'optional' },
  { route: 'POST /feedback/:id/rating', access: SUPPORT, summary: "record the customer's rating of the resolution", ifMatch: 'optional' },
  { route: 'GET /feedback', access: ALL, summary: 'list feedback' },
  { route: 'GET /feedback/export', access: ALL, summary: 'every feedback item as CSV or NDJSON (masked for analysts)' },
  { route: 'GET /feedback/:id', access: ALL, summary: 'one feedback item' },
  // Activities: every role that works with customers logs notes, calls, meetings and tasks on them;
  // on deals, those who may change deals. Whoever may log may correct and complete (there are no
  // per-user records here); analysts read them with the body masked.
  { route: 'POST /customers/:id/activities', access: WRITE_CUSTOMERS, summary: 'log a note, call, meeting or task on a customer' },
  { route: 'POST /deals/:id/activities', access: SALES, summary: 'log a note, call, meeting or task on a deal' },
  { route: 'PATCH /activities/:id', access: WRITE_CUSTOMERS, summary: 'change subject, body, due time or assignee', ifMatch: 'required' },
  { route: 'POST /activities/:id/complete', access: WRITE_CUSTOMERS, summary: 'complete a task', ifMatch: 'optional' },
  { route: 'GET /customers/:id/activities', access: ALL, summary: "a customer's activities (body masked for analysts)" },
  { route: 'GET /deals/:id/activities', access: ALL, summary: "a deal's activities (body masked for analysts)" },
  { route: 'GET /activities', access: ALL, summary: 'activities by assignee; ?assigneeId=me&open=true: my open tasks, overdue first' },
  { route: 'GET /activities/:id', access: ALL, summary: 'one activity (also ?asOf=)' },
  { route: 'GET /activities/export', access: ALL, summary: 'every activity as CSV or NDJSON (body masked for analysts)' },
  // Exchange rates to the base currency: every figure in the base currency depends on them, so only admins set them.
  { route: 'POST /exchange-rates', access: ['admin'], summary: 'set or correct the rate of a currency from a business time' },
  { route: 'GET /exchange-rates', access: ALL, summary: 'the rates valid at ?at=, or every rate and correction of ?currency=' },
  { route: 'GET /exchange-rates/export', access: ALL, summary: 'the rates in force as a rates file (crm import-rates), CSV or NDJSON' },
  // Bulk import (api/routes/imports.ts): each kind also checks the roles of its command.
  { route: 'POST /imports', access: WRITE_CUSTOMERS, summary: 'import a CSV or NDJSON file (the roles of the matching command)' },
  { route: 'GET /imports/:id', access: WRITE_CUSTOMERS, summary: "progress and bad-row report of one's own import" },
  // Analytics (served by api/routes/analytics.ts).
  { route: 'POST /analytics/models', access: ['admin', 'analyst'], summary: 'fit every model' },
  { route: 'GET /analytics/*', access: ANALYTICS_READ, summary: 'analytics figures and fitted models' },
  // The support desk's own figures: counts and rates by period, channel or kind, naming no customer.
  { route: 'GET /analytics/satisfaction', access: [...ANALYTICS_READ, 'support'], summary: 'CSAT and NPS by period or channel' },
  // Audit (served by api/routes/audit.ts).
  { route: 'POST /audit/*', access: AUDIT, summary: 'start a verification, seal the hash chain' },
  { route: 'GET /audit/*', access: AUDIT, summary: 'history, exports, verification results' },
  // Integration: webhook subscriptions (integration/). Admin only: a subscription exports events, personal data included for non-analyst roles.
  { route: 'POST /webhooks', access: INTEGRATION, summary: 'subscribe a URL to integration events (secret shown once)' },
  { route: 'GET /webhooks', access: INTEGRATION, summary: 'list webhook subscriptions and their delivery state' },
  { route: 'GET /webhooks/event-types', access: INTEGRATION, summary: 'the integration event types and their fields' },
  { route: 'GET /webhooks/:id', access: INTEGRATION, summary: 'one webhook subscription' },
  { route: 'PATCH /webhooks/:id', access: INTEGRATION, summary: 'change url, events; enable, disable, resume' },
  { route: 'DELETE /webhooks/:id', access: INTEGRATION, summary: 'delete a webhook subscription' },
  { route: 'GET /webhooks/:id/deliveries', access: INTEGRATION, summary: 'recent delivery attempts' },
  { route: 'POST /webhooks/:id/replay', access: INTEGRATION, summary: 'deliver again from a position' },
  { route: 'POST /webhooks/:id/rotate-secret', access: INTEGRATION, summary: 'replace the signing secret (new one shown once)' },
  // Administration.
  { route: 'POST /admin/api-keys', access: ['admin'], summary: 'create an API key (shown once)' },
  { route: 'GET /admin/api-keys', access: AUDIT, summary: 'list API keys (never their secrets): who created and revoked each, and when' },
  { route: 'DELETE /admin/api-keys/:id', access: ['admin'], summary: 'revoke an API key' },
  { route: 'POST /admin/teams', access: ['admin'], summary: 'create a team' },
  { route: 'GET /admin/teams', access: ['admin'], summary: 'list teams and their members' },
  { route: 'PATCH /admin/teams/:id', access: ['admin'], ifMatch: 'optional', summary: 'rename a team' },
  { route: 'POST /admin/users', access: ['admin'], summary: 'register a user (role, teams, visibility own/team/all)' },
  { route: 'GET /admin/users', access: ['admin'], summary: 'list users' },
  { route: 'GET /admin/users/:id', access: ['admin'], summary: 'one user' },
  { route: 'PATCH /admin/users/:id', access: ['admin'], summary: "change a user's details, role, teams, visibility; deactivate", ifMatch: 'optional' },
];

const exact = new Map(routeRules.filter((r) => !r.route.endsWith('/*')).map((r) => [r.route, r]));
const families = routeRules.filter((r) => r.route.endsWith('/*')).map((r) => ({ prefix: r.route.slice(0, -1), rule: r }));

/**
 * The rule for a registered route (`POST`, `/deals/:id/won`). Routes the matrix does not name are
 * admin-only, so a route added without a rule is closed rather than open.
 */
export const ruleFor = (method: string, url: string): RouteRule => {
  // HEAD is answered by the GET route and follows its rule.
  const verb = method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase();
  // CORS preflights carry no credentials; @fastify/cors answers them.
  if (verb === 'OPTIONS') return { route: `OPTIONS ${url}`, access: 'public', summary: 'CORS preflight' };
  const key = `${verb} ${url}`;
  const found = exact.get(key) ?? families.find((f) => key.startsWith(f.prefix))?.rule;
  return found ?? { route: key, access: ['admin'], summary: '(not in the matrix: admin only)' };
};

export const isAllowed = (rule: RouteRule, role: Role | undefined): boolean => rule.access === 'public' || (role !== undefined && rule.access.includes(role));
