import { describe, expect, it } from 'vitest';
import { createApiMetrics } from '../../api/metrics.ts';
import type { HeldBack } from '../../eventstore/contract.ts';
import type { PublisherStatus } from '../../integration/publishers.ts';

/**
 * What an alert reads in /metrics, built from stand-in sources (no database): series that keep their
 * identity across a publisher's state changes, series left out (not 0) when their source was not read,
 * and latency buckets that reach past the request bound.
 */
const sampleLines = (text: string, name: string) => text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));

const publisher = (state: PublisherStatus['state'], delivered: number, failures: number): PublisherStatus => ({
  name: 'webhook:w1',
  kind: 'webhook',
  position: 10n,
  state,
  delivered,
  failures,
  lastError: state === 'running' ? null : 'receiver answered 500',
  lastStatus: state === 'running' ? 200 : 500,
  lastLatencyMs: 3,
  nextRetryAt: null,
  updatedAt: new Date(),
  advancedAt: new Date(),
  eventsBehind: 2,
  secondsBehind: 1,
});

describe('publisher series', () => {
  it('keep one series per publisher through running, retrying and running again: the totals are counters, the state a series of its own', async () => {
    let current = publisher('retrying', 5, 3);
    const metrics = createApiMetrics({ publishers: { status: async () => [current] } });
    const outage = await metrics.registry.metrics();
    current = publisher('running', 6, 4);
    const after = await metrics.registry.metrics();

    for (const name of ['crm_publisher_deliveries_total', 'crm_publisher_failures_total']) expect(after).toContain(`# TYPE ${name} counter`);
    expect(sampleLines(outage, 'crm_publisher_failures_total')).toEqual(['crm_publisher_failures_total{publisher="webhook:w1",kind="webhook"} 3']);
    expect(sampleLines(after, 'crm_publisher_failures_total')).toEqual(['crm_publisher_failures_total{publisher="webhook:w1",kind="webhook"} 4']);
    expect(sampleLines(after, 'crm_publisher_deliveries_total')).toEqual(['crm_publisher_deliveries_total{publisher="webhook:w1",kind="webhook"} 6']);
    for (const name of ['crm_publisher_lag_events', 'crm_publisher_lag_seconds', 'crm_publisher_failing'])
      for (const text of [outage, after]) expect(sampleLines(text, name).join('\n'), name).not.toContain('state=');
    expect(sampleLines(outage, 'crm_publisher_failing')).toEqual(['crm_publisher_failing{publisher="webhook:w1",kind="webhook"} 1']);

    // Every state has its series, 1 for the current one: they too stay the same series.
    const states = (text: string) => sampleLines(text, 'crm_publisher_state');
    expect(states(outage)).toEqual([
      'crm_publisher_state{publisher="webhook:w1",kind="webhook",state="running"} 0',
      'crm_publisher_state{publisher="webhook:w1",kind="webhook",state="retrying"} 1',
      'crm_publisher_state{publisher="webhook:w1",kind="webhook",state="failing"} 0',
      'crm_publisher_state{publisher="webhook:w1",kind="webhook",state="disabled"} 0',
    ]);
    expect(states(after).filter((line) => line.endsWith(' 1'))).toEqual(['crm_publisher_state{publisher="webhook:w1",kind="webhook",state="running"} 1']);
  });
});

describe('events held back', () => {
  it('are left out of a scrape whose read failed or missed the bound, not reported as 0, with crm_metrics_source_up{source="held_back"} 0', async () => {
    let read: () => Promise<HeldBack> = async () => ({ events: 3, oldestWaitedSeconds: 7.2 });
    const metrics = createApiMetrics({ heldBack: () => read() });
    const healthy = await metrics.registry.metrics();
    expect(sampleLines(healthy, 'crm_events_held_back')).toEqual(['crm_events_held_back 3']);
    expect(sampleLines(healthy, 'crm_events_held_back_seconds')).toEqual(['crm_events_held_back_seconds 7']);
    expect(healthy).toContain('crm_metrics_source_up{source="held_back"} 1');

    read = async () => Promise.reject(new Error('connection refused'));
    const refused = await metrics.registry.metrics();
    expect(sampleLines(refused, 'crm_events_held_back')).toEqual([]);
    expect(sampleLines(refused, 'crm_events_held_back_seconds')).toEqual([]);
    expect(refused).toContain('crm_metrics_source_up{source="held_back"} 0');
  });

  it('are left out when the first scrape already cannot read them', async () => {
    const metrics = createApiMetrics({ heldBack: async () => Promise.reject(new Error('stalled')) });
    const text = await metrics.registry.metrics();
    expect(sampleLines(text, 'crm_events_held_back')).toEqual([]);
    expect(sampleLines(text, 'crm_events_held_back_seconds')).toEqual([]);
  });
});

describe('request latency', () => {
  it('has buckets past the 10 s request bound, so an answer of 9.4 s during a stall is not only in +Inf', async () => {
    const metrics = createApiMetrics({});
    metrics.observeRequest('POST', '/customers', 503, 9.4);
    const text = await metrics.registry.metrics();
    const bucket = (le: string) => sampleLines(text, 'crm_http_request_duration_seconds_bucket').find((line) => line.includes(`le="${le}"`));
    expect(bucket('5')).toMatch(/ 0$/);
    expect(bucket('7.5')).toMatch(/ 0$/);
    expect(bucket('10')).toMatch(/ 1$/);
    expect(bucket('30')).toMatch(/ 1$/);
    expect(bucket('60')).toMatch(/ 1$/);
  });
});
