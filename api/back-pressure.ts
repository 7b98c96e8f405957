import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ProblemError } from './problems.ts';

/**
 * Back-pressure on commands: past a bound, a new command is refused with 503 and Retry-After before
 * its body is read or its key checked (microseconds), instead of joining a queue that only grows
 * (at twice the capacity, queueing turns every answer into seconds). Queries keep being served:
 * they are cheap, and reading is what a client does while it waits.
 *
 * The bounds: commands in flight in this process (the bounded command queue), the event loop's
 * delay (sampled every 100 ms), queries waiting for a pooled database connection, and
 * events delivered to this process's projections but not applied yet.
 */
export interface BackPressureOptions {
  /** Commands being handled at once; the next is refused. 0: no bound. */
  maxCommandsInFlight: number;
  /** Mean event-loop delay over the last sample, ms. 0: not checked. */
  maxEventLoopDelayMs: number;
  /** Queries waiting for a pooled connection. 0: not checked. */
  maxPoolWaiting: number;
  /** Events the projections of this process have yet to apply. 0: not checked. */
  maxProjectionBacklog: number;
  /** Told to refused clients. */
  retryAfterSeconds: number;
}

/**
 * Generous defaults, so a loaded machine (garbage collection, a burst of imports) does not refuse
 * work it would have done in time; the benchmark's overload run sets tighter ones.
 */
export const DEFAULT_BACK_PRESSURE: BackPressureOptions = {
  maxCommandsInFlight: 128,
  maxEventLoopDelayMs: 500,
  maxPoolWaiting: 64,
  maxProjectionBacklog: 20_000,
  retryAfterSeconds: 1,
};

/** What the composition root can measure; each gauge is optional (another engine, projections elsewhere). */
export interface PressureGauges {
  poolWaiting?: () => number;
  projectionBacklog?: () => number;
}

/**
 * Event-loop delay over the last 100 ms: the histogram's mean (as @fastify/under-pressure measures
 * it, except that an interval without samples reads as no delay rather than as infinite: a process
 * starting up under load would otherwise refuse its first commands), or how late this sampler's own
 * tick ran, whichever is larger. The histogram's timer and this one both fire once a blocked loop
 * frees up, in an order Node does not promise; the sampler's own lateness sees the block either way.
 */
const SAMPLE_EVERY_MS = 100;
const sampleEventLoopDelay = () => {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  let delayMs = 0;
  let lastTick = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    const lateness = Math.max(0, now - lastTick - SAMPLE_EVERY_MS);
    lastTick = now;
    const mean = histogram.mean / 1e6 - 10;
    delayMs = Math.max(lateness, Number.isFinite(mean) ? Math.max(0, mean) : 0);
    histogram.reset();
  }, SAMPLE_EVERY_MS);
  timer.unref();
  return {
    current: () => delayMs,
    stop: () => {
      clearInterval(timer);
      histogram.disable();
    },
  };
};

const isCommand = (request: FastifyRequest): boolean => request.method !== 'GET' && request.method !== 'HEAD' && request.method !== 'OPTIONS';

const over = (bound: number, value: number | undefined): boolean => bound > 0 && value !== undefined && value > bound;

export async function registerBackPressure(app: FastifyInstance, options: BackPressureOptions, gauges: PressureGauges): Promise<void> {
  const refuse = (why: string) =>
    new ProblemError('unavailable', `The service is saturated (${why}); retry shortly.`, {}, { 'retry-after': String(options.retryAfterSeconds) });

  const loopDelay = options.maxEventLoopDelayMs > 0 ? sampleEventLoopDelay() : undefined;
  app.addHook('onClose', async () => loopDelay?.stop());

  let inFlight = 0;
  const counted = new WeakSet<FastifyRequest>();
  app.addHook('onRequest', async (request) => {
    if (!isCommand(request)) return;
    if (options.maxCommandsInFlight > 0 && inFlight >= options.maxCommandsInFlight) throw refuse(`${inFlight} commands in flight`);
    const delay = loopDelay?.current();
    if (over(options.maxEventLoopDelayMs, delay)) throw refuse(`event loop delayed ${Math.round(delay!)} ms`);
    const waiting = gauges.poolWaiting?.();
    if (over(options.maxPoolWaiting, waiting)) throw refuse(`${waiting} queries waiting for a database connection`);
    const backlog = gauges.projectionBacklog?.();
    if (over(options.maxProjectionBacklog, backlog)) throw refuse(`the read models are ${backlog} events behind`);
    inFlight++;
    counted.add(request);
  });
  // Every counted request gets a response, or its connection closes (onRequestAbort).
  const release = async (request: FastifyRequest) => {
    if (counted.delete(request)) inFlight--;
  };
  app.addHook('onResponse', release);
  app.addHook('onRequestAbort', release);
}
