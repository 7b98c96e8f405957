import { heldBackSeconds } from '../../eventstore/contract.ts';
import { UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';

const options: Record<string, OptionWithHelp> = {
  status: { type: 'boolean', description: 'show every publisher: state, checkpoint, lag, deliveries, failures' },
  json: { type: 'boolean', description: 'print JSON instead of text' },
  'nats-from': {
    type: 'string',
    description: 'publish to NATS again from this position (inclusive; 0: the whole history)',
  },
};

export const publishCommand: CliCommand = {
  name: 'publish',
  maxArguments: 0,
  summary: 'Integration publishers (webhooks, NATS JetStream, RabbitMQ): their status; NATS published to again from a position',
  usage: 'publish --status [--json] | publish --nats-from <position>',
  details: `
Publishers run in the projection workers (crm serve with inline projections, or crm project) under
the integration-publishers lease. This shows where each one stands, read from the database, so it
works from any machine. States: running; retrying (its latest attempt failed and none has succeeded
since); failing (paused after its retries ran out); disabled. Exit code 1 when a publisher is failing.
--nats-from moves the NATS publisher's checkpoint, so that the running publisher (within a second)
publishes every event from that position on again: consumers dedupe by event id. A stream created
again (empty) needs none: the publisher publishes the whole history into it by itself, before any new
event. Into a stream that still holds our messages, a failed attempt ends the replay at the stream's
last message.`,
  // Moving the NATS checkpoint writes (set again by a rerun; consumers dedupe by event id); the status reads.
  database: ({ values }) =>
    values['nats-from'] === undefined ? { kind: 'reads' } : { kind: 'rerunnable', note: 'the checkpoint is set again; consumers dedupe by event id' },
  options,
  async run(run) {
    const given = run.values['nats-from'];
    const from = given === undefined ? undefined : String(given);
    if (!run.values.status === (from === undefined)) throw new UsageError('publish needs one of --status or --nats-from <position>');
    if (from !== undefined && !/^\d{1,19}$/.test(from))
      throw new UsageError(`--nats-from takes a position (a whole number, 0 for the whole history), got "${from}"`);
    const { openCrm } = await import('../../runtime/crm.ts');
    const runtime = await openCrm(run.config, { existingOnly: true, installedOnly: true });
    try {
      const services = runtime.integration.services;
      await services.tables.migrate();
      if (from !== undefined) {
        const position = BigInt(from);
        const refusal = await services.replayRefusal(position);
        if (refusal) {
          run.err(`--nats-from: ${refusal}.`);
          return 1;
        }
        if (!(await services.tables.replayNats(position))) {
          run.err('NATS has not published from this database: set CRM_NATS_URL and start crm serve (or crm project) first.');
          return 1;
        }
        run.out(`NATS will be published to again from position ${position} (the publisher picks it up within a second; consumers dedupe by event id).`);
        return 0;
      }
      const [statuses, held] = await Promise.all([services.status(), runtime.store.heldBack?.()]);
      // Committed events a transaction open anywhere on the PostgreSQL server holds back: no publisher can
      // read them yet, and each reads 0 behind meanwhile (its lag counts from the head the feed reads).
      if (held && held.events > 0 && !run.values.json)
        run.out(
          `${held.events} committed events held back for ${heldBackSeconds(held)} s by a transaction open on the PostgreSQL server (any database; pg_stat_activity names it): no publisher sends them until it ends`,
        );
      if (run.values.json) run.out(JSON.stringify(statuses, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2));
      else if (statuses.length === 0)
        run.out(
          `No publishers yet (NATS ${run.config.nats ? `to ${run.config.nats.stream}` : 'off: CRM_NATS_URL is not set'}; ` +
            `RabbitMQ ${run.config.amqp ? `to ${run.config.amqp.exchange}` : 'off: CRM_AMQP_URL is not set'}; no webhook subscriptions).`,
        );
      else
        for (const p of statuses) {
          run.out(
            `${p.name.padEnd(46)} ${p.state.padEnd(8)} position ${p.position}  ${p.eventsBehind ?? '?'} behind (${p.secondsBehind.toFixed(1)} s)  ${p.delivered} delivered  ${p.failures} failures` +
              (p.lastError ? `\n    last error: ${p.lastError}` : ''),
          );
        }
      return statuses.some((p) => p.state === 'failing') ? 1 : 0;
    } finally {
      await runtime.close();
    }
  },
};
