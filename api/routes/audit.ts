/**
 * The auditor's routes (owned by the audit toolkit, audit/). Registered by api/app.ts like every
 * route plugin; roles come from the matrix in api/roles.ts (`GET /audit/*`, `POST /audit/*`: admin
 * and auditor).
 *
 * NOTE for the HTTP engineer: this plugin also serves `GET /customers/:id/export` (the subject
 * access request export, roles admin, support and auditor in the matrix) — it lives here because
 * it is built by audit/subject-access.ts. Point-in-time reads (`GET /customers/:id?asOf=` and the
 * deal, campaign and feedback equivalents) stay in the query routes, through `ApiDeps.pointInTime`
 * (the composition root passes `audit.pointInTime`).
 *
 * Routes:
 * - GET  /audit/streams/:stream            one stream's history, paged (`?format=ndjson|csv` streams it all)
 * - GET  /audit/streams/:stream/export     the same as an NDJSON or CSV download
 * - GET  /audit/events                     the global log, filtered, paged by position
 * - GET  /audit/events/export              the filtered log as an NDJSON or CSV download
 * - GET  /audit/state/:kind/:id?asOf=      a record as it stood at an instant (record time)
 * - POST /audit/verify                     starts a verification job (202 + id); chains jobs take `anchors`
 * - GET  /audit/verify/:id                 its status, progress and result
 * - POST /audit/chain/seal                 seals the global hash chain now
 * - GET  /customers/:id/export             subject access request export
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { parseRecordKind } from '../../audit/as-of.ts';
import { auditEventToJson, type PersonalDataMode } from '../../audit/event-view.ts';
import { EXPORT_CONTENT_TYPES, exportStream, type ExportFormat } from '../../audit/export.ts';
import { eventLog, InvalidAuditQuery, iterateEventLog, iterateStreamHistory, streamHistory, streamNamed, type EventLogFilter } from '../../audit/history.ts';
import { ChainNotAvailable, parseChainAnchor, VerificationRunning, type AuditServices } from '../../audit/index.ts';
import { jsonSafe } from '../../audit/verification-jobs.ts';
import { Id } from '../../domain/shared.ts';
import { STREAM_NAME_PATTERN } from '../../eventstore/contract.ts';
import type { RouteContext } from '../route-context.ts';
import { auditWithin } from '../auth/scope-guard.ts';
import { acceptedFormat, AsOfInstant, AsOfTimeAxis, decimalNumber, IdParams, InstantQuery, varyByAccept } from '../http.ts';
import { ProblemError, problemResponses, validationProblem } from '../problems.ts';
import { seesPersonalData } from '../roles.ts';

const tags = ['audit'];
const errors = problemResponses(400, 401, 403, 404, 409, 429);

const Direction = z.enum(['forwards', 'backwards']).default('forwards');
const Format = z.enum(['json', 'ndjson', 'csv']).optional().describe('json (paged, default) or ndjson/csv (the whole selection, streamed)');
const ExportFormatQuery = z.enum(['ndjson', 'csv']).optional().describe('ndjson (default) or csv');
const PAGE_SIZE = 100;
const Limit = decimalNumber(z.number().int().min(1).max(1000))
  .optional()
  .describe(
    `Page size (1-1000, default ${PAGE_SIZE}); not with a streamed answer (format=ndjson|csv, or an Accept header asking for one), which holds the whole selection`,
  );

/**
 * A page size asked of a streamed answer (ndjson, csv: every match) is a 400 naming `limit`: a client
 * asking for two rows as CSV got the whole log.
 */
const pageSize = (limit: number | undefined, chosen: string): number => {
  if (chosen !== 'json' && limit !== undefined)
    throw validationProblem([
      { field: 'limit', in: 'query', message: `pages only the JSON answer; the ${chosen} answer streams every match: leave limit out, or ask for JSON` },
    ]);
  return limit ?? PAGE_SIZE;
};
const Cursor = z.string().min(1).max(40).optional().describe('`nextCursor` of the previous page');
/** A date alone means the whole day: from its first to its last millisecond (UTC). */

const StreamParams = z.strictObject({
  stream: z.string().regex(STREAM_NAME_PATTERN, 'a stream name `<aggregate>-<id>`, e.g. customer-<uuid>'),
});

const LogFilters = {
  actor: z.string().min(1).max(200).optional().describe('Stable id of the actor (a user id, `api-key:<uuid>`, ...), matched in any case'),
  type: z
    .union([z.string().min(1).max(2000), z.array(z.string().min(1).max(100)).max(50)])
    .optional()
    .describe('Event type(s), comma-separated or repeated'),
  stream: z.string().min(1).max(220).optional().describe('Exact stream name, or an aggregate (`deal` or `deal-`: every deal)'),
  from: InstantQuery.optional().describe('Record time from (inclusive), ISO 8601'),
  to: InstantQuery.optional().describe('Record time to (inclusive), ISO 8601; a date alone includes that whole day'),
  direction: Direction,
};

const AuditEventSchema = z
  .object({
    position: z.string().describe('Global position (decimal string)'),
    stream: z.string(),
    revision: z.number().int(),
    id: z.string(),
    type: z.string(),
    schemaVersion: z.number().int().nullable(),
    data: z.unknown(),
    actor: z.string().nullable().describe('Stable id of the actor (`api-key:<uuid>` for API clients); what `?actor=` filters on'),
    actorName: z.string().nullable().describe("The actor's name when the event was recorded (the API key's name)"),
    roles: z.array(z.string()),
    correlationId: z.string().nullable(),
    causationId: z.string().nullable(),
    command: z.string().nullable(),
    reason: z.string().nullable(),
    occurredAt: z.string().nullable().describe('Business time, in UTC'),
    occurredAtAsWritten: z
      .string()
      .nullable()
      .describe('The business time as the command gave it, where it named another offset (`2026-01-01T10:00:00+13:00`); null when it was in UTC'),
    recordedAt: z.string().describe('Record time'),
  })
  .meta({ id: 'AuditEvent' });
const AuditPage = z.object({ items: z.array(AuditEventSchema), nextCursor: z.string().nullable() });

/** As many anchors as a daily run keeps for about three years; each costs the check a lookup only. */
const MAX_ANCHORS = 1000;
const AnchorText = z
  .string()
  .max(120)
  .refine(
    (text) => parseChainAnchor(text) !== undefined,
    'an anchor `<position>:<64 hex digits>`, as a chains verification reports `headAnchor`, optionally followed by the ISO 8601 time it was taken',
  );

const VerifyBody = z
  .strictObject({
    kind: z.enum(['read_models', 'chains']).optional().describe('read_models (default): replay and compare; chains: recompute the hash chains'),
    chain: z.boolean().optional().describe('Shorthand for kind=chains (as `crm verify --chain`)'),
    anchors: z
      .array(AnchorText)
      .max(MAX_ANCHORS)
      .optional()
      .describe(
        `With kind chains (as \`crm verify --chain --anchor\`): global chain heads kept outside the database, \`<position>:<hash>\`, at most ${MAX_ANCHORS}. ` +
          'Each must still be on the chain: one that is not means the chain was re-hashed, and the job fails.',
      ),
  })
  .optional();

const personalDataMode = (request: FastifyRequest): PersonalDataMode => {
  const role = request.apiKey?.role;
  return role !== undefined && seesPersonalData(role) ? 'reveal' : 'mask';
};

/** Turns the audit module's typed refusals into problems naming the field. */
const asProblem = (error: unknown): unknown => {
  if (error instanceof InvalidAuditQuery) return validationProblem([{ field: error.field, message: error.message }]);
  if (error instanceof ChainNotAvailable) return new ProblemError('invalid_state', error.message);
  if (error instanceof VerificationRunning) return new ProblemError('invalid_state', error.message, { details: { running: error.id } });
  return error;
};
const guarded = async <T>(work: () => Promise<T>): Promise<T> => {
  try {
    return await work();
  } catch (error) {
    throw asProblem(error);
  }
};

const instant = (value: string | undefined, end: boolean): Date | undefined => {
  if (value === undefined) return undefined;
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) return new Date(`${value}T${end ? '23:59:59.999' : '00:00:00.000'}Z`);
  return new Date(value);
};

const logFilter = async (
  deps: AuditServices['deps'],
  query: { actor?: string; type?: string | string[]; stream?: string; from?: string; to?: string },
): Promise<EventLogFilter> => {
  const types =
    query.type === undefined
      ? undefined
      : [query.type]
          .flat()
          .flatMap((t) => t.split(','))
          .map((t) => t.trim())
          .filter(Boolean);
  // `type=,` or a blank one names no type: read as no filter, it widened to the whole log.
  if (types?.length === 0) throw validationProblem([{ field: 'type', in: 'query', message: 'names no event type: give one or more, separated by commas' }]);
  const from = instant(query.from, false);
  const to = instant(query.to, true);
  if (from && to && from > to) throw validationProblem([{ field: 'from', in: 'query', message: 'from must not be after to' }]);
  return {
    ...(query.actor !== undefined ? { actor: query.actor } : {}),
    ...(types ? { types } : {}),
    // A bare aggregate name (`deal`) means every stream of that aggregate (`deal-`).
    ...(query.stream !== undefined ? { stream: /^[a-z][a-z0-9_]*$/.test(query.stream) ? `${query.stream}-` : await streamNamed(deps, query.stream) } : {}),
    ...(from ? { from } : {}),
    ...(to ? { to } : {}),
  };
};

/** `?format=` wins; otherwise the Accept header (`acceptedFormat`), with `Vary: Accept` on the answer. */
const negotiate = <F extends 'json' | ExportFormat>(
  request: FastifyRequest,
  reply: FastifyReply,
  format: F | undefined,
  offered: readonly F[],
  fallback: F,
): F => {
  varyByAccept(reply);
  return format ?? acceptedFormat(request.headers.accept, offered, fallback);
};

const sendExport = (reply: FastifyReply, format: ExportFormat, name: string, events: AsyncIterable<Parameters<typeof auditEventToJson>[0]>) => {
  const file = `${name.replace(/[^A-Za-z0-9_.-]/g, '_')}.${format === 'csv' ? 'csv' : 'ndjson'}`;
  return reply
    .header('content-type', EXPORT_CONTENT_TYPES[format])
    .header('content-disposition', `attachment; filename="${file}"`)
    .header('cache-control', 'no-store')
    .send(exportStream(events, format));
};

const auditRoutes: FastifyPluginAsync<RouteContext> = async (instance, context) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const audit = context.deps.audit;
  const deps = audit.deps;
  /** The read models, for the scope of a restricted caller's event log. */
  const readSource = { db: context.deps.database.db, schema: context.deps.schemas.read };
  /** A restricted caller reading a campaign's history: the customers its responses name are withheld outside their scope. */
  const unownedWithin = async (request: FastifyRequest, stream: string) => (stream.startsWith('campaign-') ? auditWithin(request, readSource) : undefined);

  app.get(
    '/audit/streams/:stream',
    {
      schema: {
        operationId: 'readStream',
        tags,
        summary: "One stream's events in order, with actor, roles, correlation and causation ids, business and record time",
        description: 'Paged by revision. `format=ndjson|csv` (or an Accept header) streams the whole history instead.',
        params: StreamParams,
        querystring: z.strictObject({ limit: Limit, cursor: Cursor, direction: Direction, format: Format }),
        response: { 200: AuditPage.extend({ stream: z.string() }), ...errors },
      },
    },
    async (request, reply) => {
      const stream = await streamNamed(deps, request.params.stream);
      const { limit, cursor, direction, format } = request.query;
      const mode = personalDataMode(request);
      const within = await unownedWithin(request, stream);
      const chosen = negotiate(request, reply, format, ['json', 'ndjson', 'csv'], 'json');
      const size = pageSize(limit, chosen);
      if (chosen !== 'json') {
        // Validate the cursor, and that the stream exists, before the first byte goes out.
        const first = await guarded(() => streamHistory(deps, stream, { personalData: mode, limit: 1, direction, cursor: cursor ?? null }));
        if (first.items.length === 0 && cursor === undefined) throw new ProblemError('not_found', `No stream ${stream}.`);
        return sendExport(reply, chosen, stream, iterateStreamHistory(deps, stream, { personalData: mode, direction, cursor: cursor ?? null, within }));
      }
      const page = await guarded(() => streamHistory(deps, stream, { personalData: mode, limit: size, direction, cursor: cursor ?? null, within }));
      if (page.items.length === 0 && cursor === undefined) throw new ProblemError('not_found', `No stream ${stream}.`);
      return { stream, items: page.items.map(auditEventToJson), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/audit/streams/:stream/export',
    {
      schema: {
        operationId: 'exportStream',
        tags,
        summary: "One stream's whole history as NDJSON or CSV, streamed",
        params: StreamParams,
        querystring: z.strictObject({ format: ExportFormatQuery }),
        response: errors,
        streamedAnswer: {
          mediaTypes: ['application/x-ndjson', 'text/csv'],
          description: 'The events, one JSON object per line, or a header row then one event per line',
        },
      },
    },
    async (request, reply) => {
      const stream = await streamNamed(deps, request.params.stream);
      const chosen = negotiate(request, reply, request.query.format, ['ndjson', 'csv'], 'ndjson');
      // As the paged history: a mistyped stream is a 404, not a download holding nothing.
      if ((await streamHistory(deps, stream, { personalData: 'mask', limit: 1 })).items.length === 0)
        throw new ProblemError('not_found', `No stream ${stream}.`);
      const within = await unownedWithin(request, stream);
      return sendExport(reply, chosen, stream, iterateStreamHistory(deps, stream, { personalData: personalDataMode(request), within }));
    },
  );

  app.get(
    '/audit/events',
    {
      schema: {
        operationId: 'listEvents',
        tags,
        summary: 'The global event log, filtered by actor, type, stream and record time; each item carries its global position',
        description: 'Paged by position (`nextCursor`). `from`/`to` bound record time. `format=ndjson|csv` streams every match instead.',
        querystring: z.strictObject({ ...LogFilters, limit: Limit, cursor: Cursor, format: Format }),
        response: { 200: AuditPage, ...errors },
      },
    },
    async (request, reply) => {
      const { limit, cursor, direction, format, ...filters } = request.query;
      const filter = { ...(await logFilter(deps, filters)), within: await auditWithin(request, readSource) };
      const mode = personalDataMode(request);
      const chosen = negotiate(request, reply, format, ['json', 'ndjson', 'csv'], 'json');
      const size = pageSize(limit, chosen);
      if (chosen !== 'json') {
        // Validate the cursor before the first byte goes out.
        await guarded(() => eventLog(deps, { ...filter, direction, cursor: cursor ?? null, limit: 1, personalData: mode }));
        return sendExport(reply, chosen, 'events', iterateEventLog(deps, { ...filter, direction, cursor: cursor ?? null, personalData: mode }));
      }
      const page = await guarded(() => eventLog(deps, { ...filter, direction, limit: size, cursor: cursor ?? null, personalData: mode }));
      return { items: page.items.map(auditEventToJson), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/audit/events/export',
    {
      schema: {
        operationId: 'exportEvents',
        tags,
        summary: 'The filtered global log as NDJSON or CSV, streamed',
        querystring: z.strictObject({ ...LogFilters, format: ExportFormatQuery }),
        response: errors,
        streamedAnswer: {
          mediaTypes: ['application/x-ndjson', 'text/csv'],
          description: 'The events, one JSON object per line, or a header row then one event per line',
        },
      },
    },
    async (request, reply) => {
      const { format, direction, ...filters } = request.query;
      const chosen = negotiate(request, reply, format, ['ndjson', 'csv'], 'ndjson');
      return sendExport(
        reply,
        chosen,
        'events',
        iterateEventLog(deps, {
          ...(await logFilter(deps, filters)),
          within: await auditWithin(request, readSource),
          direction,
          personalData: personalDataMode(request),
        }),
      );
    },
  );

  app.get(
    '/audit/state/:kind/:id',
    {
      schema: {
        operationId: 'getRecordAt',
        tags,
        summary: 'A record as it stood at an instant, folded from its events, with the revision it reflects',
        description:
          '`asOf` is record time by default: what the CRM knew then (a back-dated event recorded later is not included). ' +
          'With `time=business` it is business time: every event that happened by then (`occurredAt`), imported history included. Defaults to now.',
        params: z.strictObject({
          kind: z.enum(['customer', 'customers', 'deal', 'deals', 'campaign', 'campaigns', 'feedback', 'activity', 'activities']),
          id: Id,
        }),
        querystring: z.strictObject({ asOf: AsOfInstant.optional(), time: AsOfTimeAxis }),
        response: { 200: z.looseObject({}), ...errors },
      },
    },
    async (request) => {
      const { kind, id } = request.params;
      const asOf = request.query.asOf ?? new Date().toISOString();
      const time = request.query.time ?? 'record';
      const found = await guarded(() => audit.stateAsOf(parseRecordKind(kind), id, asOf, { personalData: personalDataMode(request), time }));
      if (!found) throw new ProblemError('not_found', `No ${kind} ${id} as of ${asOf} (${time} time).`);
      return found as unknown as Record<string, unknown>;
    },
  );

  app.post(
    '/audit/verify',
    {
      schema: {
        operationId: 'startVerification',
        tags,
        summary: 'Start a verification in the background: read models against a replay (default), or the hash chains',
        description:
          'The chains alone cannot catch someone who can write to the database and re-hashes them after an edit. ' +
          'A finished chains job reports `result.headAnchor` (`<position>:<hash>`, the global chain head): keep it outside the database ' +
          'and give it back in `anchors`; the job then reports each anchor in `result.global.anchors` (`matched`, `status`) and fails ' +
          'when one is not on the chain as it stands. Given with the time it was taken (`<position>:<hash> <ISO 8601 time>`, as `crm verify --chain ' +
          '--anchors-file` keeps it), an anchor at a position the store holds no event at, with events after it recorded later than that, is reported ' +
          "as history lost to a restore written over since (`result.firstBroken.restoredAfter`: the last position the store's history keeps), " +
          'not as a rewrite; the job still fails. A request joins the job of its kind already running with the same anchors; ' +
          'while one runs with other anchors it is a 409 naming it.',
        body: VerifyBody,
        response: {
          202: z.object({ id: z.uuid(), kind: z.string(), status: z.string(), href: z.string() }),
          ...errors,
        },
        responseHeaders: { 202: ['location'] },
      },
    },
    async (request, reply) => {
      const body = request.body ?? {};
      if (body.chain === true && body.kind === 'read_models')
        throw validationProblem([{ field: 'chain', message: 'chain: true asks for kind chains, but kind says read_models' }]);
      const kind = body.chain === true ? 'chains' : (body.kind ?? 'read_models');
      // Each was checked by the schema.
      const anchors = (body.anchors ?? []).map((text) => parseChainAnchor(text)!);
      const { id, done } = await guarded(() => audit.startVerification(kind, request.apiKey?.name ?? request.apiKey?.id ?? null, { anchors }));
      done.catch((error: unknown) => request.log.error({ err: error }, 'verification job failed to record its outcome'));
      const href = `/audit/verify/${id}`;
      reply.code(202).header('location', href);
      return { id, kind, status: 'running', href };
    },
  );

  app.get(
    '/audit/verify/:id',
    {
      schema: {
        operationId: 'getVerification',
        tags,
        summary: "A verification's status (running, passed, failed, error, abandoned), progress and result",
        params: IdParams,
        response: { 200: z.looseObject({}), ...errors },
      },
    },
    async (request) => {
      const job = await (await audit.verificationJobs()).get(request.params.id);
      if (!job) throw new ProblemError('not_found', `No verification ${request.params.id}.`);
      return JSON.parse(JSON.stringify(job, jsonSafe)) as Record<string, unknown>;
    },
  );

  app.post(
    '/audit/chain/seal',
    {
      schema: {
        operationId: 'sealChain',
        tags,
        summary: 'Seal the global hash chain up to the final feed now (the projection process also does it every second)',
        response: { 200: z.object({ sealed: z.number().int() }), ...errors },
      },
    },
    async () => ({ sealed: await audit.sealChain() }),
  );

  app.get(
    '/customers/:id/export',
    {
      schema: {
        operationId: 'exportCustomerData',
        tags: ['customers', 'audit'],
        summary: 'Subject access request: everything held about one person (profile, events, read-model rows, analytics) as one JSON document',
        params: IdParams,
        response: { 200: z.looseObject({}), ...errors },
      },
    },
    async (request, reply) => {
      const found = await audit.subjectAccess(request.params.id);
      if (!found) throw new ProblemError('not_found', `No customer ${request.params.id}.`);
      reply.header('content-disposition', `attachment; filename="customer-${request.params.id}.json"`).header('cache-control', 'no-store');
      return found as unknown as Record<string, unknown>;
    },
  );
};

export default auditRoutes;
export { auditRoutes };
