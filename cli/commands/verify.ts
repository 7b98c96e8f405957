import type { CliCommand, CommandRun, OptionWithHelp } from '../command.ts';
import type { CrmRuntime } from '../../runtime/crm.ts';
import { createProgress } from '../progress.ts';
import { describeSkips } from '../../audit/summary.ts';

const json = (value: unknown) => JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));

async function verifyChains(runtime: CrmRuntime, run: CommandRun): Promise<number> {
  const progress = createProgress({ label: 'verify --chain', unit: 'events' });
  const result = await runtime.audit.verifyChains({ onProgress: (p) => progress.update(p.checked) });
  progress.done();
  if (result.ok) {
    run.out('Hash chains intact: every stream chain and the global chain verify.');
    return 0;
  }
  const broken = result.firstBroken;
  run.out(
    `Hash chain BROKEN (${broken?.chain} chain)` +
      (broken?.stream ? ` in stream ${broken.stream} at revision ${broken.revision}` : '') +
      (broken?.position !== null && broken?.position !== undefined ? ` at position ${broken.position}` : '') +
      `: ${broken?.reason ?? 'see the details'}`,
  );
  return 1;
}

async function verifyReadModels(runtime: CrmRuntime, run: CommandRun): Promise<number> {
  const progress = createProgress({ label: 'verify', unit: 'events' });
  const result = await runtime.audit.verifyReadModels({
    onProgress: (p) => {
      if (run.signal.aborted) throw new Error('interrupted: nothing was changed; run it again');
      progress.update(p.done, p.total ?? undefined);
    },
  });
  progress.done();
  for (const table of result.tables) {
    run.out(
      `${table.equal ? 'ok  ' : 'DIFF'} ${table.table.padEnd(32)} live ${table.liveRows} rows, replayed ${table.replayedRows} rows${table.equal ? '' : `, ${table.differences} differing`}`,
    );
  }
  for (const line of describeSkips(result.skipped)) run.out(`Gap explained:${line.slice(1)}`);
  if (result.ok) {
    run.out(`Read models equal a replay of ${result.events} events (${result.tables.length} tables, ${Math.round(result.durationMs)} ms).`);
    return 0;
  }
  run.out(`Read models DIFFER from a replay of the events: ${result.differences} rows.`);
  if (result.firstDifference) run.out(`First difference: ${json(result.firstDifference)}`);
  for (const table of result.tables.filter((t) => !t.equal)) for (const row of table.sample.slice(0, 5)) run.out(`  ${json(row)}`);
  if (result.failedProjections.length) run.out(`Failed projections: ${result.failedProjections.join(', ')}`);
  return 1;
}

export const verifyCommand: CliCommand = {
  name: 'verify',
  summary: 'Check that the read models equal a replay of the events (--chain: check tamper evidence)',
  usage: 'verify [--chain]',
  details: `
Replays all events into a shadow schema and compares every read-model table with the live one
(row hashes, then the differing rows). Prints a summary; exits 1 when anything differs.
With --chain, recomputes each stream's hash chain and the global chain and names the first broken
link instead. Read-only either way: interrupting it changes nothing.`,
  options: {
    chain: { type: 'boolean', description: 'verify the hash chains of the events instead of the read models' },
  } satisfies Record<string, OptionWithHelp>,
  async run(run) {
    const { openCrm } = await import('../../runtime/crm.ts');
    const runtime = await openCrm(run.config);
    try {
      return run.values.chain ? await verifyChains(runtime, run) : await verifyReadModels(runtime, run);
    } finally {
      await runtime.close();
    }
  },
};
