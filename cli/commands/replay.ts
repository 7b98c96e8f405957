import { stringValue, UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';
import { createProgress } from '../progress.ts';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export const replayCommand: CliCommand = {
  name: 'replay',
  summary: 'Build every read model as of a past instant into a separate schema',
  usage: 'replay --as-of <time> --schema <name> [--reporting-schema <name>]',
  details: `
Folds the events recorded up to --as-of (an ISO time; record time) into new read-model tables in
--schema, so a reporting tool can query the past. The live read models are not touched. Safe to
interrupt and re-run: the target schema is rebuilt from the start.

Example:
  crm replay --as-of 2026-06-30T23:59:59Z --schema crm_2026_h1`,
  options: {
    'as-of': { type: 'string', description: 'the instant (ISO time, e.g. 2026-06-30T23:59:59Z)' },
    schema: { type: 'string', description: 'the schema to build the read models in (replaced if it exists)' },
    'reporting-schema': { type: 'string', description: 'also create the documented reporting views over it here' },
  } satisfies Record<string, OptionWithHelp>,
  async run(run) {
    const asOfText = stringValue(run, 'as-of');
    const schema = stringValue(run, 'schema');
    const reportingSchema = stringValue(run, 'reporting-schema');
    if (!asOfText) throw new UsageError('--as-of is required (an ISO time such as 2026-06-30T23:59:59Z)');
    const asOf = new Date(asOfText);
    if (Number.isNaN(asOf.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(asOfText)) throw new UsageError(`--as-of must be an ISO time (got "${asOfText}")`);
    if (!schema || !SCHEMA_NAME.test(schema)) throw new UsageError('--schema must be a lower-case PostgreSQL identifier');
    if (reportingSchema !== undefined && !SCHEMA_NAME.test(reportingSchema))
      throw new UsageError('--reporting-schema must be a lower-case PostgreSQL identifier');
    const { schemas } = run.config;
    if ([schemas.events, schemas.read, schemas.reporting].includes(schema)) {
      throw new UsageError(`--schema ${schema} is one of the live schemas; choose a new name`);
    }
    const { openCrm } = await import('../../runtime/crm.ts');
    const { replayInto } = await import('../../projections/rebuild.ts');
    const { registerReadModelCopy } = await import('../../projections/read-model-copies.ts');
    const runtime = await openCrm(run.config);
    try {
      // Registered first: a forget must reach this copy even if the replay is interrupted.
      await registerReadModelCopy(runtime.database.db, schemas.read, {
        schema,
        ...(reportingSchema ? { reportingSchema } : {}),
        purpose: `crm replay --as-of ${asOf.toISOString()}`,
      });
      const progress = createProgress({ label: 'replay', unit: 'events' });
      const result = await replayInto({
        ...runtime.replaySide,
        schema,
        untilTime: asOf,
        replace: true,
        ...(reportingSchema ? { reportingSchema } : {}),
        onProgress: (p) => {
          if (run.signal.aborted) throw new Error('interrupted: run the same command again (the schema is rebuilt from the start)');
          progress.update(p.events);
        },
      });
      progress.done();
      run.out(`Read models as of ${asOf.toISOString()} are in schema ${schema} (${result.events} events, up to position ${result.position}).`);
      if (result.failed.length > 0) {
        run.err(`These projections stopped on an event they could not apply: ${result.failed.join(', ')} (see ${schema}.projection_checkpoints).`);
        return 1;
      }
      return 0;
    } finally {
      await runtime.close();
    }
  },
};
