import { Counter, Gauge, type Registry } from 'prom-client';
import { isFailing, type PublisherStatus } from './publishers.ts';
import { REPORTED_PUBLISHER_STATES } from './tables.ts';

/**
 * Publisher metrics, read from the publisher table at scrape time (the publishers may run in another
 * process). `status` is the caller's bounded read (api/metrics.ts): undefined when the table could not
 * be read in time, which leaves these series out of the scrape and sets `crm_metrics_source_up{source="publishers"}` to 0.
 *
 * Every series is labelled by what identifies the publisher (`publisher`, `kind`) and nothing that
 * changes: a `state` label started a new series at each running/retrying/failing change, so
 * `increase()` of the totals and an alert's `for` lost their history exactly around an outage. The
 * state has its own series, `crm_publisher_state`.
 */
export function registerPublisherMetrics(registry: Registry, status: () => Promise<PublisherStatus[] | undefined>): void {
  const labelNames = ['publisher', 'kind'] as const;
  const labels = (p: PublisherStatus) => ({ publisher: p.name, kind: p.kind });
  const gauge = (name: string, help: string, value: (p: PublisherStatus) => number) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of (await status()) ?? []) this.set(labels(p), value(p));
      },
    });
  // The totals are kept in the table (they survive restarts and count what every process delivered), so
  // each scrape sets the counter to the stored total: reset, then add it.
  const total = (name: string, help: string, value: (p: PublisherStatus) => number) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of (await status()) ?? []) this.inc(labels(p), value(p));
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
  total(
    'crm_publisher_deliveries_total',
    'Events delivered (webhook 2xx answers, JetStream acknowledgements, RabbitMQ confirms) since the publisher was created',
    (p) => p.delivered,
  );
  total(
    'crm_publisher_failures_total',
    'Failed attempts (receiver errors, timeouts, NATS and RabbitMQ errors) since the publisher was created',
    (p) => p.failures,
  );
  gauge(
    'crm_publisher_failing',
    '1 while the publisher fails: its latest attempt failed and none has succeeded since (retrying), or its retries ran out (failing, paused); else 0',
    (p) => (isFailing(p) ? 1 : 0),
  );
  // A state set: one series per state, 1 for the current one, so each series stays continuous.
  new Gauge({
    name: 'crm_publisher_state',
    help: `1 for the state the publisher is in (${REPORTED_PUBLISHER_STATES.join(', ')}), 0 for the others`,
    labelNames: ['publisher', 'kind', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const p of (await status()) ?? []) for (const state of REPORTED_PUBLISHER_STATES) this.set({ ...labels(p), state }, p.state === state ? 1 : 0);
    },
  });
}
