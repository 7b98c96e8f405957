import { z } from 'zod';

/**
 * Every error the API answers is an RFC 9457 problem (`application/problem+json`). The `type` URIs
 * are stable: clients switch on them, so never rename one.
 */
export const PROBLEM_BASE = 'https://crm.example/problems/';
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export const problemTypes = {
  validation: { status: 400, title: 'The request is not valid' },
  malformed: { status: 400, title: 'The request could not be read' },
  unauthenticated: { status: 401, title: 'Authentication required' },
  forbidden: { status: 403, title: 'Not allowed for this role' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  not_acceptable: { status: 406, title: 'No format the Accept header takes' },
  revision_conflict: { status: 409, title: 'The resource changed since you read it' },
  invalid_state: { status: 409, title: 'Not possible in the current state' },
  idempotency_conflict: { status: 422, title: 'The idempotency key was used for a different request' },
  rule_violated: { status: 422, title: 'A business rule refused the command' },
  request_timeout: { status: 408, title: 'The request body stopped arriving' },
  payload_too_large: { status: 413, title: 'The request is too large' },
  expectation_failed: { status: 417, title: 'The expectation cannot be met' },
  uri_too_long: { status: 414, title: 'The URL is too long' },
  headers_too_large: { status: 431, title: 'The request headers are too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported content type' },
  precondition_required: { status: 428, title: 'If-Match header required' },
  rate_limited: { status: 429, title: 'Too many requests' },
  unavailable: { status: 503, title: 'Service unavailable' },
  outcome_unknown: { status: 503, title: 'The outcome of the command is unknown' },
  read_model_timeout: { status: 503, title: 'The read models have not caught up yet' },
  insufficient_storage: { status: 507, title: 'The server has no room to store the request' },
  internal: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemKind = keyof typeof problemTypes;
export const problemType = (kind: ProblemKind): string => `${PROBLEM_BASE}${kind.replaceAll('_', '-')}`;

/** Where a failing value was sent: `body`, `query`, `params` or `headers`. */
export const FIELD_LOCATIONS = ['body', 'query', 'params', 'headers'] as const;
export type FieldLocation = (typeof FIELD_LOCATIONS)[number];

export interface FieldError {
  /** The failing value as clients name it: `amount`, `targetSegment.tags.0`, `limit`, `if-match`. */
  field: string;
  /** Where it was sent. */
  in?: FieldLocation;
  message: string;
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  /** Stable machine code for domain refusals, e.g. `deal.terminal_stage`. */
  code?: string;
  errors?: FieldError[];
  /** Machine-readable facts of a domain refusal, e.g. `{ customerId, primaryId }` for a merged customer. */
  details?: Record<string, unknown>;
  currentRevision?: number;
  [extension: string]: unknown;
}

/** A problem's body; `ProblemError.body` is this, and a path that answers without throwing calls it directly. */
export const problemBody = (
  kind: ProblemKind,
  detail: string,
  instance?: string,
  extensions: Omit<Partial<ProblemBody>, 'type' | 'title' | 'status' | 'detail'> = {},
): ProblemBody => ({
  type: problemType(kind),
  title: problemTypes[kind].title,
  status: problemTypes[kind].status,
  detail,
  ...(instance ? { instance } : {}),
  ...extensions,
});

/** Thrown by route handlers and hooks; the error handler turns it into the response as is. */
export class ProblemError extends Error {
  readonly status: number;
  constructor(
    readonly kind: ProblemKind,
    detail: string,
    readonly extensions: Omit<Partial<ProblemBody>, 'type' | 'title' | 'status' | 'detail'> = {},
    /** Extra response headers (ETag on a revision conflict, Retry-After on 429/503). */
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = 'ProblemError';
    this.status = problemTypes[kind].status;
  }

  body(instance?: string): ProblemBody {
    return problemBody(this.kind, this.message, instance, this.extensions);
  }
}

/** What a query parameter or header that takes one value is told when it is sent twice (`?limit=1&limit=2`). */
export const REPEATED_PARAMETER = 'given more than once: send it once';

/**
 * How many field errors a 400 lists, and how long a field name it repeats: a body of 130,000 unknown
 * keys (1 MB) was answered with 7.6 MB naming each twice, and held the event loop for a second.
 */
export const MAX_FIELD_ERRORS = 20;
const MAX_FIELD_NAME = 200;

const shortName = (field: string): string => (field.length > MAX_FIELD_NAME ? `${field.slice(0, MAX_FIELD_NAME)}…` : field);

export const validationProblem = (errors: FieldError[], detail?: string): ProblemError => {
  const listed = errors.slice(0, MAX_FIELD_ERRORS).map((error) => (error.field.length > MAX_FIELD_NAME ? { ...error, field: shortName(error.field) } : error));
  return new ProblemError('validation', detail ?? describeFieldErrors(listed, errors.length), { errors: listed });
};

const describeFieldErrors = (listed: FieldError[], total: number): string => {
  if (total === 0) return 'The request is not valid.';
  const more = total > listed.length ? ` (and ${total - listed.length} more errors; the first ${listed.length} are listed)` : '';
  return `Invalid ${total === 1 ? 'field' : 'fields'}: ${[...new Set(listed.map((e) => e.field))].join(', ')}${more}.`;
};

/** The schema of every error body, for the OpenAPI document. */
export const ProblemSchema = z
  .object({
    type: z.string().describe(`A stable URI under ${PROBLEM_BASE}`),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    instance: z.string().optional(),
    code: z.string().optional(),
    errors: z
      .array(
        z.object({
          field: z.string(),
          in: z.enum(FIELD_LOCATIONS).optional().describe('Where the field was sent, when it was sent in the request'),
          message: z.string(),
        }),
      )
      .optional(),
    details: z.record(z.string(), z.unknown()).optional().describe('Facts of a domain refusal, e.g. the primaryId of a merged customer'),
    currentRevision: z.number().int().optional(),
  })
  .catchall(z.unknown())
  .meta({ id: 'Problem' });

const STATUS_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request: `errors` names each failing field',
  401: 'No valid API key',
  403: "The key's role may not call this route",
  404: 'No such resource',
  406: 'Accept takes none of the formats the route answers: `mediaTypes` names them',
  409: 'Revision conflict (with `currentRevision`) or not possible in the current state',
  413: 'Request too large',
  422: 'A business rule refused the command, or the Idempotency-Key was used for another request',
  428: 'If-Match required',
  429: 'Rate limit exceeded',
  503: 'Dependency unavailable or read models not caught up',
  507: "No room left where the server stores the request (an upload's temporary folder)",
};

/** OpenAPI responses for the given error statuses, documented as `application/problem+json`. */
export const problemResponses = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((status) => [
      status,
      { description: STATUS_DESCRIPTIONS[status] ?? 'Problem', content: { [PROBLEM_CONTENT_TYPE]: { schema: ProblemSchema } } },
    ]),
  );
