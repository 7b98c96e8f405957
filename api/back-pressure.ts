import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerFactory, FastifyServerOptions } from 'fastify';
import { PROBLEM_CONTENT_TYPE, problemBody, ProblemError } from './problems.ts';

/**
 * Back-pressure on commands: past a bound, a new command is refused with 503 and Retry-After before
 * its body is read or its key checked (microseconds), instead of joining a queue that only grows
 * (at twice the capacity, queueing turns every answer into seconds). Queries keep being served:
 * they are cheap, and reading is what a client does while it waits.
 *
 * The bounds: commands in flight in this process, how long a command may wait for one of those
 * places (below), the event loop's delay (sampled every 100 ms), queries waiting for a pooled
 * database connection, and events delivered to this process's projections but not applied yet.
 */
export interface BackPressureOptions {
  /** Commands being handled at once; the next waits for a place (maxCommandWaitMs). 0: no bound. */
  maxCommandsInFlight: number;
  /**
   * Longest a command waits for a place among those in flight, ms; one whose turn would come later
   * is refused at once. 0: no waiting, a command finding every place taken is refused.
   */
  maxCommandWaitMs: number;
  /**
   * The same bound once commands have been waiting without a break for maxCommandWaitMs (sustained
   * overload, not a burst), until no one has waited for 100 ms (or this long, if longer): accepted
   * commands then wait at most this long, the rest are refused.
   */
  overloadedCommandWaitMs: number;
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
 * work it would have done in time; the benchmark's overload run sets tighter ones. Tried on
 * 2026-12-05 and not taken (`npm run bench -- api`, continuous overload runs): 64 places with
 * 250/50 ms and 32 with 100/25 ms left the accepted p99 at twice the maximum at 15-16 s and 4 s, and
 * 32 places refused a sixth of 64 connections on one customer; later, with the longer listen queue
 * (LISTEN_BACKLOG), 64 places with 1 s/25 ms left it at 11 s. What sets it is how fast connections are
 * accepted (LISTEN_BACKLOG), not the places.
 */
export const DEFAULT_BACK_PRESSURE: BackPressureOptions = {
  maxCommandsInFlight: 128,
  maxCommandWaitMs: 1_000,
  overloadedCommandWaitMs: 100,
  maxEventLoopDelayMs: 500,
  maxPoolWaiting: 64,
  maxProjectionBacklog: 20_000,
  retryAfterSeconds: 1,
};

/** Why a command gets no place: said in the 503's detail. */
export class NoPlace extends Error {}

export interface CommandPlaces {
  /** Takes a place at once (undefined), or a promise of one that rejects with NoPlace when its wait would pass the bound. */
  enter(): Promise<void> | undefined;
  /**
   * Gives the place back, `heldMs` after it was taken (unknown: not counted in the average), to the
   * longest-waiting command still within its bound; those past it are refused on the way.
   */
  leave(heldMs?: number): void;
  /** Why `enter` would refuse a command now (undefined: it would take a place or wait for one); changes nothing. */
  refusal(): string | undefined;
  /** Withdraws a command still waiting (its client went away: refused); false when it no longer waits (given a place, or refused). */
  withdraw(waiting: Promise<void>): boolean;
  inFlight(): number;
  waiting(): number;
}

/** How long the line for places must stay empty, at least, for a sustained overload to be over. */
const OVERLOAD_ENDS_AFTER_MS = 100;

/**
 * The places of commands in flight, with a wait bounded by time rather than by a count: a queue's
 * length says little about how long its last entry will wait, and the time is what a client feels.
 * As in CoDel and in Facebook's server queues: while the queue empties now and then (a burst), a
 * command may wait up to `maxCommandWaitMs`; once it has not emptied for that long (overload), only
 * up to `overloadedCommandWaitMs` until it has stayed empty for a while, so what is accepted keeps a
 * short wait and the excess is refused.
 * A command whose turn would come after its bound, at the pace places were given back lately, is
 * refused at once rather than when its timer runs out: refusals stay fast and hold nothing.
 */
export function createCommandPlaces(
  options: Pick<BackPressureOptions, 'maxCommandsInFlight' | 'maxCommandWaitMs' | 'overloadedCommandWaitMs'>,
  now: () => number = () => performance.now(),
): CommandPlaces {
  const { maxCommandsInFlight: places, maxCommandWaitMs, overloadedCommandWaitMs } = options;
  interface Waiter {
    admit(): void;
    refuse(why: string): void;
    timer: NodeJS.Timeout;
    /** When it began to wait, and for how long it may. */
    since: number;
    limit: number;
  }
  const queue = new Map<Promise<void>, Waiter>();
  let inFlight = 0;
  const overloadedMs = Math.min(overloadedCommandWaitMs, maxCommandWaitMs);
  /**
   * When the current stretch of waiting began: overload, once it is older than maxCommandWaitMs. It
   * begins when a first waiter joins an empty line (else a burst after a quiet spell was treated as
   * overload from its second waiter on), unless the line emptied in an overload only a moment ago
   * (less than `overloadEndsAfterMs`): under sustained overload the line empties now and then (clients
   * send in clumps), and when each of those gaps ended the overload, the next second of commands
   * waited up to the full maxCommandWaitMs again. Before an overload, every gap starts a new stretch,
   * so a line that is often briefly in use is never taken for one.
   */
  let stretchFrom = 0;
  /** When the line last emptied, and whether it was in an overload then. */
  let emptiedAt = Number.NEGATIVE_INFINITY;
  let overloadedWhenEmptied = false;
  const overloadEndsAfterMs = Math.min(maxCommandWaitMs, Math.max(overloadedCommandWaitMs, OVERLOAD_ENDS_AFTER_MS));
  /** How long a command holds its place, a moving average (ms). */
  let heldMs = 0;

  const describe = (why: string) => `${inFlight} commands in flight${queue.size > 0 ? `, ${queue.size} waiting` : ''}; ${why}`;
  const refuse = (why: string) => new NoPlace(describe(why));
  /** The current stretch of waiting has lasted past maxCommandWaitMs. */
  const longStretch = (at: number) => at - stretchFrom > maxCommandWaitMs;
  const inOverloadGap = (at: number) => overloadedWhenEmptied && at - emptiedAt < overloadEndsAfterMs;
  /** Someone has waited without a break for longer than maxCommandWaitMs, or did until a moment ago. */
  const overloaded = (at: number) => (queue.size > 0 ? longStretch(at) : inOverloadGap(at));
  const bound = (at: number) => (overloaded(at) ? overloadedMs : maxCommandWaitMs);
  const free = () => places <= 0 || (inFlight < places && queue.size === 0);
  const noTurn = (limit: number) => `no turn within ${limit} ms`;
  /** Takes a waiter out of the line (its timer too), noting when the line empties. */
  const remove = (turn: Promise<void>, waiter: Waiter, at: number): void => {
    clearTimeout(waiter.timer);
    queue.delete(turn);
    if (queue.size === 0) {
      overloadedWhenEmptied = longStretch(at);
      emptiedAt = at;
    }
  };
  /** Why a command arriving at `at` is refused rather than given a place or a wait. */
  const refusalNow = (at: number): string | undefined => {
    if (free()) return undefined;
    const limit = bound(at);
    if (limit <= 0) return 'no place free';
    // Places free up `places` at a time every `heldMs` on average: the turn of the n-th in line. The
    // average follows commands that have finished, so it lags a load that is rising; a newcomer waits
    // at least as long as the command at the head of the line has already (CoDel's signal): the
    // larger of the two decides. With the average alone, the first second of a burst at twice the
    // maximum queued a second of commands on the pace of unloaded ones, and answered them seconds late.
    const head = queue.values().next();
    const waited = head.done ? 0 : at - head.value.since;
    const expected = Math.max(((queue.size + 1) * heldMs) / places, waited);
    return expected > limit ? `a turn expected in ${Math.round(expected)} ms, past the ${limit} ms a command may wait` : undefined;
  };

  return {
    inFlight: () => inFlight,
    waiting: () => queue.size,
    refusal: () => {
      const why = refusalNow(now());
      return why === undefined ? undefined : describe(why);
    },
    enter() {
      if (free()) {
        inFlight++;
        return undefined;
      }
      const at = now();
      const why = refusalNow(at);
      if (why !== undefined) throw refuse(why);
      if (queue.size === 0 && !inOverloadGap(at)) stretchFrom = at;
      const limit = bound(at);
      let waiter!: Waiter;
      const turn = new Promise<void>((resolve, reject) => {
        waiter = {
          admit: resolve,
          refuse: (reason) => reject(refuse(reason)),
          timer: setTimeout(() => {
            remove(turn, waiter, now());
            waiter.refuse(noTurn(limit));
          }, limit),
          since: at,
          limit,
        };
      });
      queue.set(turn, waiter);
      return turn;
    },
    leave(held) {
      if (held !== undefined) heldMs = heldMs === 0 ? held : heldMs * 0.9 + held * 0.1;
      const at = now();
      // The place goes straight to the longest-waiting command (a Map keeps insertion order) that is
      // still within its bound. One past it is refused here: its timer is due but has not run (a
      // saturated event loop runs timers late), and starting it now would answer a client later than
      // the bound promised it.
      for (const [turn, waiter] of queue) {
        remove(turn, waiter, at);
        if (at - waiter.since > waiter.limit) {
          waiter.refuse(noTurn(waiter.limit));
          continue;
        }
        waiter.admit();
        return;
      }
      inFlight--;
    },
    withdraw(turn) {
      const waiter = queue.get(turn);
      if (!waiter) return false;
      remove(turn, waiter, now());
      waiter.refuse('its client went away');
      return true;
    },
  };
}

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

/**
 * The listening socket's queue of connections not yet accepted (Node's default: 511; the kernel caps
 * it at net.core.somaxconn, 4096 on these machines). Under overload a client opens connections faster
 * than a busy event loop accepts them; past the queue the kernel drops them without a word and each
 * client tries again 1, 3, 7 s later: answers seconds late that no bound here can see or refuse. At
 * twice the purchase maximum with the default bounds, the kernel counted 33,887 overflows of 511 over
 * one bench run's overload runs (accepted p99 15-16 s); of 4,096, none. What is left: connections
 * wait in that queue, as libuv accepts one connection per turn of the event loop (its pull request
 * 3696, "don't accept() connections in a loop", in the libuv 1.46 of Node 20.20), and a loaded loop
 * turns 12-80 times a second; at the defaults 3,800 waited at once for up to 9 s while the server
 * answered what it had accepted within 0.3 s (p99).
 */
export const LISTEN_BACKLOG = 4_096;

/** Commands are every method but the reading ones. */
/** How often Node looks for connections whose headers are past their bound: a refusal comes at most this long after it. */
const HEADERS_CHECK_MS = 1_000;

const isCommand = (method: string | undefined): boolean => method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS';

const over = (bound: number, value: number | undefined): boolean => bound > 0 && value !== undefined && value > bound;

export interface BackPressure {
  /**
   * Fastify's `serverFactory`: the HTTP server, which answers a command that would be refused anyway
   * before Fastify routes it (no hooks, no error handler, no metrics: a refusal costs little more
   * than parsing its headers, which matters most when refusals are most of the traffic).
   */
  serverFactory: FastifyServerFactory;
  /** The hooks that give each command its place (or its bounded wait for one) and take it back. */
  register(app: FastifyInstance): void;
}

export function createBackPressure(
  options: BackPressureOptions,
  gauges: PressureGauges,
  server: {
    requestId: (request: IncomingMessage) => string;
    /** Counts a command answered by the server alone (the hooks' metrics never see it). */
    shed: (method: string, seconds: number) => void;
    /** The request bound (CRM_REQUEST_TIMEOUT_MS, api/request-timeout.ts): the headers too must arrive within it. */
    requestTimeoutMs: number;
  },
): BackPressure {
  const loopDelay = options.maxEventLoopDelayMs > 0 ? sampleEventLoopDelay() : undefined;
  const places = createCommandPlaces(options);
  const retryAfter = String(options.retryAfterSeconds);
  const saturated = (why: string) => `The service is saturated (${why}); retry shortly.`;
  const refuse = (why: string) => new ProblemError('unavailable', saturated(why), {}, { 'retry-after': retryAfter });

  /** Why a new command is refused now, or undefined: it may take a place or wait for one. */
  const pressure = (): string | undefined => {
    const delay = loopDelay?.current();
    if (over(options.maxEventLoopDelayMs, delay)) return `event loop delayed ${Math.round(delay!)} ms`;
    const poolWaiting = gauges.poolWaiting?.();
    if (over(options.maxPoolWaiting, poolWaiting)) return `${poolWaiting} queries waiting for a database connection`;
    const backlog = gauges.projectionBacklog?.();
    if (over(options.maxProjectionBacklog, backlog)) return `the read models are ${backlog} events behind`;
    return places.refusal();
  };

  const shed = (request: IncomingMessage, response: ServerResponse): boolean => {
    // A browser's cross-origin request goes on to the hooks, which refuse it with the CORS headers
    // (without them the page could read neither the 503 nor its Retry-After).
    if (!isCommand(request.method) || request.headers.origin !== undefined) return false;
    const started = performance.now();
    const why = pressure();
    if (why === undefined) return false;
    // The answer the error handler would give (api/errors.ts), without Fastify, and without an Error
    // object: capturing its stack was a fifth of a refusal's cost, and refusals are most of an overload.
    const body = JSON.stringify(problemBody('unavailable', saturated(why), request.url?.split('?')[0]));
    // Headers as one flat list: Node then skips building and checking a headers object.
    response.writeHead(503, [
      'content-type',
      PROBLEM_CONTENT_TYPE,
      'content-length',
      String(Buffer.byteLength(body)),
      'retry-after',
      retryAfter,
      'x-request-id',
      server.requestId(request),
      // As the API's other answers (helmet in api/app.ts): JSON that nothing may run or frame.
      'content-security-policy',
      "default-src 'none';frame-ancestors 'none'",
      'x-content-type-options',
      'nosniff',
    ]);
    response.end(body);
    server.shed(request.method ?? 'POST', (performance.now() - started) / 1000);
    return true;
  };

  return {
    serverFactory: (handler, fastifyOptions) => {
      const opts = fastifyOptions as Required<Pick<FastifyServerOptions, 'keepAliveTimeout' | 'requestTimeout' | 'connectionTimeout' | 'maxRequestsPerSocket'>>;
      // Without Node's own Host check, which answers a bare 400: api/client-errors.ts refuses it as a problem.
      // Headers arriving slowly get the 408 (api/client-errors.ts) at the bound a body gets it: Node's own
      // 60 s, checked every 30 s, held a connection sending a header byte now and then for over a minute.
      // Node wants the headers' bound within its own request bound, when that is set.
      const headersTimeout = opts.requestTimeout > 0 ? Math.min(server.requestTimeoutMs, opts.requestTimeout) : server.requestTimeoutMs;
      const httpServer = createServer(
        { requireHostHeader: false, headersTimeout, connectionsCheckingInterval: Math.min(HEADERS_CHECK_MS, headersTimeout) },
        (request, response) => {
          if (!shed(request, response)) handler(request, response);
        },
      );
      // What Fastify sets on a server it makes itself: above all its 72 s keep-alive, longer than a
      // load balancer's idle timeout (Node's own 5 s makes the balancer reuse closed connections: 502s).
      httpServer.keepAliveTimeout = opts.keepAliveTimeout;
      httpServer.requestTimeout = opts.requestTimeout;
      httpServer.setTimeout(opts.connectionTimeout);
      if (opts.maxRequestsPerSocket > 0) httpServer.maxRequestsPerSocket = opts.maxRequestsPerSocket;
      return httpServer;
    },
    register(app) {
      app.addHook('onClose', async () => loopDelay?.stop());
      /**
       * A command's place goes back once, at the first sign that its exchange is over: the response
       * closed (sent, or its connection gone), finished (onResponse), or the request aborted. Fastify's
       * onResponse and onRequestAbort alone never ran for a command whose client left after sending it
       * whole (the request was read, not aborted, and the late response goes to a destroyed socket:
       * no finish, no error), so such commands kept their places for good and, once all were kept,
       * every command was refused. The close alone never comes for a pipelined response queued behind
       * one whose connection died (Fastify reports that request aborted instead). A place whose
       * exchange ends while its handler runs (its client left, the request timeout answered 503, the
       * server cut connections as it closed) goes back when the handler returns: the work goes on (the
       * database's, above all), and a place given back at once let one more command in per exchange cut
       * short, past the bound. The handler's own bounds end it: the pool's wait for a connection and
       * the statement timeouts (the long-work ones for fitting models and reading an upload).
       */
      interface Holder {
        turn?: Promise<void>;
        heldSince?: number;
        /** The exchange is over, or the command was refused: its place (or its wait) is settled. */
        settled: boolean;
        /** Its route's handler is running: a place whose exchange ends meanwhile goes back when the handler returns. */
        handling: boolean;
      }
      const holders = new WeakMap<FastifyRequest, Holder>();
      /** A settled holder's place back, or its wait withdrawn. */
      const giveBack = (holder: Holder): void => {
        if (holder.heldSince !== undefined) places.leave(performance.now() - holder.heldSince);
        else if (holder.turn) places.withdraw(holder.turn);
      };
      const ended = (request: FastifyRequest): void => {
        const holder = holders.get(request);
        if (!holder || holder.settled) return;
        holder.settled = true;
        if (!holder.handling) giveBack(holder);
      };
      const asRefusal = (error: unknown): unknown => (error instanceof NoPlace ? refuse(error.message) : error);
      // Checked again here: requests injected without the server (tests), and what changed since.
      app.addHook('onRequest', async (request, reply) => {
        if (!isCommand(request.method)) return;
        const why = pressure();
        if (why !== undefined) throw refuse(why);
        let turn: Promise<void> | undefined;
        try {
          turn = places.enter();
        } catch (error) {
          throw asRefusal(error);
        }
        const holder: Holder = { turn, heldSince: turn ? undefined : performance.now(), settled: false, handling: false };
        holders.set(request, holder);
        reply.raw.once('close', () => ended(request));
        if (!turn) return;
        try {
          await turn;
        } catch (error) {
          holder.settled = true;
          throw asRefusal(error);
        }
        if (holder.settled) {
          // Given a place after its client had left (handed over before the end was seen, so the
          // withdrawal found nothing to withdraw): back at once.
          places.leave();
          throw refuse('its client went away');
        }
        holder.heldSince = performance.now();
      });
      app.addHook('onResponse', async (request) => ended(request));
      app.addHook('onRequestAbort', async (request) => ended(request));
      // Every command route's handler (registered after this) tells when it runs and when it has
      // returned: an async handler when its promise settles, any other when its call returns.
      app.addHook('onRoute', (route) => {
        if (![route.method].flat().some(isCommand)) return;
        const handler = route.handler;
        route.handler = function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): unknown {
          const holder = holders.get(request);
          // One whose exchange is over already gave its place back (its client left before it started).
          if (!holder || holder.settled) return handler.call(this, request, reply);
          holder.handling = true;
          const returned = (): void => {
            holder.handling = false;
            if (holder.settled) giveBack(holder);
          };
          let result: unknown;
          try {
            result = handler.call(this, request, reply);
          } catch (error) {
            returned();
            throw error;
          }
          if (typeof (result as PromiseLike<unknown> | undefined)?.then !== 'function') {
            returned();
            return result;
          }
          return Promise.resolve(result).finally(returned);
        };
      });
    },
  };
}
