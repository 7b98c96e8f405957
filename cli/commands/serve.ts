import { LISTEN_BACKLOG } from '../../api/back-pressure.ts';
import type { CrmRuntime } from '../../runtime/crm.ts';
import { tuneHeapForServing } from '../../runtime/heap-tuning.ts';
import { intValue, UsageError, type CliCommand, type CommandRun, type OptionWithHelp } from '../command.ts';
import { lookup } from 'node:dns/promises';
import { createServer, isIP } from 'node:net';
import { ConfigError, describeDatabase } from '../config.ts';
import { createBackoff, pause } from '../../eventstore/backoff.ts';
import { demoPlan, demoState, DemoLoadTracker, loadDemo } from '../demo.ts';
import { createProgress } from '../progress.ts';
import { armShutdownDeadline, untilAborted } from '../shutdown.ts';
import { openWhenDatabaseAnswers } from '../wait-for-database.ts';
import { listenWhileWaiting } from '../waiting-server.ts';

const options: Record<string, OptionWithHelp> = {
  port: { type: 'string', short: 'p', description: 'HTTP port (overrides PORT)' },
  'no-demo': { type: 'boolean', description: 'do not load demo data, even on the first embedded start' },
};

/**
 * Demo data goes in on the first embedded start (or into a server when asked for with CRM_DEMO=1),
 * and is resumed when that start was interrupted. Returns the plan to load, or undefined.
 */
async function demoToLoad(runtime: CrmRuntime, run: CommandRun) {
  const { demo, database } = run.config;
  if (!demo.enabled || run.values['no-demo']) return undefined;
  const plan = demoPlan({ seed: demo.seed, customers: demo.customers, until: demo.until });
  const state = await demoState(runtime.store, plan, demo);
  // Another size's demo data is there already: loading this plan over it would collide.
  if (state === 'complete' || state === 'another') return undefined;
  // Embedded: only into a fresh store (someone who already has their own data gets no surprise).
  if (database.kind === 'pglite' && state === 'absent' && (await runtime.store.headPosition()) > 0n) return undefined;
  return { plan, state };
}

/**
 * Starts the inline projections after the demo load, trying again with backoff (capped at 1 s) while
 * the database is away, until they run or the process stops. One line when it fails, one when it
 * starts after that.
 */
async function startProjectionsUntilRunning(runtime: CrmRuntime, run: CommandRun): Promise<void> {
  const backoff = createBackoff({ initialMs: 100, maxMs: 1_000 });
  let failed = false;
  while (!run.signal.aborted) {
    try {
      await runtime.startProjections();
      if (failed) run.err('The projections are running.');
      return;
    } catch (error) {
      if (!failed) run.err(`Starting the projections failed: ${(error as Error).message} Trying again until it works (Ctrl-C stops).`);
      failed = true;
      await pause(backoff.next(), run.signal);
    }
  }
}

/** HOST as configuration refused (exit 78), with what to set instead. */
const hostRefused = (host: string, why: string) =>
  new ConfigError([{ variable: 'HOST', message: `${host} is ${why}: set an address of this machine, e.g. 127.0.0.1, or 0.0.0.0 for every interface` }]);

/** Why the API cannot listen on HOST:PORT, with what to set instead. */
const listenRefused = (host: string, port: number, error: NodeJS.ErrnoException): Error => {
  if (error.code === 'EADDRNOTAVAIL') return hostRefused(host, 'not an address of this machine');
  if (error.code === 'EADDRINUSE' || error.code === 'EACCES')
    return new UsageError(
      `cannot listen on ${host}:${port} (${error.code === 'EADDRINUSE' ? 'the port is in use' : 'permission denied'}). Set PORT to another port (or 0 for any free one).`,
    );
  return error;
};

/**
 * HOST is an address of this machine, or a name this machine resolves to one, and PORT is free there,
 * checked before the database is opened (by listening on them for a moment): a mistyped host failed
 * only at listen, after the start-up, with a stack trace and exit code 1, or never while the database
 * was waited for; a port in use failed after this process had taken projection leases, which the
 * server already running then waited for until they expired.
 */
const assertCanListen = async (host: string, port: number): Promise<void> => {
  if (!isIP(host))
    await lookup(host).catch((error: NodeJS.ErrnoException) => {
      throw hostRefused(host, `neither an IP address nor a name this machine resolves (${error.code ?? error.message})`);
    });
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen({ host, port }, () => probe.close(() => resolve()));
  }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'EADDRINUSE' || (error.code === 'EACCES' && port !== 0)) throw listenRefused(host, port, error);
    throw hostRefused(
      host,
      error.code === 'EADDRNOTAVAIL' ? 'not an address of this machine' : `not one this process may listen on (${error.code ?? error.message})`,
    );
  });
};

export const serveCommand: CliCommand = {
  name: 'serve',
  maxArguments: 0,
  summary: 'Run the HTTP API (and, by default, the projections) — what `npm start` runs',
  usage: 'serve [--port <port>] [--no-demo]',
  details: `
Starts the API on HOST:PORT (default 127.0.0.1:3000). With no DATABASE_URL it runs on an embedded
PostgreSQL (PGlite) in CRM_DATA_DIR (default ./.crm-data), kept across restarts, and loads demo data
on the first start. The projections run in the same process unless CRM_PROJECTIONS=off (then run
\`crm project\` beside it). The first admin key comes from CRM_ADMIN_KEY or is generated on the first
start and printed once. A database server that cannot be reached at start is waited for (up to
10 minutes, a line a minute), so the server comes up once PostgreSQL does. Ctrl-C (or SIGTERM, or SIGHUP) stops it cleanly: requests in flight get
CRM_SHUTDOWN_DRAIN_MS (5 s) to finish while new ones get 503, and a stop that takes longer than
CRM_SHUTDOWN_TIMEOUT_MS (25 s) names what it still waited on and exits with code 124.`,
  database: { kind: 'rerunnable', note: 'it resumes where it stopped (an interrupted demo load too)' },
  options,
  async run(run) {
    tuneHeapForServing();
    const config = run.config;
    const port = intValue(run, 'port', config.http.port, 0, 65535);
    await assertCanListen(config.http.host, port);
    // Loaded on use, so that `--help` stays instant.
    const { openCrm } = await import('../../runtime/crm.ts');
    const { ensureAdminKey } = await import('../../api/auth/api-keys.ts');
    const { createProcessLogger } = await import('../../api/logger.ts');
    // One logger for the process: requests and the runtime's parts as JSON lines on stdout, under
    // LOG_LEVEL; what is said to a person (the banner, the demo load, the stop) goes to stderr.
    const logger = createProcessLogger(config.logLevel);
    /** What is still to close, for a stop past CRM_SHUTDOWN_TIMEOUT_MS: the HTTP side, the demo load, then the runtime's steps. */
    const closing = { http: false, demo: false, runtime: undefined as CrmRuntime | undefined };
    const deadline = armShutdownDeadline({
      signal: run.signal,
      timeoutMs: config.shutdown.timeoutMs,
      err: run.err,
      pending: () => [...(closing.http ? ['http'] : []), ...(closing.demo ? ['demo load'] : []), ...(closing.runtime?.pendingClose() ?? ['start-up'])],
    });
    // A fixed port answers /health while the database is waited for; with PORT=0 the port is only known once the API listens.
    const whileWaiting =
      port === 0
        ? undefined
        : (latest: () => string) => listenWhileWaiting(config.http.host, port, latest, (error) => listenRefused(config.http.host, port, error));
    const runtime = await openWhenDatabaseAnswers(run, () => openCrm(config, { holdSetUpLock: true, servesCommands: true, logger }), {
      ...(whileWaiting ? { whileWaiting } : {}),
    }).catch((error: unknown) => {
      deadline.disarm();
      throw error;
    });
    closing.runtime = runtime;
    try {
      const demo = await demoToLoad(runtime, run);
      const inline = config.projections === 'inline';
      // With demo data to load, the projections start after it: catching up in large batches is far
      // quicker than following thousands of single commands (one connection on PGlite).
      if (inline && !demo) await runtime.startProjections();
      else await runtime.prepareReadModels();
      const tracker = demo ? new DemoLoadTracker(demo.plan.length) : undefined;
      const app = await runtime.buildApi({
        logger: config.logLevel === 'silent' ? false : logger,
        ...(tracker ? { demoLoad: tracker } : {}),
      });
      closing.http = true;
      const admin = await ensureAdminKey(app.keys, { adminKey: config.adminKey });
      await runtime.setUpDone();
      const address = await app.listen({ host: config.http.host, port, backlog: LISTEN_BACKLOG }).catch((error: NodeJS.ErrnoException) => {
        throw listenRefused(config.http.host, port, error);
      });
      const url = address.replace('[::1]', 'localhost').replace('127.0.0.1', 'localhost');
      run.err('');
      run.err(`CRM is running on ${describeDatabase(config)}${config.eventStore.kind === 'eventstoredb' ? ' with events in EventStoreDB' : ''}.`);
      run.err(`  API:   ${url}`);
      run.err(`  Docs:  ${url}/docs  (OpenAPI: ${url}/openapi.json)`);
      run.err(`  Console: ${url}/  (the web console; sign in with an API key)`);
      if (admin.generatedKey) {
        run.err(`  Admin key (generated on first start, shown only now; store it): ${admin.generatedKey}`);
      } else if (config.adminKey) {
        run.err('  Admin key: the value of CRM_ADMIN_KEY');
      } else {
        // The embedded database takes one process: the command would be refused while this one runs.
        const create = 'crm api-key create --role admin --name me';
        run.err(
          `  Admin key: the one printed on the first start (or create one: ${config.database.kind === 'pglite' ? `stop the server, run ${create}, start it again` : create})`,
        );
      }
      run.err(`  Try:   curl -H "Authorization: Bearer <admin key>" ${url}/customers?limit=3`);
      run.err('Press Ctrl-C to stop.');
      // The API answers at once; the demo data streams in behind it through the same command handlers.
      let loading: Promise<void> = Promise.resolve();
      if (demo) {
        closing.demo = true;
        const { plan, state } = demo;
        run.err(
          `${state === 'partial' ? 'Resuming' : 'Loading'} demo data in the background (seed ${config.demo.seed}, ${config.demo.customers} customers, ${plan.length} commands; first start only); the read models fill in once it is loaded...`,
        );
        const progress = createProgress({ label: 'demo', total: plan.length, unit: 'commands' });
        // Transient database errors (a reset, a refusal, a stall) are waited out: every demo command has
        // a stable idempotency key, so one whose outcome was unknown is found, not recorded twice.
        loading = loadDemo(runtime.commands, plan, {
          progress,
          signal: run.signal,
          tracker,
          retry: {
            onWaiting: (error, done) =>
              run.err(`\nDemo data: the database is not available at command ${done + 1} of ${plan.length} (${error.message}); trying again until it is back.`),
            onResumed: (done) => run.err(`Demo data: the database is back; resuming at command ${done + 1} of ${plan.length}.`),
          },
        })
          .then(
            (result) => {
              const refused = Object.entries(result.refused);
              const refusals = refused.length ? `refused by the rules: ${refused.map(([c, n]) => `${c} x${n}`).join(', ')}` : undefined;
              // Stopped part way (Ctrl-C, SIGTERM): not "done"; the next start resumes it.
              if (result.interrupted) progress.done([refusals, 'the next start resumes it'].filter(Boolean).join('; '), 'stopped');
              else progress.done(refusals);
              tracker?.update({ state: result.interrupted ? 'interrupted' : 'loaded' });
              if (!result.interrupted) run.err(`Demo data loaded (${result.executed} commands); the read models are catching up (GET /ready).`);
            },
            (error: unknown) => {
              tracker?.update({ state: 'failed', lastError: (error as Error).message });
              run.err(`Loading the demo data failed: ${(error as Error).message}. Restart to resume it (GET /ready says not ready until then).`);
            },
          )
          .then(async () => {
            if (inline) await startProjectionsUntilRunning(runtime, run);
          })
          // Nothing above throws; should it, the process must not end on an unhandled rejection.
          .catch((error: unknown) => run.err(`Demo data: ${(error as Error).message}`))
          .finally(() => (closing.demo = false));
      }
      await untilAborted(run.signal);
      // The HTTP side first (a load balancer learns from the 503s to send elsewhere), beside the demo
      // load, which stops after its command in flight.
      const http = app.closeWithin(config.shutdown.drainMs).then((drained) => {
        closing.http = false;
        if (!drained) run.err(`Requests still in flight after ${config.shutdown.drainMs} ms (CRM_SHUTDOWN_DRAIN_MS) were cut.`);
      });
      run.err(`Closing: new requests get 503; requests in flight have ${config.shutdown.drainMs} ms to finish.`);
      await Promise.all([http, loading]);
      return 0;
    } finally {
      await runtime.close();
      deadline.disarm();
    }
  },
};
