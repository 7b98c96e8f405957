import { createRequire } from 'node:module';
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { Redis } from 'ioredis';

/**
 * The rate-limit counters of a replica set: in Redis while Redis answers, in this process while it
 * does not. A Redis that refuses or resets is noticed at once (the client loses its connection); one
 * that stalls (its socket open, no answers) costs the requests in flight one command timeout, then
 * none: the counters switch to this process, a probe asks Redis every second, and the first answer
 * switches them back. A probe that keeps timing out reconnects the client, since a stalled socket
 * never recovers by itself. Counting locally meanwhile keeps each key limited (per replica, as
 * without Redis) instead of letting every request through uncounted. Each switch is logged once,
 * whatever the fault, by `RedisHealth` alone (runtime/redis.ts reports only a Redis missing at start).
 */

/** ioredis's own words for a command past `commandTimeout`. */
const TIMED_OUT = /command timed out/i;

type Counter = FastifyRateLimitStore & { read: FastifyRateLimitStore['incr'] };
type CounterMethod = 'incr' | 'read';
type Callback = Parameters<FastifyRateLimitStore['incr']>[1];

// The plugin's own stores, so that both modes count exactly as the plugin does.
const require = createRequire(import.meta.url);
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as new (
  continueExceeding: boolean,
  exponentialBackoff: boolean,
  redis: Redis,
  nameSpace: string,
) => Counter;
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as new (continueExceeding: boolean, exponentialBackoff: boolean) => Counter;

export interface RedisHealthOptions {
  /** Between probes while Redis does not answer. */
  probeEveryMs?: number;
  /** Probes that time out before the client is made to reconnect. */
  reconnectAfterProbes?: number;
  log?: (message: string) => void;
}

/**
 * Whether the counters may go to Redis now: the one place that switches them, logs the switch and
 * tells /metrics. Told of each failed command, and following the client's connection, it probes
 * until Redis answers.
 */
export class RedisHealth {
  private answering: boolean;
  /** A switch to this process was logged (by this health, or at start by runtime/redis.ts): its end is logged too. */
  private reported: boolean;
  private failedProbes = 0;
  /** A timed-out command is being checked with one more ping. */
  private confirming = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly probeEveryMs: number;
  private readonly reconnectAfterProbes: number;
  private readonly log: (message: string) => void;
  private readonly connectionLost = (error?: Error) => this.failed(error ?? new Error('connection closed'));
  /** Reconnected: asked at once rather than at the next probe, so the counters and /metrics follow within a moment. */
  private readonly reconnected = () => {
    if (this.answering || this.stopped) return;
    clearTimeout(this.timer);
    void this.probe();
  };

  constructor(
    private readonly client: Redis,
    options: RedisHealthOptions = {},
  ) {
    this.probeEveryMs = options.probeEveryMs ?? 1_000;
    this.reconnectAfterProbes = options.reconnectAfterProbes ?? 3;
    this.log = options.log ?? (() => undefined);
    // Not connected yet: still connecting (its return is no switch), or already failing, which
    // runtime/redis.ts logged at start (its return is one).
    this.answering = client.status === 'ready';
    this.reported = !this.answering && client.status !== 'connecting' && client.status !== 'connect' && client.status !== 'wait';
    if (!this.answering) this.schedule();
    client.on('error', this.connectionLost);
    client.on('close', this.connectionLost);
    client.on('ready', this.reconnected);
  }

  /** Connected, and answering since the last failure. */
  get usable(): boolean {
    return this.answering && this.client.status === 'ready';
  }

  failed(error: Error): void {
    if (this.stopped) return;
    if (!this.answering) {
      // Not answering since this health began: a first connection failing is runtime/redis.ts's to log, its end ours.
      if (this.client.status !== 'ready') this.reported = true;
      return;
    }
    // A command timed out on a connection still open: asked once more before switching. An event loop
    // held up past the timeout (a busy replica) fires the timer before it reads the answer already
    // there, and healthy Redis was switched off and on again every few minutes under load.
    if (TIMED_OUT.test(error.message) && this.client.status === 'ready') {
      if (this.confirming) return;
      this.confirming = true;
      this.client.ping().then(
        () => (this.confirming = false),
        (again: Error) => {
          this.confirming = false;
          this.switchToLocal(again);
        },
      );
      return;
    }
    this.switchToLocal(error);
  }

  private switchToLocal(error: Error): void {
    if (this.stopped || !this.answering) return;
    this.answering = false;
    this.reported = true;
    this.log(`Redis did not answer (${error.message}); rate limits are counted in this process until it answers again`);
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.client.off('error', this.connectionLost);
    this.client.off('close', this.connectionLost);
    this.client.off('ready', this.reconnected);
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.probe(), this.probeEveryMs);
    this.timer.unref();
  }

  private async probe(): Promise<void> {
    if (this.stopped || this.answering) return;
    try {
      await this.client.ping();
      if (this.stopped || this.answering) return;
      this.answering = true;
      this.failedProbes = 0;
      if (this.reported) this.log('Redis answers again; rate limits are shared by the replicas again');
      this.reported = false;
    } catch {
      if (this.stopped) return;
      this.failedProbes += 1;
      // A stalled socket stays stalled: a new connection is the way back (it may stall too; the probes go on).
      // A client not connected is reconnecting by itself already.
      if (this.failedProbes % this.reconnectAfterProbes === 0 && this.client.status === 'ready') this.client.disconnect(true);
      this.schedule();
    }
  }
}

/** A store constructor for @fastify/rate-limit: Redis counters while `health` allows, local ones otherwise. */
export const sharedCounters = (redis: Redis, health: RedisHealth, nameSpace: string): FastifyRateLimitStoreCtor => {
  class SharedCounters implements Counter {
    constructor(
      private readonly shared: Counter,
      private readonly local: Counter,
    ) {}

    incr(key: string, callback: Callback, timeWindow: number, max: number): void {
      this.count('incr', key, callback, timeWindow, max);
    }

    read(key: string, callback: Callback, timeWindow: number, max: number): void {
      this.count('read', key, callback, timeWindow, max);
    }

    child(routeOptions: Parameters<FastifyRateLimitStore['child']>[0]): Counter {
      return new SharedCounters(this.shared.child(routeOptions) as Counter, this.local.child(routeOptions) as Counter);
    }

    private count(method: CounterMethod, key: string, callback: Callback, timeWindow: number, max: number): void {
      if (!health.usable) return this.local[method](key, callback, timeWindow, max);
      this.shared[method](
        key,
        (error, result) => {
          if (!error) return callback(null, result);
          health.failed(error);
          this.local[method](key, callback, timeWindow, max);
        },
        timeWindow,
        max,
      );
    }
  }
  return class {
    constructor(params: { continueExceeding?: boolean; exponentialBackoff?: boolean }) {
      const continueExceeding = params.continueExceeding ?? false;
      const exponentialBackoff = params.exponentialBackoff ?? false;
      return new SharedCounters(new RedisStore(continueExceeding, exponentialBackoff, redis, nameSpace), new LocalStore(continueExceeding, exponentialBackoff));
    }
  } as unknown as FastifyRateLimitStoreCtor;
};
