import { Interrupted, stringValue, UsageError, type CliCommand, type CommandRun, type OptionWithHelp } from '../command.ts';
import { createProgress, type Progress } from '../progress.ts';
import { loggableUrl, userinfoEndsEarly } from '../../shared/loggable-url.ts';
import type { MoveOutcome } from '../../runtime/move-store.ts';

const count = (n: number) => n.toLocaleString('en-US');

/** Exit codes of its own findings (the others are cli/main.ts's). */
const EXIT = { differs: 1, unavailable: 69, cannotCreate: 73, config: 78 } as const;

const options: Record<string, OptionWithHelp> = {
  to: {
    type: 'string',
    description: 'the PostgreSQL database to copy into (postgres://user@host:5432/name); its password in PGPASSWORD keeps it out of the process list',
  },
};

export const moveStoreCommand: CliCommand = {
  name: 'move-store',
  maxArguments: 0,
  summary: 'Copy the embedded store (CRM_DATA_DIR) into a PostgreSQL database, event for event, to run the CRM there',
  usage: 'move-store --to <postgres url>',
  details: `
For a team that outgrows the embedded database: copies every table of the events schema
(CRM_EVENTS_SCHEMA, default crm_events) of the embedded store in CRM_DATA_DIR into the same schema of
a PostgreSQL database, exactly as stored: events with their positions, ids, actors and record times
(as-of queries answer the same), streams, hash chains and seals, API keys (and the admin key),
idempotency keys (a request re-sent with its key answers as before), customer data keys (a forgotten
customer stays forgotten), email indexes, webhooks and publishers. Read models are not copied: the
first start on PostgreSQL builds them from the events.

Stop crm serve first: the embedded store takes one process (a store in use is refused, exit 69). The
target database must exist (createdb) and hold no CRM events yet: the schema is made with the CRM's
own migrations, and one that already holds rows is refused (exit 73). The copy runs in one
transaction, in batches (memory stays flat), with progress on stderr; the target server's
transaction counter is moved past the embedded store's first when it is behind (positions come from
it). Then it checks each table's row count and the hash chains (the global head must be the embedded
store's), and prints what to do next. The embedded folder is left as it was (its tables are
upgraded first when this version's migrations are newer, as any start of this version does).
Interrupting it before the copy commits rolls it back: run it again.

Example:
  PGPASSWORD=secret crm move-store --to postgres://crm@db.internal:5432/crm
  DATABASE_URL=postgres://crm:secret@db.internal:5432/crm npm start`,
  onInterrupt: 'a copy not committed yet is rolled back, the target keeps an empty event store; run the command again',
  database: { kind: 'rerunnable', note: "a copy that did not commit leaves the target's event store empty, which a second run fills" },
  options,
  async run(run) {
    const to = targetUrl(run);
    const { config } = run;
    if (config.eventStore.kind !== 'sql')
      throw new UsageError('EVENTSTORE_URL is set: the events are in EventStoreDB, not in an embedded store, so there is nothing to move');
    if (config.database.kind !== 'pglite')
      throw new UsageError(
        'DATABASE_URL is set, so there is no embedded store to copy from: unset it (CRM_DATA_DIR names the embedded store) and give the PostgreSQL database with --to',
      );
    const dataDir = config.database.dataDir;
    const started = performance.now();
    const { CopyInterrupted, moveStore } = await import('../../runtime/move-store.ts');
    const bars: { counter?: Progress; copy?: Progress; verify?: Progress } = {};
    const stopped = () => {
      for (const bar of Object.values(bars)) bar.done(undefined, 'stopped');
    };
    // The check after the commit stops with this: the copy stands.
    const controller = new AbortController();
    run.signal.addEventListener('abort', () =>
      controller.abort(
        new Interrupted('the store was copied (committed), its check was interrupted: run crm verify --chain with DATABASE_URL set to the target'),
      ),
    );
    let outcome: MoveOutcome;
    try {
      outcome = await moveStore(config, to, {
        signal: controller.signal,
        progress: {
          counter: (used, needed) => (bars.counter ??= createProgress({ label: 'move-store: transaction counter', unit: 'ids' })).update(used, needed),
          copying: (total) => {
            bars.counter?.done("the target server's counter is past the embedded store's positions");
            bars.copy = createProgress({ label: 'move-store: copy', total, unit: 'rows' });
          },
          copied: (rows) => bars.copy?.tick(rows),
          verifying: (checked) => {
            if (!bars.verify) bars.copy?.done();
            (bars.verify ??= createProgress({ label: 'move-store: verify --chain', unit: 'events' })).update(checked);
          },
        },
      });
    } catch (error) {
      stopped();
      if (error instanceof CopyInterrupted)
        throw new Interrupted(`${error.message}: nothing was copied (the target's event store is left empty); run crm move-store again`);
      throw error;
    }
    bars.copy?.done();
    bars.verify?.done();
    return report(run, outcome, { to, dataDir, seconds: (performance.now() - started) / 1000 });
  },
};

const targetUrl = (run: CommandRun): string => {
  const to = stringValue(run, 'to');
  if (to === undefined) throw new UsageError('move-store needs --to <postgres url>: the PostgreSQL database to copy the embedded store into');
  if (!/^postgres(ql)?:\/\/.+/.test(to)) throw new UsageError('--to must be a PostgreSQL URL such as postgres://user@host:5432/database');
  if (userinfoEndsEarly(to))
    throw new UsageError('--to: percent-encode "/", "?" and "#" in its user and password (%2F, %3F, %23), or give the password in PGPASSWORD');
  return to;
};

/** Says what came of it, and what to do next; returns the exit code. */
function report(run: CommandRun, outcome: MoveOutcome, { to, dataDir, seconds }: { to: string; dataDir: string; seconds: number }): number {
  const { events: schema, read, reporting } = run.config.schemas;
  const shown = loggableUrl(to);
  const refuse = (message: string, exit: number) => {
    run.err(`crm move-store: ${message} Nothing was copied.`);
    return exit;
  };
  switch (outcome.kind) {
    case 'unreachable':
      return refuse(
        `cannot reach the target PostgreSQL at ${shown} (${outcome.cause}). Check --to (host, port, user, password, database name: ` +
          'the database must exist, `createdb <name>` makes it) and that the server runs (pg_isready), then run crm move-store again.',
        EXIT.unavailable,
      );
    case 'server_too_old':
      return refuse(`the target server is PostgreSQL ${Math.floor(outcome.version / 10_000)}; the CRM needs 13 or later.`, EXIT.config);
    case 'target_not_empty':
      return refuse(
        `the target's schema ${schema} already holds rows (${outcome.tables.join(', ')}): move-store fills only an empty event store. ` +
          `Give --to a new database (createdb <name>), or, if nothing there is needed, drop its schemas (DROP SCHEMA ${schema}, ${read}, ${reporting} CASCADE) ` +
          'and run it again. If an earlier crm move-store to it was cut off before its summary, check that copy instead: crm verify --chain with DATABASE_URL set to it.',
        EXIT.cannotCreate,
      );
    case 'read_models_built':
      return refuse(
        `the target's read models (schema ${read}) were built from other events: drop that schema (DROP SCHEMA ${read} CASCADE) or give --to a new database, and run it again.`,
        EXIT.cannotCreate,
      );
    case 'tables_differ':
      return refuse(`${outcome.detail}: move what does not belong to the CRM out of the embedded schema, and run it again.`, EXIT.differs);
    case 'moved':
      break;
  }
  const wrong = outcome.tables.filter((t) => t.copied !== t.rows);
  for (const table of outcome.tables) {
    const differs = wrong.includes(table);
    run.out(`${differs ? 'DIFF' : 'ok  '} ${table.name.padEnd(24)} ${count(table.rows)} rows${differs ? `, ${count(table.copied)} copied` : ''}`);
  }
  if (wrong.length > 0) {
    run.out(
      `The copy DIFFERS from the embedded store in ${wrong.length} table(s): do not start the CRM on it; drop its schema ${schema} and run crm move-store again.`,
    );
    return EXIT.differs;
  }
  const { chains, head } = outcome;
  const broken = chains.firstBroken;
  if (broken) {
    run.out(
      `The copied hash chains do not verify (${broken.chain} chain${broken.stream ? `, stream ${broken.stream}` : ''}${broken.position !== null ? `, position ${broken.position}` : ''}: ${broken.reason}). ` +
        'The copy holds what the embedded store holds: run crm verify --chain on the embedded store (DATABASE_URL unset) to see the same finding there.',
    );
    return EXIT.differs;
  }
  if (head !== outcome.sourceHead) {
    run.out(`The copy's global chain head (${head ?? 'none'}) is not the embedded store's (${outcome.sourceHead ?? 'none'}): do not start the CRM on it.`);
    return EXIT.differs;
  }
  const rows = outcome.tables.reduce((sum, t) => sum + t.rows, 0);
  run.out(
    `Moved the embedded store in ${dataDir} to PostgreSQL at ${shown} (schema ${schema}): ` +
      `${count(outcome.events)} events, ${count(rows)} rows in ${outcome.tables.length} tables, in ${seconds.toFixed(1)} s.`,
  );
  run.out(
    `Verified: every table has the embedded store's row count; hash chains intact over ${count(chains.streams.checked)} events` +
      (head ? `, global head ${head} as in the embedded store.` : ' (nothing sealed yet).'),
  );
  run.out('Next steps:');
  run.out(
    '  - Start the CRM on it: DATABASE_URL=<the --to URL> npm start, with the same CRM_*_SCHEMA and master key settings (CRM_MASTER_KEY or CRM_MASTER_KEY_FILE) as the embedded store had.',
  );
  run.out(
    `  - Its first start builds the read models from the ${count(outcome.events)} events (GET /ready answers 503 until they have caught up; ` +
      'crm projections shows where they stand). API keys, the admin key, idempotency keys and webhooks work as before.',
  );
  if (head) run.out(`  - Check the store there against this anchor: crm verify --chain --anchor ${head}`);
  run.out(
    `  - Keep ${dataDir} as it is until you have checked the new store, and start nothing on it any more: what it would record does not reach PostgreSQL.`,
  );
  return 0;
}
