import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DomainError } from '../domain/errors.ts';
import {
  databaseBusy,
  databaseShortage,
  EventStoreUnavailable,
  IdempotencyConflict,
  OutcomeUnknown,
  InvalidAppend,
  InvalidReadOptions,
  MasterKeyMismatch,
  WrongExpectedRevision,
} from '../eventstore/errors.ts';
import { PROBLEM_CONTENT_TYPE, ProblemError, REPEATED_PARAMETER, validationProblem, type FieldError, type FieldLocation } from './problems.ts';

/** Where a failing value sat (fastify's validation contexts). */
type Location = FieldLocation;
const locationOf = (context: string | undefined): Location =>
  context === 'querystring' ? 'query' : context === 'params' ? 'params' : context === 'headers' ? 'headers' : 'body';

/** A field path as clients write it: `amount`, `targetSegment.tags.0`; the whole input is named after its location. */
const fieldName = (path: readonly PropertyKey[], location: Location): string => (path.length === 0 ? location : path.map(String).join('.'));

/** Zod issues -> field errors; an unknown field becomes one error per unknown key, named by the key. */
export const fieldErrorsFromZod = (
  issues: ReadonlyArray<{ path: readonly PropertyKey[]; message: string; code?: string; keys?: readonly string[] }>,
  location: Location = 'body',
): (FieldError & { in: Location })[] =>
  issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys' && issue.keys?.length) {
      return issue.keys.map((key) => ({
        field: fieldName([...issue.path, key], location),
        in: location,
        message: 'unknown field',
      }));
    }
    return [{ field: fieldName(issue.path, location), in: location, message: issue.message }];
  });

interface FastifyValidationItem {
  instancePath: string;
  message?: string;
  keyword?: string;
  /** The zod issue's other members: `keys` of unknown fields, `errors` of each option of a union. */
  params?: { keys?: string[]; errors?: { code?: string; path?: unknown[] }[][] };
}

/** An issue about the value as a whole being of the wrong kind (not one of its parts). */
const wrongKind = (issue: { code?: string; path?: unknown[] }): boolean =>
  (issue.code === 'invalid_type' || issue.code === 'invalid_value') && (issue.path?.length ?? 0) === 0;

/**
 * `?status=a&status=b` reaches the schema as an array: a parameter that takes one value says so
 * (the schema's own words would be "expected string, received array" or a list of options). A union
 * counts when no option of it takes a list (the audit log's `type` does).
 */
const repeatedInQuery = (request: FastifyRequest | undefined, path: string[], item: FastifyValidationItem): boolean =>
  path.length === 1 &&
  Array.isArray((request?.query as Record<string, unknown> | undefined)?.[path[0]!]) &&
  (wrongKind({ code: item.keyword }) ||
    (item.keyword === 'invalid_union' && (item.params?.errors?.length ?? 0) > 0 && item.params!.errors!.every((option) => option.some(wrongKind))));

const fromFastifyValidation = (error: FastifyError, request?: FastifyRequest): ProblemError => {
  const location = locationOf(error.validationContext);
  const items = (error.validation ?? []) as FastifyValidationItem[];
  const issues = items.map((item) => {
    const path = item.instancePath.split('/').filter((part) => part !== '');
    return {
      path,
      message: location === 'query' && repeatedInQuery(request, path, item) ? REPEATED_PARAMETER : (item.message ?? 'invalid'),
      code: item.keyword,
      keys: item.params?.keys,
    };
  });
  return validationProblem(fieldErrorsFromZod(issues, location));
};

const isZodError = (error: unknown): error is z.ZodError =>
  error instanceof z.ZodError || (error instanceof Error && error.name === 'ZodError' && Array.isArray((error as z.ZodError).issues));

const quote = (revision: number): string => `"${revision}"`;

/** Retry-After of the 503s of a database fault: the service recovers within about a second of the database. */
const RETRY_AFTER_SECONDS = '1';
/** A rebuild takes seconds to minutes: come back in a while rather than at once. */
const REBUILD_RETRY_AFTER_SECONDS = '10';
/** A stopped read model waits for an operator: minutes, not seconds. */
const STOPPED_READ_MODEL_RETRY_AFTER_SECONDS = '30';
/** A full disk (or memory) waits for an operator to free some: minutes, not seconds. */
const SHORTAGE_RETRY_AFTER_SECONDS = '30';

/**
 * What the database ran out of, as a client is told: a 503 like an outage (nothing about the request
 * is wrong, and it succeeds once the operator frees space), never a 500.
 */
const SHORTAGE_TEXTS = {
  disk: { code: 'database.disk-full', text: "The database's disk is full", retryAfter: SHORTAGE_RETRY_AFTER_SECONDS },
  memory: { code: 'database.out-of-memory', text: 'The database ran out of memory', retryAfter: RETRY_AFTER_SECONDS },
  limit: { code: 'database.limit-exceeded', text: 'The database refused the statement at one of its configured limits', retryAfter: RETRY_AFTER_SECONDS },
} as const;

/** Requests that record something (commands); the rest only read. */
export const isCommand = (request: FastifyRequest): boolean => request.method !== 'GET' && request.method !== 'HEAD';

/**
 * A command that may or may not have been recorded: the client cannot tell, so the answer says how
 * to find out safely. The command layer derives event ids from the Idempotency-Key, so the retry of
 * a recorded command appends nothing and answers the first result.
 */
export const outcomeUnknown = (why: string): ProblemError =>
  new ProblemError(
    'outcome_unknown',
    `${why}; it may or may not have been recorded. Retrying with the same Idempotency-Key is safe: ` +
      'if the first attempt was recorded, the retry records nothing more and answers its result.',
    { retrySafeWithIdempotencyKey: true },
    { 'retry-after': RETRY_AFTER_SECONDS },
  );

/** The answer to a request that did not finish within the server's bound. */
export const requestTimedOut = (request: FastifyRequest, timeoutMs: number): ProblemError =>
  isCommand(request)
    ? outcomeUnknown(`The command did not finish within ${timeoutMs} ms`)
    : new ProblemError('unavailable', `The request did not finish within ${timeoutMs} ms; retry shortly.`, {}, { 'retry-after': RETRY_AFTER_SECONDS });

/**
 * The answer to a request that arrives while the server is closing (api/closing.ts): nothing was
 * done; a load balancer or client retries it on another instance, or on this one once it is back.
 */
export const shuttingDown = (): ProblemError =>
  new ProblemError(
    'unavailable',
    'The service is shutting down; nothing was done. Retry shortly (another instance, or this one once restarted, answers).',
    {},
    { 'retry-after': RETRY_AFTER_SECONDS, connection: 'close' },
  );

/** Maps anything a handler can throw to a problem. Unknown errors become a 500 with no internals exposed. */
export const toProblem = (error: unknown, request?: FastifyRequest): ProblemError => {
  if (error instanceof ProblemError) return error;
  if (error instanceof DomainError) {
    const kind = error.kind === 'not_found' ? 'not_found' : error.kind === 'invalid_state' ? 'invalid_state' : 'rule_violated';
    return new ProblemError(kind, error.message, {
      code: error.code,
      ...(error.field ? { errors: [{ field: error.field, message: error.message }] } : {}),
      // Ids, states and amounts only (never personal fields): e.g. the primary to use instead of a merged customer.
      ...(error.details ? { details: error.details } : {}),
    });
  }
  if (error instanceof WrongExpectedRevision) {
    // If-Match against a record that does not exist: the record is what is missing.
    if (error.actual < 0 && typeof error.expected === 'number') {
      return new ProblemError('not_found', 'The resource does not exist.', { currentRevision: error.actual });
    }
    // Only a client that sent If-Match gets here (the command layer re-decides the others' races).
    const exists = error.actual >= 0;
    return new ProblemError(
      'revision_conflict',
      exists
        ? `If-Match named revision ${String(error.expected)}, but the resource is at revision ${error.actual}. Read it again and retry.`
        : 'The resource does not exist (yet).',
      {
        currentRevision: error.actual,
        ...(typeof error.expected === 'number' ? { expectedRevision: error.expected } : {}),
        // The header that named the stale revision, as a 428 names it: a client reads every 4xx's `errors`.
        ...(exists
          ? {
              errors: [
                {
                  field: 'if-match',
                  in: 'headers',
                  // Ahead of the resource is not stale: a revision of another record (a merge's duplicate instead of its primary).
                  message:
                    typeof error.expected === 'number' && error.expected > error.actual
                      ? `revision ${error.expected} is ahead of the resource, which is at ${error.actual}: send this resource's own revision (its ETag)`
                      : `revision ${String(error.expected)} is stale: the resource is at ${error.actual}`,
                },
              ],
            }
          : {}),
      },
      exists ? { etag: quote(error.actual) } : {},
    );
  }
  if (error instanceof IdempotencyConflict) {
    return new ProblemError('idempotency_conflict', 'This Idempotency-Key was already used for a different request.');
  }
  if (error instanceof InvalidAppend) {
    return error.reason === 'payload_too_large' ? new ProblemError('payload_too_large', error.message) : validationProblem([], error.message);
  }
  // Positions reach the store only from cursors and `fromPosition`: one it refuses was forged or is another engine's.
  if (error instanceof InvalidReadOptions) return validationProblem([{ field: 'cursor', message: error.message }]);
  const shortage = databaseShortage(error);
  if (shortage !== undefined && shortage !== 'connections' && !(error instanceof OutcomeUnknown)) {
    const { code, text, retryAfter } = SHORTAGE_TEXTS[shortage];
    return request && isCommand(request)
      ? new ProblemError(
          'unavailable',
          `${text}, so the command was not recorded. Retry once its operator has freed some, with the same Idempotency-Key: whatever the command recorded before is not recorded twice.`,
          { code, retrySafeWithIdempotencyKey: true },
          { 'retry-after': retryAfter },
        )
      : new ProblemError('unavailable', `${text}; retry once its operator has freed some.`, { code }, { 'retry-after': retryAfter });
  }
  if (error instanceof OutcomeUnknown && request && isCommand(request))
    return outcomeUnknown('The connection to the database was lost while the command was being recorded');
  if (error instanceof EventStoreUnavailable) {
    // The cause as it is: a held lock or a full pool of the server is no reason to check the network or DATABASE_URL.
    const why = databaseBusy(error)
      ? 'The database is busy (a lock is held or a statement ran too long)'
      : databaseShortage(error) === 'connections'
        ? 'PostgreSQL has no free connection slots (max_connections)'
        : 'The database cannot be reached right now';
    // A command of several steps (a merge, a forget, an unsubscribe and its consent) may have recorded its first: say how to retry.
    if (request && isCommand(request))
      return new ProblemError(
        'unavailable',
        `${why}; retry shortly with the same Idempotency-Key: whatever the command recorded before is not recorded twice.`,
        { retrySafeWithIdempotencyKey: true },
        { 'retry-after': RETRY_AFTER_SECONDS },
      );
    return new ProblemError('unavailable', `${why}; retry shortly.`, {}, { 'retry-after': RETRY_AFTER_SECONDS });
  }
  // The master key was rotated under this process: it stores no personal data (nor webhook secret) until its
  // operator restarts it (the advice is in the log), and the client only learns to come back later.
  if (error instanceof MasterKeyMismatch) {
    return new ProblemError(
      'unavailable',
      'The service cannot store personal data or secrets until its operator restarts it with the current master key; retry later.',
      {},
      { 'retry-after': RETRY_AFTER_SECONDS },
    );
  }
  // A ZodError thrown past the route schema (command layer, query functions) is about the body of a
  // command or the query string of a read.
  if (isZodError(error)) return validationProblem(fieldErrorsFromZod(error.issues, request?.method === 'GET' ? 'query' : 'body'));
  // Typed errors of other modules, matched by name so the API does not depend on their internals.
  const named = error as { name?: unknown; field?: unknown; message?: unknown } | null;
  if (named?.name === 'InvalidAuditQuery' && typeof named.field === 'string') {
    return validationProblem([{ field: named.field, message: String(named.message) }]);
  }
  if (named?.name === 'UnreadableEvent') {
    // eventstore/unreadable-event.ts: a stored event changed behind the store. The request is fine and a retry
    // cannot help: the record cannot be shown in the events' current state, so the event is named.
    const event = error as { stream?: unknown; revision?: unknown; position?: unknown };
    return new ProblemError('invalid_state', String(named.message), {
      code: 'event.unreadable',
      details: { stream: event.stream, revision: event.revision, position: String(event.position) },
    });
  }
  if (named?.name === 'CommandsBusy') {
    // commands/stream-queue.ts: the process is saturated or the stream kept changing; never a conflict.
    const seconds = Number((error as { retryAfterSeconds?: unknown }).retryAfterSeconds) || 1;
    return new ProblemError('unavailable', String(named.message), {}, { 'retry-after': String(seconds) });
  }
  if (named?.name === 'ReadModelRebuilding') {
    return new ProblemError('unavailable', String(named.message), {}, { 'retry-after': REBUILD_RETRY_AFTER_SECONDS });
  }
  if (named?.name === 'ReadModelStopped') {
    // projections/errors.ts: it will not catch up by itself; the answer names it rather than reading around it.
    const { position, stopped } = error as { position: bigint; stopped: { name: string; state: string; position: bigint }[] };
    return new ProblemError(
      'unavailable',
      String(named.message),
      { code: 'read-model.stopped', details: { waitFor: String(position), stopped: stopped.map((s) => ({ ...s, position: String(s.position) })) } },
      { 'retry-after': STOPPED_READ_MODEL_RETRY_AFTER_SECONDS },
    );
  }
  if (named?.name === 'ReadModelTimeout') {
    return new ProblemError('read_model_timeout', String(named.message), {}, { 'retry-after': '1' });
  }
  const fastifyError = error as Partial<FastifyError> | null;
  if (fastifyError && typeof fastifyError === 'object') {
    if (hasZodFastifySchemaValidationErrors(fastifyError) || Array.isArray(fastifyError.validation)) {
      return fromFastifyValidation(fastifyError as FastifyError, request);
    }
    const status = fastifyError.statusCode;
    switch (fastifyError.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return new ProblemError('payload_too_large', 'The request body is larger than the server accepts.', {
          errors: [{ field: 'body', message: 'larger than the server accepts' }],
        });
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return new ProblemError('unsupported_media_type', 'Send the body as application/json.', {
          errors: [{ field: 'content-type', message: 'application/json' }],
        });
      case 'FST_ERR_BAD_URL':
        // A path whose percent-encoding is not UTF-8 (`/customers/%ED%A0%80`): no route could read it.
        return new ProblemError('malformed', fastifyError.message ?? 'The URL is not valid.', { errors: [{ field: 'url', message: 'percent-encoded UTF-8' }] });
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return validationProblem([{ field: 'body', message: 'a JSON body is required' }], 'The request has no JSON body.');
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
        // The parser's own reason is not passed on: a member named __proto__ (or constructor.prototype) is refused the same way.
        return new ProblemError('malformed', 'The body is not valid JSON, or has a member named __proto__ or constructor.prototype (refused).', {
          errors: [{ field: 'body', message: 'valid JSON without __proto__ or constructor.prototype members' }],
        });
      default:
        break;
    }
    if (typeof status === 'number' && status >= 400 && status < 500) {
      if (status === 413) return new ProblemError('payload_too_large', fastifyError.message ?? 'Too large.');
      if (status === 414) return new ProblemError('uri_too_long', 'A path parameter is longer than the server accepts.');
      if (status === 415) return new ProblemError('unsupported_media_type', fastifyError.message ?? 'Unsupported.');
      if (status === 404) return new ProblemError('not_found', fastifyError.message ?? 'Not found.');
      // Only the static file plugins (the console's assets, Swagger UI's) answer 403 on their own, for
      // a folder or a name they will not open (a NUL, a dot file): there is no file to read there.
      if (status === 403) return new ProblemError('not_found', `No file ${request?.url.split('?')[0] ?? ''}.`);
      return new ProblemError('malformed', fastifyError.message ?? 'Bad request.');
    }
  }
  return new ProblemError('internal', 'Something went wrong on our side; the error was logged.');
};

/** An error as one line: its class and message, and its cause's message (a driver's own, say) when that is not in it already. */
const oneLine = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  const line = `${error.name}: ${error.message}`;
  return cause && !error.message.includes(cause) ? `${line} (cause: ${cause})` : line;
};

/** The app's error handler: every error leaves as problem+json. */
export const problemErrorHandler = (error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
  const problem = toProblem(error, request);
  if (problem.status >= 500 && problem.kind === 'internal') {
    request.log.error({ err: error }, 'unhandled error');
  } else if (problem.status >= 500) {
    // Refused for a passing cause (the database away, the command layer busy): one line per request,
    // the stack only at debug. With it, each 503 of a database outage wrote about 3 KB and two stack
    // traces, so the log grew with the traffic refused.
    request.log.warn({ problem: problem.kind, error: oneLine(error) }, problem.message);
    request.log.debug({ err: error }, problem.message);
  }
  for (const [name, value] of Object.entries(problem.headers)) reply.header(name, value);
  return reply
    .code(problem.status)
    .type(PROBLEM_CONTENT_TYPE)
    .send(JSON.stringify(problem.body(request.url.split('?')[0])));
};
