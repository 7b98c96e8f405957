import { Gauge, type Registry } from 'prom-client';
import { isFailing, type PublisherStatus } from './publishers.ts';

/**
 * Publisher metrics, read from the publisher table at scrape time (the publishers may run in another
 * process). Deliveries and failures are totals kept in the table, so they survive restarts.
 * `status` is the caller's bounded read (api/metrics.ts): undefined when the table could not be read
 * in time, which leaves these series out of the scrape and sets `crm_metrics_source_up{source="publishers"}` to 0.
 */
export function registerPublisherMetrics(registry: Registry, status: () => Promise<PublisherStatus[] | undefined>): void {
  const gauge = (name: string, help: string, value: (p: PublisherStatus) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['publisher', 'kind', 'state'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of (await status()) ?? []) this.set({ publisher: p.name, kind: p.kind, state: p.state }, value(p));
      },
    });
  // NaN (Prometheus' "no value") when the backlog could not be counted in time; the seconds stay known.
  gauge(
    'crm_publisher_lag_events',
    'Events recorded after the publisher checkpoint (capped at 10,000; NaN when not counted in time)',
    (p) => p.eventsBehind ?? NaN,
  );
  gauge(
    'crm_publisher_lag_seconds',
    'Age of the oldest event the publisher has not delivered yet (when it cannot be read in time: seconds since the checkpoint last moved)',
    (p) => p.secondsBehind,
  );
  gauge(
    'crm_publisher_deliveries_total',
    'Events delivered (webhook 2xx answers, JetStream acknowledgements) since the publisher was created',
    (p) => p.delivered,
  );
  gauge('crm_publisher_failures_total', 'Failed attempts (receiver errors, timeouts, NATS errors) since the publisher was created', (p) => p.failures);
  gauge(
    'crm_publisher_failing',
    '1 while the publisher fails: its latest attempt failed and none has succeeded since (state="retrying"), or its retries ran out (state="failing", paused); else 0',
    (p) => (isFailing(p) ? 1 : 0),
  );
}
