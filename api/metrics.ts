import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { IntegrationServices } from '../integration/index.ts';
import { registerPublisherMetrics } from '../integration/metrics.ts';
import { PROBE_DEADLINE_MS, withDeadline } from './deadline.ts';
import type { ReadModelProgress } from './deps.ts';
import { heldBackSeconds, type HeldBack } from '../eventstore/contract.ts';
import { WRITE_REFUSAL_REASONS, type WriteRefusals } from './write-refusals.ts';

/**
 * Prometheus metrics of one app instance. Each app has its own registry (tests build several apps
 * in one process; the global registry would refuse duplicate names).
 */
export interface ApiMetrics {
  registry: Registry;
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  countAppends(command: string, events: number): void;
  /**
   * With `REDIS_URL`: `crm_rate_limit_redis_up` shows where the rate-limit counters are kept now (1 in
   * Redis, shared by every replica; 0 while Redis does not answer and this process counts for itself).
   */
  watchSharedCounters(inRedis: () => boolean): void;
}

/**
 * The reads a scrape makes (projection and publisher status, from the database), each bounded like the
 * probes and shared by every gauge of one scrape. One that fails or misses the bound leaves its series
 * out of that scrape, and says so in `crm_metrics_source_up{source}` (0): otherwise an alert on
 * `crm_projection_lag_seconds` would go quiet exactly while the database is slow or away.
 */
function scrapeSources(registry: Registry) {
  const sources: { name: string; read: () => Promise<unknown> }[] = [];
  new Gauge({
    name: 'crm_metrics_source_up',
    help: `1 when the source (projections, publishers, held_back) was read for this scrape, 0 when it failed or did not answer within ${PROBE_DEADLINE_MS} ms (its series are then left out)`,
    labelNames: ['source'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const source of sources) this.set({ source: source.name }, (await source.read()) === undefined ? 0 : 1);
    },
  });
  return {
    /** A read at scrape time: undefined when it failed or missed the bound. */
    add<T>(name: string, read: () => Promise<T>): () => Promise<T | undefined> {
      let pending: Promise<T | undefined> | undefined;
      const bounded = () =>
        (pending ??= withDeadline(read(), PROBE_DEADLINE_MS, `the ${name} status`)
          .catch(() => undefined)
          .finally(() => (pending = undefined)));
      sources.push({ name, read: bounded });
      return bounded;
    },
  };
}

export function createApiMetrics(options: {
  projections?: ReadModelProgress | undefined;
  publishers?: Pick<IntegrationServices, 'status'> | undefined;
  /** Committed events no feed can read yet (eventstore/contract.ts `heldBack`), where the store tells. */
  heldBack?: (() => Promise<HeldBack>) | undefined;
  /** Whether this process's commands are refused for a full disk (api/write-refusals.ts). */
  writes?: Pick<WriteRefusals, 'status'> | undefined;
}): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const sources = scrapeSources(registry);
  const requests = new Counter({
    name: 'crm_http_requests_total',
    help: 'HTTP requests answered, by route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'crm_http_request_duration_seconds',
    help: 'Time from request received to response sent, by route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    // Up to the request bound (CRM_REQUEST_TIMEOUT_MS, 10 s) and past it for fits and imports, which it
    // does not cut: stalls answered in up to 9.4 s, all of which fell in +Inf when the last bucket was 5 s.
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 7.5, 10, 30, 60],
    registers: [registry],
  });
  const appends = new Counter({
    name: 'crm_events_appended_total',
    help: 'Events appended through the API, by command',
    labelNames: ['command'] as const,
    registers: [registry],
  });
  const { projections, publishers } = options;
  if (options.heldBack) {
    // The lag gauges measure from the head, which stops below a transaction left open anywhere on the
    // server: they read 0 while every new event waits behind it. These do not.
    const held = sources.add('held_back', options.heldBack);
    const heldBackGauge = (name: string, help: string, value: (held: HeldBack) => number) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        async collect() {
          const read = await held();
          // Not read in time: no sample at all. A gauge without labels reads 0 after reset(), and 0 is
          // "nothing held back", which resolved the alert on it while the database was away.
          if (read) this.set(value(read));
          else this.remove();
        },
      });
    heldBackGauge(
      'crm_events_held_back',
      'Committed events past the store head, held back by a transaction still open on the PostgreSQL server (any session): no projection can apply them until it ends',
      (read) => read.events,
    );
    heldBackGauge('crm_events_held_back_seconds', 'Seconds the oldest held-back event has waited (0 when none waits)', heldBackSeconds);
  }
  if (projections) {
    // Read at scrape time: one status call fills every projection's gauges.
    const status = sources.add('projections', () => projections.status());
    new Gauge({
      name: 'crm_projection_lag_events',
      help: 'Events between the store head and the projection checkpoint',
      labelNames: ['projection'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of (await status()) ?? []) if (p.eventsBehind != null) this.set({ projection: p.name }, p.eventsBehind);
      },
    });
    new Gauge({
      name: 'crm_projection_lag_seconds',
      help: 'Seconds the projection is behind the store head',
      labelNames: ['projection'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of (await status()) ?? []) if (p.secondsBehind != null) this.set({ projection: p.name }, p.secondsBehind);
      },
    });
    new Gauge({
      name: 'crm_projection_failed',
      // Public (no key): the stream and event id are in GET /audit/projections, not here.
      help: "Whether the projection stopped on a poison event (1), with the event's position; 0 while it runs",
      labelNames: ['projection', 'position'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of (await status()) ?? []) {
          const failed = p.state === 'failed';
          this.set(
            {
              projection: p.name,
              position: failed && p.failedPosition != null ? p.failedPosition.toString() : '',
            },
            failed ? 1 : 0,
          );
        }
      },
    });
    new Gauge({
      name: 'crm_projection_superseded',
      // Not a failure of the read model (crm_projection_failed, the same on every replica): this process runs another version.
      help: "Whether another version of the CRM rebuilt the projection's read model, so this process writes nothing more to it and must be stopped (1); 0 otherwise",
      labelNames: ['projection'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of (await status()) ?? []) this.set({ projection: p.name }, p.state === 'superseded' ? 1 : 0);
      },
    });
  }
  if (options.writes) {
    const { writes } = options;
    new Gauge({
      name: 'crm_writes_refused',
      // Read from memory: no source to fail, so a 0 is always a reading, never a missed scrape.
      help: "Whether this process's commands are refused (1) for the reason, while its queries answer: disk-full, the database's disk is full or the embedded database's free-space reserve is reached; 0 once a command records again",
      labelNames: ['reason'] as const,
      registers: [registry],
      collect() {
        const status = writes.status();
        for (const reason of WRITE_REFUSAL_REASONS) this.set({ reason }, status.reason === reason ? 1 : 0);
      },
    });
  }
  if (publishers) {
    // The same for the publishers (integration/metrics.ts): one bounded read of their table per scrape.
    const status = sources.add('publishers', () => publishers.status());
    registerPublisherMetrics(registry, status);
  }
  return {
    registry,
    observeRequest(method, route, status, seconds) {
      const labels = { method, route, status: String(status) };
      requests.inc(labels);
      latency.observe(labels, seconds);
    },
    countAppends(command, events) {
      appends.inc({ command }, events);
    },
    watchSharedCounters(inRedis) {
      new Gauge({
        name: 'crm_rate_limit_redis_up',
        help: '1 while the rate-limit counters are kept in Redis (REDIS_URL), shared by every replica; 0 while Redis does not answer and each process counts for itself',
        registers: [registry],
        collect() {
          this.set(inRedis() ? 1 : 0);
        },
      });
    },
  };
}
