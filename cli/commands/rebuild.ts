import { UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';
import { createProgress } from '../progress.ts';

export const rebuildCommand: CliCommand = {
  name: 'rebuild',
  onInterrupt: 'the live read models are left as they were; run the command again to rebuild from the beginning',
  summary: 'Rebuild read models from the events into a shadow schema, then swap them in',
  usage: 'rebuild [name] [--list]',
  details: `
Rebuilds one projection (or all) from position zero into a shadow schema while the live read
models keep answering queries, then swaps the new tables in atomically once caught up.
Interrupting it leaves the live read models untouched; run it again to start over. A rebuild
killed outright (kill -9, a lost host) leaves its shadow schema behind: the next crm command that
opens the read models (serve, project, rebuild, projections) drops it.

Examples:
  crm rebuild              every read model and the analytics aggregates
  crm rebuild customers    one projection (crm rebuild --list names them)`,
  database: { kind: 'rerunnable', note: 'the rebuild starts over in a new shadow schema; the live read models were replaced only if the swap committed' },
  options: {
    list: { type: 'boolean', description: 'list the projections and exit' },
  } satisfies Record<string, OptionWithHelp>,
  async run(run) {
    const { openCrm } = await import('../../runtime/crm.ts');
    const { rebuildProjections, RebuildInterrupted } = await import('../../projections/rebuild.ts');
    const runtime = await openCrm(run.config, { existingOnly: true });
    try {
      if (run.values.list) {
        for (const p of runtime.projections) run.out(`${p.name.padEnd(20)} version ${p.version}  tables: ${p.tables.join(', ')}`);
        return 0;
      }
      const names = run.positionals.length > 0 ? run.positionals : undefined;
      const unknown = (names ?? []).filter((name) => !runtime.projections.some((p) => p.name === name));
      if (unknown.length > 0) {
        throw new UsageError(`no projection ${unknown.map((n) => `"${n}"`).join(', ')}: ${runtime.projections.map((p) => p.name).join(', ')}`);
      }
      // On a store no `crm serve` or `crm project` has run on, the tables the rebuild reads (the base
      // currency) are made first, as `crm export` makes them.
      await runtime.prepareReadModels();
      const head = await runtime.store.headPosition();
      const progress = createProgress({ label: 'rebuild', unit: 'events' });
      // Ctrl-C stops it at the next page or swap attempt: the shadow schema is dropped, the live tables stay.
      const result = await rebuildProjections({
        ...runtime.readSide,
        schema: run.config.schemas.read,
        reportingSchema: run.config.schemas.reporting,
        ...(names ? { names } : {}),
        signal: run.signal,
        onProgress: (p) => progress.update(p.events, p.total ?? undefined),
      }).catch((error: unknown) => {
        if (error instanceof RebuildInterrupted) return undefined;
        throw error;
      });
      if (!result) {
        run.err('\nInterrupted: the live read models were left as they were. Run the same command again to rebuild (it starts from the beginning).');
        return 130;
      }
      // The head read at the start: writes during the rebuild carry it further (caught up to before the swap).
      progress.done(result.position > head ? `position ${result.position} (the head was ${head} at the start)` : `position ${result.position} of ${head}`);
      run.out(`Rebuilt ${result.names.join(', ')} from ${result.events} events and swapped them in.`);
      if (result.notRestored.length > 0)
        run.err(
          `Views built on the reporting views that are gone after the swap (a column they read is gone, or a materialized view): ${result.notRestored.join(', ')}; make them anew.`,
        );
      return 0;
    } finally {
      await runtime.close();
    }
  },
};
