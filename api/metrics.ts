import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PROBE_DEADLINE_MS, withDeadline } from './deadline.ts';
import type { ReadModelProgress } from './deps.ts';

/**
 * Prometheus metrics of one app instance. Each app has its own registry (tests build several apps
 * in one process; the global registry would refuse duplicate names).
 */
export interface ApiMetrics {
  registry: Registry;
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  countAppends(command: string, events: number): void;
}

export function createApiMetrics(options: { projections?: ReadModelProgress | undefined }): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
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
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const appends = new Counter({
    name: 'crm_events_appended_total',
    help: 'Events appended through the API, by command',
    labelNames: ['command'] as const,
    registers: [registry],
  });
  const { projections } = options;
  if (projections) {
    // Read at scrape time: one status call fills every projection's gauges.
    let pending: ReturnType<ReadModelProgress['status']> | undefined;
    const status = () => (pending ??= withDeadline(projections.status(), PROBE_DEADLINE_MS, 'the projection status').finally(() => (pending = undefined)));
    new Gauge({
      name: 'crm_projection_lag_events',
      help: 'Events between the store head and the projection checkpoint',
      labelNames: ['projection'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of await status().catch(() => [])) if (p.eventsBehind != null) this.set({ projection: p.name }, p.eventsBehind);
      },
    });
    new Gauge({
      name: 'crm_projection_lag_seconds',
      help: 'Seconds the projection is behind the store head',
      labelNames: ['projection'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of await status().catch(() => [])) if (p.secondsBehind != null) this.set({ projection: p.name }, p.secondsBehind);
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
        for (const p of await status().catch(() => [])) {
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
  };
}
