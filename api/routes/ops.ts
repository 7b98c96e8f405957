import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { heldBackSeconds, type EventStore } from '../../eventstore/contract.ts';
import type { BackgroundLoadStatus, ProjectionStatus, ReadModelProgress } from '../deps.ts';
import { PROBE_DEADLINE_MS, withDeadline } from '../deadline.ts';
import { problemResponses } from '../problems.ts';
import type { ApiMetrics } from '../metrics.ts';
import type { PublisherStatus } from '../../integration/index.ts';
import { REPORTED_PUBLISHER_STATES } from '../../integration/tables.ts';
import { WRITE_REFUSAL_REASONS, type WriteRefusals } from '../write-refusals.ts';

export interface OpsRoutesOptions {
  store: EventStore;
  projections?: ReadModelProgress | undefined;
  metrics: ApiMetrics;
  readyMaxLagSeconds: number;
  benchNoopRoute: boolean;
  /** Webhook and NATS publishers (integration/): shown, never a reason for not-ready (a dead receiver must not take the API out of service). */
  publishers?: { status(): Promise<PublisherStatus[]> } | undefined;
  /** The demo data loaded in the background (`crm serve`): not ready until it is loaded. */
  demoLoad?: { status(): BackgroundLoadStatus } | undefined;
  /** Commands refused for a full disk: shown, never a reason for not-ready (queries still answer). */
  writes: Pick<WriteRefusals, 'status'>;
}

const Health = z.object({ status: z.literal('ok') });
/** Public: numbers and states only. What a failed projection stopped on is in the detail route below. */
const PublicProjection = z.object({
  name: z.string(),
  position: z.string(),
  eventsBehind: z.number().nullable(),
  secondsBehind: z.number().nullable(),
  state: z.string(),
  failedPosition: z.string().nullable().describe('A failed projection: global position of the event it stopped on'),
  leaseExpiresAt: z.string().nullable().describe('When the lease of the worker running it runs out unless renewed (ISO 8601)'),
});
/**
 * For admins and auditors (GET /audit/projections): the event a failed projection stopped on (its
 * stream names a record, the error text may quote a value of it) and the worker holding the lease.
 */
const ProjectionDetail = PublicProjection.extend({
  lastError: z.string().nullable(),
  failedStream: z.string().nullable().describe('Stream of that event'),
  failedEventId: z.string().nullable().describe('Id of that event'),
  owner: z.string().nullable().describe('Projection worker holding its lease (crm project --worker-id), null when none does'),
});
const Publishers = z
  .array(
    z.object({
      name: z.string().describe('webhook:<id>, nats or amqp'),
      state: z
        .enum(REPORTED_PUBLISHER_STATES)
        .describe(
          'retrying: its latest attempt failed and none has succeeded since (NATS and RabbitMQ retry for ever); failing: paused after its retries ran out',
        ),
      position: z.string(),
      eventsBehind: z.number().nullable().describe('Events waiting (up to 10,000); null when they could not be counted in time'),
      secondsBehind: z.number(),
      delivered: z.number(),
      failures: z.number(),
      lastError: z.string().nullable().describe('Error of the latest failed attempt; null once a delivery succeeds after it'),
    }),
  )
  .optional()
  .describe('Integration publishers; informative only: they do not affect readiness');
const Ready = z.object({
  status: z.enum(['ready', 'not_ready']),
  head: z.string().describe('The store head position'),
  projections: z.array(PublicProjection),
  reasons: z.array(z.string()).describe('Why this process is not ready (empty when ready)'),
  warnings: z
    .array(z.string())
    .describe(
      'What an operator must act on that is not a reason for not-ready: a projection stopped on a poison event (every replica reads the same read models; crm_projection_failed in /metrics), commands refused for a full disk while queries answer (crm_writes_refused)',
    ),
  heldBack: z
    .object({
      events: z.number().describe('Committed events no feed can read yet'),
      seconds: z.number().describe('Since the oldest of them was recorded'),
    })
    .nullable()
    .optional()
    .describe(
      'Committed events past `head`, held back by a transaction still open on the PostgreSQL server (any session, pg_stat_activity names it): the read models cannot apply them until it ends. Shown, not a reason for not-ready (crm_events_held_back in /metrics)',
    ),
  publishers: Publishers,
  writes: z
    .object({
      state: z.enum(['accepted', 'refused']),
      reason: z
        .enum(WRITE_REFUSAL_REASONS)
        .nullable()
        .describe("disk-full: the database's disk is full (SQLSTATE 53100) or the embedded database's free-space reserve is reached"),
      since: z.string().nullable().describe('When the first command was refused for it (ISO 8601)'),
      detail: z.string().nullable(),
    })
    .describe(
      "Whether this process's commands are refused while its queries answer: shown (and under warnings), not a reason for not-ready; cleared by the next command recorded (crm_writes_refused in /metrics)",
    ),
  demo: z
    .object({
      state: z.enum(['loading', 'waiting_for_database', 'loaded', 'interrupted', 'failed']),
      done: z.number().describe('Demo commands handled so far'),
      planned: z.number(),
      lastError: z.string().nullable(),
    })
    .optional()
    .describe('The demo data this process loads in the background (first start); not ready until it is loaded'),
});
const ProjectionsDetail = Ready.extend({ projections: z.array(ProjectionDetail) });

const count = (n: number) => n.toLocaleString('en-US');

/** Why the demo data keeps the process from being ready, if it does. */
const demoReason = (demo: BackgroundLoadStatus): string | undefined => {
  const at = `${count(demo.done)} of ${count(demo.planned)} commands`;
  switch (demo.state) {
    case 'loading':
      return `demo data is loading (${at}); the read models fill in once it is loaded`;
    case 'waiting_for_database':
      return `demo data load is waiting for the database at ${at} (${demo.lastError ?? 'unavailable'}); it resumes by itself`;
    case 'failed':
      return `demo data load failed at ${at}: ${demo.lastError ?? 'unknown error'}. Restart crm serve to resume it`;
    default:
      return undefined;
  }
};

const describePoison = (p: ProjectionStatus): string =>
  p.failedPosition != null ? ` at position ${p.failedPosition}${p.failedStream ? ` (stream ${p.failedStream}, event ${p.failedEventId ?? '?'})` : ''}` : '';

/** How long an answer of the public /ready serves the requests after it. */
export const READY_REUSE_MS = 500;

/** Probes and metrics: public, not rate limited, not logged per request. */
export const opsRoutes: FastifyPluginAsyncZod<OpsRoutesOptions> = async (app, options) => {
  const quiet = { rateLimit: false } as const;
  app.get(
    '/health',
    {
      config: quiet,
      logLevel: 'warn',
      schema: { operationId: 'getHealth', tags: ['ops'], summary: 'Liveness (no key needed)', security: [], response: { 200: Health } },
    },
    async () => ({
      status: 'ok' as const,
    }),
  );

  /** Probes the store, the projections and the publishers, each bounded; `detailed` adds what a failed projection stopped on. */
  const readiness = async (detailed: boolean) => {
    const reasons: string[] = [];
    // Both probes run at once, each bounded: a stalled database makes /ready say so, not hang.
    const [head, heldBack, statuses, publishers] = await Promise.all([
      withDeadline(options.store.headPosition(), PROBE_DEADLINE_MS, 'the event store').catch((error: unknown) => {
        reasons.push(`event store: ${(error as Error).message}`);
        return 0n;
      }),
      // Past the head: a lag measured from the head reads 0 while a transaction left open anywhere on
      // the server (a stalled `crm rebuild` link: up to 10 minutes) keeps every new event from the read
      // models. Shown, not a reason for not-ready: every replica is held back alike, and a balancer that
      // took them all out for another application's transaction would turn stale reads into an outage.
      options.store.heldBack ? withDeadline(options.store.heldBack(), PROBE_DEADLINE_MS, 'the event store').catch(() => undefined) : undefined,
      options.projections
        ? withDeadline(options.projections.status(), PROBE_DEADLINE_MS, 'the projection status').catch((error: unknown) => {
            reasons.push(`projections: ${(error as Error).message}`);
            return [];
          })
        : (reasons.push('projections are not running in this process'), []),
      // Shown only, and bounded like the probes: never a reason for not-ready, never a reason to hang.
      options.publishers ? withDeadline(options.publishers.status(), PROBE_DEADLINE_MS, 'the publisher status').catch(() => []) : undefined,
    ]);
    // Projections this process has yet to start are one reason, not one per projection, and point at
    // no command: they start by themselves (crm projections cannot run beside an embedded server anyway).
    const starting = statuses.filter((p) => p.state === 'starting');
    if (starting.length) reasons.push(`projections have not started: ${starting[0]!.lastError ?? 'they start by themselves'}`);
    // Checkpoints in a history the store does not have (events restored from an older backup beside newer
    // read models): the read side is wrong as a whole, serving records the store does not hold, unlike a
    // poison event that stops one read model. Not ready, with what to do.
    const offTheStore = statuses.filter((p) => p.offTheStore);
    if (offTheStore.length > 0)
      reasons.push(
        `the read models do not match the event store: the checkpoints of ${offTheStore.map((p) => p.name).join(', ')} name events it does not hold ` +
          '(the store was restored from an older backup while the read models were not), so reads answer with records and changes the store does not have. ' +
          'Check the hash chains (crm verify --chain --anchors-file <file>), then rebuild the read models from the events (crm rebuild)' +
          (detailed ? `. ${offTheStore[0]!.name}: ${offTheStore[0]!.offTheStore}` : ''),
      );
    const warnings: string[] = [];
    for (const p of statuses) {
      if (p.offTheStore) continue;
      // Not the operator's fault in the read model: this process is the one to stop (every replica of it alike).
      if (p.state === 'superseded') reasons.push(`projection ${p.name} is superseded: ${p.lastError ?? 'another version of the CRM rebuilt its read model'}`);
      // Stopped in the shared read model (a poison event): every replica reads the same one, so not-ready
      // would take them all out of the balancer and turn one bad event into an outage, while commands and
      // the other read models still work. Shown, with crm_projection_failed in /metrics, for an operator
      // to retry or skip; past the lag bound too, as it stands still until then.
      else if (p.state === 'failed' || p.state === 'stopped')
        warnings.push(
          detailed
            ? `projection ${p.name} is ${p.state}${describePoison(p)}${p.lastError ? `: ${p.lastError}` : ''}`
            : `projection ${p.name} is ${p.state}${p.failedPosition != null ? ` at position ${p.failedPosition}` : ''} (details: GET /audit/projections or crm projections list)`,
        );
      else if ((p.secondsBehind ?? 0) > options.readyMaxLagSeconds) {
        // The cause when it is known: no worker holds the lease (every `crm project` stopped), not a slow one.
        const unheld = p.owner === null && p.state === 'running' ? ': no worker runs it (start crm project, or crm serve with projections inline)' : '';
        // Or a worker holds the lease and does not move the checkpoint (an old version's process, stuck):
        // named here only with a key, as the owner is a host name.
        const still = p.owner ? Math.round(p.secondsSinceUpdate ?? 0) : 0;
        const stuck =
          still > options.readyMaxLagSeconds
            ? `: the worker holding its lease${detailed ? ` (${p.owner})` : ''} has not moved it for ${still} s${detailed ? '' : ' (which one: GET /audit/projections)'}`
            : '';
        reasons.push(`projection ${p.name} is ${Math.round(p.secondsBehind ?? 0)} s behind (bound ${options.readyMaxLagSeconds} s)${unheld}${stuck}`);
      }
    }
    // Not a reason for not-ready: queries answer, and every replica on the same database is refused alike.
    const writes = options.writes.status();
    if (writes.state === 'refused') warnings.push(`writes are refused since ${writes.since}: ${writes.detail}`);
    const heldSeconds = heldBack ? heldBackSeconds(heldBack) : 0;
    const demo = options.demoLoad?.status();
    const demoWhy = demo ? demoReason(demo) : undefined;
    if (demoWhy) reasons.push(demoWhy);
    const ready = reasons.length === 0;
    return {
      ready,
      body: {
        status: ready ? ('ready' as const) : ('not_ready' as const),
        head: head.toString(),
        projections: statuses.map((p) => ({
          name: p.name,
          position: p.position.toString(),
          eventsBehind: p.eventsBehind ?? null,
          secondsBehind: p.secondsBehind ?? null,
          state: p.state,
          failedPosition: p.failedPosition != null ? p.failedPosition.toString() : null,
          leaseExpiresAt: p.leaseExpiresAt ? p.leaseExpiresAt.toISOString() : null,
          lastError: p.lastError ?? null,
          failedStream: p.failedStream ?? null,
          failedEventId: p.failedEventId ?? null,
          owner: p.owner ?? null,
        })),
        reasons,
        warnings,
        heldBack: heldBack ? { events: heldBack.events, seconds: heldSeconds } : null,
        writes,
        publishers: publishers?.map((p) => ({
          name: p.name,
          state: p.state,
          position: p.position.toString(),
          eventsBehind: p.eventsBehind,
          secondsBehind: p.secondsBehind,
          delivered: p.delivered,
          failures: p.failures,
          lastError: p.lastError,
        })),
        demo,
      },
    };
  };

  /**
   * The public probe, shared: a request arriving while one probe is in flight, or within
   * READY_REUSE_MS of its answer, gets that answer. /ready has no key and no rate limit (orchestrators
   * poll it), and each probe reads the database: a flood of it (256 at once, no key) held every pooled
   * connection, and commands got 503 "saturated" for as long as it lasted.
   */
  let shared: { answer: ReturnType<typeof readiness>; settledAt?: number } | undefined;
  const sharedReadiness = (): ReturnType<typeof readiness> => {
    if (shared && (shared.settledAt === undefined || performance.now() - shared.settledAt < READY_REUSE_MS)) return shared.answer;
    const probe: NonNullable<typeof shared> = { answer: readiness(false) };
    const settled = () => {
      probe.settledAt = performance.now();
    };
    probe.answer.then(settled, settled);
    shared = probe;
    return probe.answer;
  };

  app.get(
    '/ready',
    {
      config: quiet,
      logLevel: 'warn',
      schema: {
        operationId: 'getReadiness',
        tags: ['ops'],
        summary:
          'Readiness: the event store answers and every projection is running and caught up within the bound; one stopped on a poison event, or commands refused for a full disk, are listed under warnings, not reasons (no key needed)',
        security: [],
        response: { 200: Ready, 503: Ready },
      },
    },
    async (_request, reply) => {
      const { ready, body } = await sharedReadiness();
      // The stream and id of a failed projection's event name a record, its error text may quote a value of it, the owner is a host name.
      const projections = body.projections.map(({ lastError: _e, failedStream: _s, failedEventId: _i, owner: _o, ...shown }) => shown);
      return reply.code(ready ? 200 : 503).send({ ...body, projections });
    },
  );

  app.get(
    '/audit/projections',
    {
      schema: {
        operationId: 'listProjections',
        tags: ['audit'],
        summary: 'Readiness with what a failed projection stopped on (stream, event id, error) and which worker holds each lease',
        response: { 200: ProjectionsDetail, ...problemResponses(400, 401, 403, 429) },
      },
    },
    async () => (await readiness(true)).body,
  );

  app.get(
    '/metrics',
    {
      config: quiet,
      logLevel: 'warn',
      schema: {
        operationId: 'getMetrics',
        tags: ['ops'],
        summary: 'Prometheus metrics (text exposition format; no key needed)',
        security: [],
        response: { 200: { description: 'Metrics', content: { 'text/plain': { schema: z.string() } } } },
      },
    },
    async (_request, reply) => {
      const body = await options.metrics.registry.metrics();
      return reply.type(options.metrics.registry.contentType).send(body);
    },
  );

  if (options.benchNoopRoute) {
    // The benchmark's ceiling: the same stack (auth, hooks, metrics) with a handler that does nothing.
    app.get('/bench/noop', { schema: { hide: true } }, async () => ({ ok: true }));
  }
};
