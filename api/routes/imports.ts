import type { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { encodingExamples, importEncodingNamed } from '../../commands/import/encoding.ts';
import type { ImportJobs } from '../../commands/import/jobs.ts';
import { importKinds, type ImportedCommandType, type ImportKind } from '../../commands/import/rows.ts';
import type { CommandType } from '../../commands/schemas.ts';
import type { RouteContext } from '../route-context.ts';
import { callerRole } from '../auth/guard.ts';
import { scopeOf } from '../auth/viewer.ts';
import { actorOfKey, IdParams } from '../http.ts';
import { ProblemError, problemResponses, validationProblem } from '../problems.ts';
import { contentCodingRefused } from '../content-coding.ts';
import { isAllowed, ruleFor, type Role } from '../roles.ts';

/**
 * `POST /imports?kind=...` (CSV or NDJSON body, streamed to disk, bounded) and `GET /imports/:id`.
 * A kind may be imported by the roles that may send its command one at a time.
 */

/** The command every row of a kind starts with, and its route, whose roles an import of that kind takes. */
const firstCommandOf = {
  customers: { type: 'RegisterCustomer', route: ['POST', '/customers'] },
  purchases: { type: 'RecordPurchase', route: ['POST', '/customers/:id/purchases'] },
  refunds: { type: 'RefundPurchase', route: ['POST', '/customers/:id/refunds'] },
  deals: { type: 'OpenDeal', route: ['POST', '/deals'] },
  campaigns: { type: 'CreateCampaign', route: ['POST', '/campaigns'] },
  responses: { type: 'RecordCampaignResponse', route: ['POST', '/campaigns/:id/responses'] },
  costs: { type: 'RecordCampaignCost', route: ['POST', '/campaigns/:id/costs'] },
  feedback: { type: 'SubmitFeedback', route: ['POST', '/feedback'] },
  // The stricter of the two routes (on a deal: sales), whichever parent the rows name.
  activities: { type: 'LogActivity', route: ['POST', '/deals/:id/activities'] },
} as const satisfies Record<ImportKind, { type: ImportedCommandType; route: readonly [string, string] }>;

/**
 * The routes of the commands a row may become after its first (an inactive customer is also
 * deactivated, a won deal won, resolved feedback resolved): a row whose command the caller's role
 * may not send one at a time is refused, so an import never grants more than the API does.
 */
const laterCommandRoutes: Record<Exclude<ImportedCommandType, (typeof firstCommandOf)[ImportKind]['type']>, readonly [string, string]> = {
  DeactivateCustomer: ['POST', '/customers/:id/deactivate'],
  WinDeal: ['POST', '/deals/:id/won'],
  LoseDeal: ['POST', '/deals/:id/lost'],
  ScheduleCampaign: ['POST', '/campaigns/:id/schedule'],
  LaunchCampaign: ['POST', '/campaigns/:id/launch'],
  PauseCampaign: ['POST', '/campaigns/:id/pause'],
  CompleteCampaign: ['POST', '/campaigns/:id/complete'],
  CancelCampaign: ['POST', '/campaigns/:id/cancel'],
  AssignFeedback: ['POST', '/feedback/:id/assign'],
  RespondToFeedback: ['POST', '/feedback/:id/respond'],
  ResolveFeedback: ['POST', '/feedback/:id/resolve'],
  CloseFeedback: ['POST', '/feedback/:id/close'],
  RateFeedback: ['POST', '/feedback/:id/rating'],
  ReopenFeedback: ['POST', '/feedback/:id/reopen'],
  CompleteActivity: ['POST', '/activities/:id/complete'],
};

/** Why `role` may not send a command of `type` in an import of `kind`, if it may not. */
const forbiddenFor =
  (kind: ImportKind, role: Role | undefined) =>
  (type: CommandType): string | undefined => {
    if (type === firstCommandOf[kind].type) return undefined;
    const route = (laterCommandRoutes as Partial<Record<CommandType, readonly [string, string]>>)[type];
    if (!route) return `row: ${type} is not sent by an import of ${kind}`;
    const rule = ruleFor(...route);
    return isAllowed(rule, role) ? undefined : `row: the ${role} role may not ${rule.summary} (as for ${rule.route}); leave that column out`;
  };

const FORMATS: Record<string, 'csv' | 'ndjson'> = {
  'text/csv': 'csv',
  // What a browser on Windows with Excel installed sends for a .csv file it uploads.
  'application/vnd.ms-excel': 'csv',
  // A .tsv file: the delimiter is told from the header, as for any CSV.
  'text/tab-separated-values': 'csv',
  'application/x-ndjson': 'ndjson',
  'application/ndjson': 'ndjson',
  'application/jsonl': 'ndjson',
};

const ImportQuery = z.strictObject({
  kind: z.enum(importKinds),
  defaultOwner: z
    .uuid()
    .optional()
    .describe(
      "The user (an active one) who owns the customers and deals whose row leaves owner_id empty. Default: the key's user; a service key has none, and its deal rows without owner_id are refused.",
    ),
});

/** An upload refused part way: the rest of the body is not read, so the connection ends with the answer. */
const CLOSE = { connection: 'close' };

/** The import format a Content-Type names (its media type, any case), if it names one. */
const formatOf = (contentType: string | undefined): 'csv' | 'ndjson' | undefined => FORMATS[(contentType ?? '').split(';')[0]!.trim().toLowerCase()];

/**
 * Refuses, before anything parses the body, a body the import cannot read as sent: a type that is no
 * CSV or NDJSON (the app's JSON parser answered a file sent as application/json with 400 "not valid
 * JSON", and one with no type with a 415 asking for JSON), or a compressed one (its bytes were read as
 * the file). The body is not read, so the connection ends with the answer.
 */
const refuseUnreadableBody = async (request: FastifyRequest): Promise<void> => {
  if (!formatOf(request.headers['content-type'])) {
    throw new ProblemError(
      'unsupported_media_type',
      `Send the file as ${Object.keys(FORMATS).join(', ')}.`,
      {
        errors: [{ field: 'content-type', message: Object.keys(FORMATS).join(', ') }],
      },
      CLOSE,
    );
  }
  const compressed = contentCodingRefused(request.headers, 'the file', CLOSE);
  if (compressed) throw compressed;
};

const ImportCounts = z.object({
  kind: z.enum(importKinds).optional(),
  rows: z.number(),
  imported: z.number(),
  alreadyPresent: z.number(),
  rejected: z.number(),
});

const ImportJobSchema = z.object({
  id: z.string(),
  kind: z.enum(importKinds),
  format: z.enum(['csv', 'ndjson']),
  status: z.enum(['running', 'done', 'failed']),
  bytes: z.number(),
  counts: ImportCounts,
  rejectedRows: z.array(z.object({ line: z.number(), reason: z.string() })),
  rejectedRowsTruncated: z.boolean(),
  unreadColumns: z
    .array(z.string())
    .describe("Columns of the file that no row's commands read (misspelt, or of no use to this kind): their cells were left out. Known once the import ended."),
  error: z.string().nullable(),
  defaultOwner: z.string().nullable().describe('The user who owns the customers and deals whose row left owner_id empty; null: none'),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
});

export const importRoutes: FastifyPluginAsync<RouteContext & { imports: ImportJobs; maxBytes: number }> = async (plugin, options) => {
  const app = plugin.withTypeProvider<ZodTypeProvider>();
  const { imports, maxBytes } = options;
  // The body stays a stream: it is spooled to disk by the import service, never held in memory.
  app.addContentTypeParser(Object.keys(FORMATS), (_request, payload, done) => done(null, payload));

  app.post('/imports', {
    schema: {
      operationId: 'startImport',
      tags: ['imports'],
      summary: 'Import a CSV or NDJSON file (202, then poll GET /imports/:id)',
      description:
        `Body: text/csv (header row) or application/x-ndjson (one object per line), uncompressed, at most ${maxBytes} bytes (413 above; 415 for another type or a Content-Encoding); ` +
        `UTF-8 unless the Content-Type names another charset (${encodingExamples}; any a browser reads; 415 for another). ` +
        'Each row is validated as the matching command; bad rows are listed with their line numbers. Sending the same file again appends nothing twice. ' +
        'Roles: those of the matching command (customers: POST /customers, purchases: POST /customers/:id/purchases, ...). One import per key at a time (409). ' +
        "A deal has an owner: a deals row without owner_id takes the default owner (defaultOwner, else the key's user), and is refused when there is none (a service key's import without defaultOwner); " +
        'customers rows without owner_id take it too, as POST /customers gives a user its registrations. An unknown or deactivated defaultOwner is a 400 before anything is read.',
      querystring: ImportQuery,
      response: { 202: z.object({ id: z.string() }), ...problemResponses(400, 401, 403, 408, 409, 413, 415, 429, 503, 507) },
      responseHeaders: { 202: ['location'] },
      streamedBody: {
        mediaTypes: Object.keys(FORMATS),
        description: 'The file: a header row then one row per line (CSV), or one JSON object per line (NDJSON)',
      },
    },
    // A large file takes minutes on a slow link: the upload is bounded by its size and by how long it
    // may send nothing (408), not by the request timeout, which cut it with a 503 while the job went on.
    config: { longWork: true },
    preParsing: async (request) => refuseUnreadableBody(request),
    handler: async (request, reply) => {
      const { kind, defaultOwner: named } = request.query;
      const [method, url] = firstCommandOf[kind].route;
      const rule = ruleFor(method, url);
      const role = callerRole(request);
      if (!isAllowed(rule, role)) {
        throw new ProblemError('forbidden', `The ${role} role may not import ${kind} (as for ${rule.route}).`, {
          role,
          allowedRoles: [...(rule.access as readonly string[])],
        });
      }
      const [, ...parameters] = (request.headers['content-type'] ?? '').split(';');
      // Checked before the body was parsed (refuseUnreadableBody).
      const format = formatOf(request.headers['content-type'])!;
      const charset = parameters
        .map((p) => p.trim().split('='))
        .find(([name]) => name!.trim().toLowerCase() === 'charset')?.[1]
        ?.trim()
        .replace(/^"(.*)"$/, '$1');
      const encoding = charset === undefined ? 'utf-8' : importEncodingNamed(charset);
      if (!encoding)
        throw new ProblemError('unsupported_media_type', `The charset ${charset} is not read; send utf-8, or the file's encoding: ${encodingExamples}.`, {
          errors: [{ field: 'content-type', message: `a charset such as utf-8, ${encodingExamples}` }],
        });
      const declared = Number(request.headers['content-length']);
      const body = request.body as Readable;
      if (Number.isFinite(declared) && declared > maxBytes) {
        body.resume();
        throw new ProblemError(
          'payload_too_large',
          `The body is ${declared} bytes; the limit is ${maxBytes}.`,
          { errors: [{ field: 'body', message: `at most ${maxBytes} bytes` }] },
          CLOSE,
        );
      }
      const key = request.apiKey!;
      // A user importing without naming an owner owns what the file leaves unowned, as a user registering
      // a customer does (api/command-route.ts): the records stay in the user's scope, and the owner is a real user.
      const defaultOwner = named ?? key.userId ?? undefined;
      try {
        const job = await imports.start({
          kind,
          format,
          encoding,
          body,
          // The rows are the caller's commands: recorded under the same actor as one sent alone.
          actor: actorOfKey(key),
          owner: key.id,
          forbidden: forbiddenFor(kind, role),
          ...(defaultOwner !== undefined ? { defaultOwner } : {}),
          defaultOwnerHint: 'the defaultOwner query parameter, a user id',
        });
        return reply.code(202).header('location', `/imports/${job.id}`).send({ id: job.id });
      } catch (error) {
        const name = (error as Error).name;
        if (name === 'DefaultOwnerRefused') {
          const message = named === undefined ? `${(error as Error).message} (the key's user, as no defaultOwner was named)` : (error as Error).message;
          throw validationProblem([{ field: 'defaultOwner', in: 'query', message }], `defaultOwner: ${message}; nothing was imported.`);
        }
        if (name === 'ImportTooLarge') throw new ProblemError('payload_too_large', `The body is larger than ${maxBytes} bytes.`, {}, CLOSE);
        if (name === 'ImportStalled') {
          throw new ProblemError('request_timeout', `${(error as Error).message}; nothing was imported: send the file again.`, {}, CLOSE);
        }
        // The client went away mid-upload (it hears no answer): a refused request, not a fault of this server.
        if (name === 'ImportAborted') throw new ProblemError('malformed', `${(error as Error).message}; nothing was imported: send the file again.`, {}, CLOSE);
        // This server's temporary folder is full: not the client's fault, and no use sending again until its operator acts.
        if (name === 'ImportSpoolFull') {
          const problem = new ProblemError('insufficient_storage', `${(error as Error).message}; nothing was imported: send the file again once it has room.`);
          // The error handler's log line names its cause: there the operator reads which folder is full.
          problem.cause = new Error(`uploads are written to ${String((error as { folder?: unknown }).folder)}, which has no room`);
          throw problem;
        }
        if (name === 'ImportBusy') throw new ProblemError('invalid_state', (error as Error).message);
        throw error;
      }
    },
  });

  app.get('/imports/:id', {
    schema: {
      operationId: 'getImport',
      tags: ['imports'],
      summary: 'Progress, counts and the bad-row report of an import',
      params: IdParams,
      response: { 200: ImportJobSchema, ...problemResponses(400, 401, 403, 404, 429) },
    },
    handler: async (request) => {
      const job = await imports.get(request.params.id);
      // Another key's import is not shown (nor said to exist), except to an admin who sees every record:
      // its bad-row report quotes the refused cells (an address, a name) of records of any team.
      const seesEveryImport = callerRole(request) === 'admin' && scopeOf(request) === null;
      if (!job || (job.owner !== request.apiKey!.id && !seesEveryImport)) throw new ProblemError('not_found', 'No such import.');
      const { owner: _owner, ...view } = job;
      return view;
    },
  });
};
