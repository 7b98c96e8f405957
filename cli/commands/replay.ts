import type { Kysely } from 'kysely';
import { Interrupted, stringValue, UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';
import { createProgress } from '../progress.ts';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Up to five objects in `schema` that no replay of this deployment made: a schema registered as a
 * replay copy (`read_model_copies`, written before every replay) is ours to replace, and so is one
 * that is empty or does not exist; anything else (another application's tables, another
 * deployment's read models) would be dropped with it.
 */
async function foreignObjects(db: Kysely<unknown>, readSchema: string, schema: string, role: 'schema_name' | 'reporting_schema'): Promise<string[]> {
  const { sql } = await import('kysely');
  const { migrateReadModelCopies } = await import('../../projections/read-model-copies.ts');
  await migrateReadModelCopies(db, readSchema);
  const { rows } = await sql<{ name: string }>`
    SELECT name FROM (
      SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = ${schema} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
      UNION ALL
      SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ${schema}
    ) found
     WHERE NOT EXISTS (SELECT 1 FROM ${sql.id(readSchema, 'read_model_copies')} WHERE ${sql.ref(role)} = ${schema})
     ORDER BY name
     LIMIT 5`.execute(db);
  return rows.map((r) => r.name);
}

/** The earlier replay whose copy `schema` holds in the other role (its read models, or its reporting views), if one does. */
async function replayInOtherRole(
  db: Kysely<unknown>,
  readSchema: string,
  schema: string,
  role: 'schema_name' | 'reporting_schema',
): Promise<string | undefined> {
  const { sql } = await import('kysely');
  const other = role === 'schema_name' ? 'reporting_schema' : 'schema_name';
  const { rows } = await sql<{ purpose: string; schema_name: string }>`
    SELECT purpose, schema_name FROM ${sql.id(readSchema, 'read_model_copies')} WHERE ${sql.ref(other)} = ${schema} LIMIT 1`.execute(db);
  const copy = rows[0];
  if (!copy) return undefined;
  return role === 'schema_name'
    ? `the reporting views of \`${copy.purpose} --schema ${copy.schema_name}\``
    : `the read models of \`${copy.purpose} --schema ${copy.schema_name}\``;
}

export const replayCommand: CliCommand = {
  name: 'replay',
  maxArguments: 0,
  onInterrupt: 'the schema is left incomplete; run the command again to rebuild it from the start',
  summary: 'Build every read model as of a past instant into a separate schema',
  usage: 'replay --as-of <time> --schema <name> [--reporting-schema <name>]',
  details: `
Folds the events recorded up to --as-of (an ISO time; record time) into new read-model tables in
--schema, so a reporting tool can query the past. The live read models are not touched. Safe to
interrupt and re-run: the target schema is rebuilt from the start.

Example:
  crm replay --as-of 2026-06-30T23:59:59Z --schema crm_2026_h1`,
  database: { kind: 'rerunnable', note: 'the schema is rebuilt from the start' },
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
    // The schemas of every other instant (HTTP ?asOf=): `new Date` alone rolls 2024-02-30 over to
    // March 1 and reads "2024-01-01junk" as a date, so a typo would silently build another instant.
    const { IsoDate, IsoDateTime, isBeyondNow } = await import('../../domain/shared.ts');
    if (!IsoDateTime.safeParse(asOfText).success && !IsoDate.safeParse(asOfText).success) {
      throw new UsageError(
        `--as-of must be an ISO time with an offset, e.g. 2026-06-30T23:59:59Z, or a date (its start, UTC), in the years 1900-2200 (got "${asOfText}")`,
      );
    }
    const asOf = new Date(asOfText);
    if (isBeyondNow(asOf.getTime(), Date.now())) {
      throw new UsageError(`--as-of ${asOfText} is in the future: a copy as of a later instant would miss what is recorded until then; give a past instant`);
    }
    if (!schema) throw new UsageError('--schema is required: the schema to build the read models in (e.g. --schema crm_2026_h1)');
    if (!SCHEMA_NAME.test(schema)) throw new UsageError(`--schema must be a lower-case PostgreSQL identifier, e.g. crm_2026_h1 (got "${schema.slice(0, 60)}")`);
    if (reportingSchema !== undefined && !SCHEMA_NAME.test(reportingSchema))
      throw new UsageError('--reporting-schema must be a lower-case PostgreSQL identifier');
    const { schemas } = run.config;
    // Not the live schemas (nor the system's): the replay would replace them. A reporting schema of the
    // live ones would silently point every dashboard's views at this past copy.
    const taken = [schemas.events, schemas.read, schemas.reporting, 'public'];
    const { isShadowOf } = await import('../../projections/shadows.ts');
    for (const [option, name] of [
      ['--schema', schema],
      ['--reporting-schema', reportingSchema],
    ] as const) {
      if (name === undefined) continue;
      if (taken.includes(name) || name.startsWith('pg_') || name === 'information_schema') {
        throw new UsageError(`${option} ${name} is one of the live or system schemas; choose a new name`);
      }
      // A rebuild's or a verification's shadow would be dropped, unannounced, by the next process that opens the read models.
      if (isShadowOf(schemas.read, name)) {
        throw new UsageError(
          `${option} ${name} is named as a rebuild's or verification's working copy, which is dropped when found unused; choose another name`,
        );
      }
    }
    if (reportingSchema === schema) throw new UsageError('--reporting-schema must differ from --schema (its views are named as the tables)');
    const { openCrm } = await import('../../runtime/crm.ts');
    const { replayInto } = await import('../../projections/rebuild.ts');
    const { eraseForgottenInCopy, registerReadModelCopy } = await import('../../projections/read-model-copies.ts');
    const runtime = await openCrm(run.config, { existingOnly: true });
    try {
      for (const [option, name, role] of [
        ['--schema', schema, 'schema_name'],
        ['--reporting-schema', reportingSchema, 'reporting_schema'],
      ] as const) {
        if (name === undefined) continue;
        const foreign = await foreignObjects(runtime.database.db, schemas.read, name, role);
        if (foreign.length > 0) {
          const earlier = await replayInOtherRole(runtime.database.db, schemas.read, name, role);
          if (earlier) throw new UsageError(`${option} ${name} holds ${earlier}; the replay would replace them. Choose a new name.`);
          throw new UsageError(
            `${option} ${name} already holds objects that no crm replay made (${foreign.join(', ')}); the replay would replace them. Choose a new name.`,
          );
        }
      }
      // Registered first: a forget must reach this copy even if the replay is interrupted.
      await registerReadModelCopy(runtime.database.db, schemas.read, {
        schema,
        ...(reportingSchema ? { reportingSchema } : {}),
        purpose: `crm replay --as-of ${asOf.toISOString()}`,
      });
      const progress = createProgress({ label: 'replay', unit: 'events' });
      // Whatever becomes of the replay (done, Ctrl-C, a projection stopped), its copy ends with everyone forgotten by then erased.
      const eraseForgotten = () => eraseForgottenInCopy(runtime.database.db, schemas.read, schema, runtime.personalData);
      const result = await replayInto({
        ...runtime.replaySide,
        schema,
        untilTime: asOf,
        replace: true,
        ...(reportingSchema ? { reportingSchema } : {}),
        signal: run.signal,
        onProgress: (p) => {
          if (run.signal.aborted) throw new Interrupted('interrupted: run the same command again (the schema is rebuilt from the start)');
          progress.update(p.events, p.total ?? undefined);
        },
      }).catch(async (error: unknown) => {
        await eraseForgotten().catch(() => undefined);
        throw error;
      });
      progress.done();
      await eraseForgotten();
      // The replay reads the whole log up to the head and folds only what was recorded by then.
      run.out(
        `Read models as of ${asOf.toISOString()} are in schema ${schema}: ${result.events - result.recordedLater} events recorded by then applied, ` +
          `${result.recordedLater} recorded later left out (${result.events} read up to position ${result.position}).`,
      );
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
