import { UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';

const options: Record<string, OptionWithHelp> = {
  status: { type: 'boolean', description: 'show every publisher: state, checkpoint, lag, deliveries, failures' },
  json: { type: 'boolean', description: 'print JSON instead of text' },
};

export const publishCommand: CliCommand = {
  name: 'publish',
  summary: 'Integration publishers (webhooks, NATS JetStream): their status',
  usage: 'publish --status [--json]',
  details: `
Publishers run in the projection workers (crm serve with inline projections, or crm project) under
the integration-publishers lease. This shows where each one stands, read from the database, so it
works from any machine. States: running; retrying (its latest attempt failed and none has succeeded
since); failing (paused after its retries ran out); disabled. Exit code 1 when a publisher is failing.`,
  database: { kind: 'reads' },
  options,
  async run(run) {
    if (!run.values.status) throw new UsageError('publish needs --status');
    const { openCrm } = await import('../../runtime/crm.ts');
    const runtime = await openCrm(run.config);
    try {
      const services = runtime.integration.services;
      await services.tables.migrate();
      const statuses = await services.status();
      if (run.values.json) run.out(JSON.stringify(statuses, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2));
      else if (statuses.length === 0)
        run.out(`No publishers yet (NATS ${run.config.nats ? `to ${run.config.nats.stream}` : 'off: CRM_NATS_URL is not set'}; no webhook subscriptions).`);
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
