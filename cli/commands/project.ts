import { stringValue, UsageError, type CliCommand } from '../command.ts';
import { armShutdownDeadline, untilAborted } from '../shutdown.ts';
import { openWhenDatabaseAnswers } from '../wait-for-database.ts';

const WORKER_ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export const projectCommand: CliCommand = {
  name: 'project',
  maxArguments: 0,
  summary: 'Run only the projections (a worker beside API processes started with CRM_PROJECTIONS=off)',
  usage: 'project [--worker-id <id>]',
  details: `
Follows the event store's global feed from each projection's checkpoint and keeps the read models
in PostgreSQL current. Each batch commits with its checkpoint, so stopping it (Ctrl-C) or a crash
at any point loses nothing and applies nothing twice: start it again and it resumes. A database
that cannot be reached at start is waited for (up to 10 minutes, a line a minute).

Several workers split the projections: each holds a lease on its fair share (ceil(projections /
live workers)) and runs only those. Ctrl-C releases the leases at once; a crashed worker's leases run
out after CRM_PROJECTION_LEASE_SECONDS (default 15) and the others take them over. A worker that lost
a lease (paused, cut off) cannot commit: every batch checks the lease in its transaction. A stop
that takes longer than CRM_SHUTDOWN_TIMEOUT_MS (25 s) names what it still waited on and exits with
code 124.`,
  database: { kind: 'rerunnable', note: 'each projection resumes from its checkpoint' },
  options: {
    'worker-id': {
      type: 'string',
      description:
        'name of this worker in the leases (default: host name and a digest of the database; the same on every start, so a restart takes its leases back at once)',
    },
  },
  async run(run) {
    const workerId = stringValue(run, 'worker-id');
    if (workerId !== undefined && !WORKER_ID.test(workerId)) {
      throw new UsageError(`--worker-id must be 1 to 128 letters, digits or . _ : @ - (got "${workerId.slice(0, 60)}")`);
    }
    const { openCrm } = await import('../../runtime/crm.ts');
    const { createProcessLogger } = await import('../../api/logger.ts');
    // The worker's one logger: its parts' lines as JSON on stdout, under LOG_LEVEL.
    const logger = createProcessLogger(run.config.logLevel);
    const runtime = await openWhenDatabaseAnswers(run, () => openCrm(run.config, { holdSetUpLock: true, workerId, existingOnly: true, logger }));
    const deadline = armShutdownDeadline({ signal: run.signal, timeoutMs: run.config.shutdown.timeoutMs, err: run.err, pending: () => runtime.pendingClose() });
    try {
      await runtime.startProjections();
      await runtime.setUpDone();
      const held = runtime.leases.heldNames();
      run.err(
        `Projections are running as worker ${runtime.leases.workerId} (holding ${held.length > 0 ? held.join(', ') : 'none yet'}). Press Ctrl-C to stop.`,
      );
      await untilAborted(run.signal);
      return 0;
    } finally {
      await runtime.close();
      deadline.disarm();
    }
  },
};
