import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { TIME_AXES } from '../audit/as-of.ts';
import { Id, IsoDate, IsoDateTime } from '../domain/shared.ts';
import { GlobalPositionText } from '../eventstore/position.ts';
import type { Actor } from '../domain/metadata.ts';
import type { ApiCommand, CommandContext, CommandResult, ReadModelProgress } from './deps.ts';
import type { RouteContext } from './route-context.ts';
import { assertSentOnce } from './client-errors.ts';
import { ProblemError, REPEATED_PARAMETER, validationProblem } from './problems.ts';

/**
 * Global positions travel as decimal strings ("position": "123"): the store's positions are 64-bit
 * (bigint in the contract, and EventStoreDB commit positions are byte offsets), which a JSON number
 * cannot hold exactly past 2^53. Checkpoints are PostgreSQL `bigint`s, so no position the read models
 * reach is above 2^63 - 1: a larger `?waitFor=` could only be waited for in vain.
 */
export const PositionString = GlobalPositionText.describe('Global position (decimal string) returned by a command');

export const CommandAccepted = z
  .object({
    id: z.uuid().describe('The aggregate id'),
    revision: z.number().int().describe('Revision of the aggregate after the command; also the ETag'),
    position: PositionString,
  })
  .meta({ id: 'CommandAccepted' });
export type CommandAccepted = z.infer<typeof CommandAccepted>;

const HeaderText = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e][\x20-\x7e]*$/, 'printable ASCII');

/**
 * `X-Request-Id` is the correlation id of a request, echoed on its answer and recorded on a command's
 * events. A client's id is kept when it is 1-200 printable ASCII characters without spaces; any other
 * (absent, longer, spaces, control or non-ASCII characters) is replaced by a fresh UUID, on commands
 * and queries alike: a tracing header never makes a request fail, and the answer's X-Request-Id is the
 * one to look for in logs and history.
 */
const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

export const requestIdOf = (request: { headers: Record<string, string | string[] | undefined> }): string => {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
};

/** The Idempotency-Key of a creation outside the command layer (api/idempotency.ts `createOnce`). */
export const CreationHeaders = z.looseObject({
  'idempotency-key': HeaderText.optional().describe(
    'A retry with the same key creates nothing more: it is a 409 naming what the first request created (its secret was shown only then).',
  ),
});

/** The request's Idempotency-Key, if it has one (a 400 naming it when sent twice). */
export const idempotencyKeyOf = (request: FastifyRequest): string | undefined => {
  assertSentOnce(request, 'idempotency-key');
  const key = request.headers['idempotency-key'];
  return typeof key === 'string' ? key : undefined;
};

/** Headers every command route reads. Other headers pass (the object is loose on purpose). */
export const CommandHeaders = z.looseObject({
  'if-match': z
    .string()
    .optional()
    .describe('Expected revision, as the ETag a read or command returned ("3"). Marked required where a command needs it (428 without it).'),
  'idempotency-key': HeaderText.optional().describe('Retrying with the same key appends nothing and returns the first result.'),
  // Not validated: an id that breaks the rule is replaced (requestIdOf), never refused.
  'x-request-id': z
    .string()
    .optional()
    .describe(
      'Correlation id, echoed back and recorded on the events; a UUID replaces one that is absent or not 1-200 printable ASCII characters without spaces.',
    ),
  'x-causation-id': HeaderText.optional().describe('Id of the message or event that caused this command (recorded as causationId).'),
});

/** A record in the path: the domain's id (a UUID in any case, read in lower case). */
export const IdParams = z.strictObject({ id: Id });

export const etagOf = (revision: number): string => `"${revision}"`;

/**
 * `"3"`, `W/"3"` or `3` -> 3. Weak on purpose: a proxy that compresses answers (nginx with gzip)
 * turns the ETag we send into `W/"3"`, and the client echoes what it got; the revision it names is
 * exact either way. A list or `*` is refused: the API needs one exact revision. The revision
 * is written as the ETag writes it: `"03"`, `"-0"` or an unpaired quote (`"3`) is no ETag we gave, and
 * is refused rather than read as revision 3 or 0.
 */
export const parseIfMatch = (value: string): number => {
  const match = /^\s*(?:W\/)?("?)(0|[1-9]\d{0,8})\1\s*$/.exec(value);
  const revision = match?.[2] === undefined ? Number.NaN : Number(match[2]);
  if (!Number.isSafeInteger(revision)) {
    throw validationProblem(
      [{ field: 'if-match', message: 'the ETag of the resource, e.g. "3"' }],
      'If-Match must carry one revision as returned in ETag, e.g. "3".',
    );
  }
  return revision;
};

export type IfMatchPolicy = 'required' | 'optional' | 'forbidden';

export interface CommandCall {
  command: ApiCommand;
  /** 201 for a creation, 200 otherwise. */
  status: 200 | 201;
  ifMatch: IfMatchPolicy;
  /** Business time (`occurredAt` in the body) for commands that record a past fact. */
  occurredAt?: string | undefined;
  reason?: string | undefined;
  /** Where the created resource can be read (Location header on 201). */
  location?: (id: string) => string;
}

/** Who a key acts as: a user's key acts as the user (history names the person); a service key names itself. */
export const actorOfKey = (key: NonNullable<FastifyRequest['apiKey']>): Actor => ({
  userId: key.userId ?? `api-key:${key.id}`,
  name: key.name,
  roles: [key.role],
});

/** Builds the command context from the request: actor from the key, ids and revision from headers. */
export const commandContext = (request: FastifyRequest, call: CommandCall): CommandContext => {
  const key = request.apiKey;
  if (!key) throw new ProblemError('unauthenticated', 'An API key is required.');
  const headers = request.headers;
  const ifMatch = typeof headers['if-match'] === 'string' ? headers['if-match'] : undefined;
  if (ifMatch === undefined && call.ifMatch === 'required') {
    throw new ProblemError(
      'precondition_required',
      'This command changes an existing record: send If-Match with the ETag you last read (a GET of the record answers it in its ETag header).',
      {
        errors: [{ field: 'if-match', message: 'required' }],
      },
    );
  }
  for (const name of ['idempotency-key', 'x-causation-id']) assertSentOnce(request, name);
  const idempotencyKey = headers['idempotency-key'];
  const causationId = headers['x-causation-id'];
  return {
    actor: actorOfKey(key),
    ...(request.viewer?.scope ? { scope: request.viewer.scope } : {}),
    correlationId: request.id,
    causationId: typeof causationId === 'string' ? causationId : null,
    ...(typeof idempotencyKey === 'string' ? { idempotencyKey } : {}),
    ...(ifMatch !== undefined && call.ifMatch !== 'forbidden' ? { expectedRevision: parseIfMatch(ifMatch) } : {}),
    ...(call.occurredAt ? { occurredAt: call.occurredAt } : {}),
    ...(call.reason ? { reason: call.reason } : {}),
  };
};

export const toAccepted = (result: CommandResult): CommandAccepted => ({
  id: result.id,
  revision: result.revision,
  position: result.position.toString(),
});

/**
 * Runs a command and answers `{ id, revision, position }` with the revision as ETag. What it meets is
 * told to `writes` (a full disk refusing it, or its events recorded), which /ready and /metrics show.
 */
export const executeCommand = async (
  request: FastifyRequest,
  reply: FastifyReply,
  context: Pick<RouteContext, 'metrics' | 'idempotency' | 'writes'> & { deps: Pick<RouteContext['deps'], 'commands'> },
  call: CommandCall,
): Promise<CommandAccepted> => {
  const ctx = commandContext(request, call);
  let result: CommandResult;
  try {
    if (ctx.idempotencyKey !== undefined) {
      // commandContext refused a request without a key.
      const params = request.params as { id?: string } | undefined;
      ctx.idempotencyKey = await context.idempotency.claim(request.apiKey!.id, ctx.idempotencyKey, {
        method: request.method,
        route: request.routeOptions.url ?? request.url,
        resourceId: params?.id ?? null,
        body: request.body,
      });
    }
    // Races of clients without If-Match are resolved in the command layer (commands/stream-queue.ts).
    result = await context.deps.commands.execute(call.command, ctx);
  } catch (error) {
    context.writes.failed(error);
    throw error;
  }
  // A command that changed nothing (a tag already held), or a retry answered with what an earlier run
  // stored, wrote nothing: it says nothing of the disk (a client retrying its refused command with its
  // Idempotency-Key, as the 503 advises, showed writes accepted while the disk was still full).
  if (result.eventIds.length > 0 && !result.replayed) context.writes.recorded();
  context.metrics.countAppends(call.command.type, result.eventIds.length);
  reply.code(call.status).header('etag', etagOf(result.revision));
  if (call.status === 201 && call.location) reply.header('location', call.location(result.id));
  return toAccepted(result);
};

/** The media types a client names in `Accept` for each format an answer can take. */
const FORMAT_MEDIA_TYPES = {
  json: ['application/json'],
  ndjson: ['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/x-jsonl'],
  csv: ['text/csv'],
} as const satisfies Record<string, readonly string[]>;
export type AnswerFormat = keyof typeof FORMAT_MEDIA_TYPES;

type AcceptRange = { type: string; q: number };

/** The ranges of an `Accept` header, each with its q (0-1; a q that is no number refuses the range). */
const acceptRanges = (accept: string): AcceptRange[] =>
  accept.split(',').flatMap((range) => {
    const [type = '', ...parameters] = range.split(';').map((part) => part.trim().toLowerCase());
    if (!/^[^/\s]+\/[^/\s]+$/.test(type)) return [];
    const qParameter = parameters.find((p) => p.startsWith('q='));
    const parsed = qParameter === undefined ? 1 : Number(qParameter.slice(2));
    return [{ type, q: Number.isFinite(parsed) ? Math.min(Math.max(parsed, 0), 1) : 0 }];
  });

/**
 * What `Accept` says of one media type: the q of its most specific matching range (`text/csv` over
 * `text/*` over `*\/*`, as RFC 9110 reads them: `text/csv;q=0, *\/*` refuses CSV), and whether that
 * range names it outright. Undefined when no range matches: the type is not acceptable.
 */
const mediaTypeQuality = (ranges: AcceptRange[], mediaType: string): { q: number; named: boolean } | undefined => {
  const specificityOf = (range: string): number => (range === mediaType ? 2 : range === `${mediaType.split('/')[0]}/*` ? 1 : range === '*/*' ? 0 : -1);
  let best: { q: number; specificity: number } | undefined;
  for (const range of ranges) {
    const specificity = specificityOf(range.type);
    if (specificity >= 0 && (!best || specificity > best.specificity || (specificity === best.specificity && range.q > best.q)))
      best = { q: range.q, specificity };
  }
  return best && { q: best.q, named: best.specificity === 2 };
};

/** Whether rank `a` comes before rank `b`, compared entry by entry. */
const isAhead = (a: readonly number[], b: readonly number[]): boolean => {
  const at = a.findIndex((value, i) => value !== b[i]);
  return at >= 0 && a[at]! > b[at]!;
};

/**
 * The one reader of `Accept` for routes that answer one URL in several formats (`?format=` is read
 * first by the route). A format's q is the highest of its media types' (NDJSON has several names; the
 * first is the one answered, and the only one a wildcard stands for: `application/x-ndjson;q=0, *\/*`
 * refuses NDJSON).
 * The highest q above 0 answers; at the same q, a format named outright before one a wildcard lets
 * through, and between two named the one other than the default (the default needs no naming), between
 * two let through the default, else the one offered first. No header (or an empty one) is the default.
 * Undefined when the header accepts none of the formats (`text/html`, `text/csv;q=0`): the route
 * answers its default (`acceptedFormat`) or 406 (`acceptableFormat`). Any mention of NDJSON used to
 * pick it on the audit routes, so `application/x-ndjson;q=0, text/csv` (NDJSON refused) got NDJSON there.
 * Such an answer must carry `Vary: Accept` (`varyByAccept`).
 */
const negotiatedFormat = <F extends AnswerFormat>(accept: string | undefined, offered: readonly F[], fallback: F): F | undefined => {
  if (accept === undefined || accept.trim() === '') return fallback;
  const ranges = acceptRanges(accept);
  let chosen: { format: F; rank: number[] } | undefined;
  for (const [index, format] of offered.entries()) {
    // Another name of the format counts where a range names it: a wildcard lets through the type answered.
    const qualities = FORMAT_MEDIA_TYPES[format].flatMap((type, i) => {
      const quality = mediaTypeQuality(ranges, type);
      return quality && (i === 0 || quality.named) ? [quality] : [];
    });
    const q = Math.max(0, ...qualities.map((quality) => quality.q));
    if (q === 0) continue;
    const named = qualities.some((quality) => quality.named && quality.q === q);
    const preferred = named ? format !== fallback : format === fallback;
    const rank = [q, named ? 1 : 0, preferred ? 1 : 0, -index];
    if (!chosen || isAhead(rank, chosen.rank)) chosen = { format, rank };
  }
  return chosen?.format;
};

/** `negotiatedFormat`, with the default answering an `Accept` that takes none of the formats. */
export const acceptedFormat = <F extends AnswerFormat>(accept: string | undefined, offered: readonly F[], fallback: F): F =>
  negotiatedFormat(accept, offered, fallback) ?? fallback;

/** `negotiatedFormat`, refusing with 406 (naming the media types it can answer) an `Accept` that takes none of the formats. */
export const acceptableFormat = <F extends AnswerFormat>(accept: string | undefined, offered: readonly F[], fallback: F): F => {
  const format = negotiatedFormat(accept, offered, fallback);
  if (format !== undefined) return format;
  const mediaTypes = offered.map((offer) => FORMAT_MEDIA_TYPES[offer][0]);
  throw new ProblemError(
    'not_acceptable',
    `Accept takes none of the formats this answers: send Accept: ${mediaTypes.join(' or ')} (or */*), or ?format=${offered.join(' or ?format=')}.`,
    { errors: [{ field: 'accept', in: 'headers', message: `takes none of ${mediaTypes.join(', ')}` }], mediaTypes },
    { vary: 'Accept' },
  );
};

/** An answer whose format `acceptedFormat` chose: a cache must keep the formats of one URL apart. */
export const varyByAccept = <R extends Pick<FastifyReply, 'header'>>(reply: R): R => {
  reply.header('vary', 'Accept');
  return reply;
};

/** An instant in a query: an ISO time, or a date alone (what a date means is the parameter's to say). */
export const InstantQuery = z.union([IsoDateTime, IsoDate], {
  // Both forms failing said only "Invalid input".
  error: 'an ISO time with an offset, e.g. 2026-06-30T23:59:59Z, or a date such as 2026-06-30, in the years 1900-2200',
});

/** `?asOf=` on a record: a date alone is its start (UTC), as `crm replay --as-of` takes it. */
export const AsOfInstant = InstantQuery.describe('ISO time, or a date (its start, UTC): the record as it stood then');

/** Which time `asOf` is read on (audit/as-of.ts). */
export const AsOfTimeAxis = z
  .enum(TIME_AXES)
  .optional()
  .describe(
    "With asOf: 'record' (the default) reads it as record time, what the CRM knew then; 'business' as business time (occurredAt), imported or back-dated history as it happened",
  );

const DECIMAL = /^-?\d+(\.\d+)?$/;

/**
 * A number in a URL (query string or path): plain decimal only (`12`, `-3`, `0.25`). `Number()`
 * alone would read `0x10` as 16, `1e3` as 1000, ` 5` as 5 and an empty value as 0; those are a 400
 * naming the parameter. Every numeric query and path parameter goes through this one parser; the
 * schema given checks the range.
 */
export const decimalNumber = <T extends z.ZodType<number, number>>(schema: T) =>
  // A preprocess, not a pipe from a string: the OpenAPI document shows the number's type and range.
  z.preprocess((value, ctx) => {
    if (typeof value === 'string' && DECIMAL.test(value)) return Number(value);
    ctx.addIssue({
      code: 'custom',
      input: value,
      message: Array.isArray(value) ? REPEATED_PARAMETER : 'a plain decimal number, e.g. 12 or 0.5',
    });
    return value;
  }, schema);

/** `?waitFor=` on every query. */
export const WaitForQuery = {
  waitFor: PositionString.optional().describe('Answer only once the read models include this position (bounded wait)'),
};

/** How long `?waitFor=` waits before it asks whether the store ever recorded the position. */
const WAIT_BEFORE_HEAD_CHECK_MS = 250;

/**
 * Waits for the read models to reach `position`, or throws a 503 problem after `timeoutMs`. A position
 * past the newest event the store holds was never answered by a command: a 400 naming `waitFor` once
 * a first short wait has passed (so a read right after its own append, which the store may show a
 * moment later, is not refused), instead of holding the request for the whole bound to answer "retry".
 */
export const awaitReadModels = async (projections: ReadModelProgress | undefined, position: string | undefined, timeoutMs: number): Promise<void> => {
  if (position === undefined) return;
  if (!projections) throw new ProblemError('unavailable', 'The read models are not running in this process.');
  const wanted = BigInt(position);
  const first = Math.min(timeoutMs, WAIT_BEFORE_HEAD_CHECK_MS);
  let reached = await projections.waitForPosition(wanted, first);
  if (!reached && projections.newestPosition) {
    const newest = await projections.newestPosition();
    if (wanted > newest)
      throw validationProblem([
        {
          field: 'waitFor',
          in: 'query',
          message: `no event was recorded at position ${position}: the newest is at ${newest}; send a position a command answered`,
        },
      ]);
  }
  if (!reached && timeoutMs > first) reached = await projections.waitForPosition(wanted, timeoutMs - first);
  if (!reached) {
    throw new ProblemError(
      'read_model_timeout',
      `The read models did not reach position ${position} within ${timeoutMs} ms; retry shortly.`,
      { waitFor: position },
      { 'retry-after': '1' },
    );
  }
};
