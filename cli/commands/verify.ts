import type { CliCommand, CommandRun, OptionWithHelp } from '../command.ts';
import type { CrmRuntime } from '../../runtime/crm.ts';
import { createProgress } from '../progress.ts';
import { describeLag, describeSkips } from '../../audit/summary.ts';
import type { ReadModelVerification } from '../../audit/verify.ts';

const json = (value: unknown) => JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));

async function verifyChains(runtime: CrmRuntime, run: CommandRun): Promise<number> {
  const progress = createProgress({ label: 'verify --chain', unit: 'events' });
  const result = await runtime.audit.verifyChains({ onProgress: (p) => progress.update(p.checked) });
  progress.done();
  if (result.ok) {
    const { streams, global } = result;
    run.out(
      `Hash chains intact: ${streams.checked} events on their stream chains, ${global.checked} on the global chain` +
        ` (sealed through ${global.sealedThrough === null ? 'nothing yet' : `position ${global.sealedThrough}`}).`,
    );
    // The global chain alone catches a stream re-hashed end to end or truncated with its head: say what it does not cover yet.
    if (global.unsealed > 0) {
      run.out(
        `Note: ${global.unsealed} events after the last seal are covered by their stream chains only until they are sealed ` +
          '(`crm serve` and `crm project` seal every second; POST /audit/chain/seal seals now).',
      );
    }
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
  // Two phases, each counted in its own unit: events replayed, then tables compared.
  let progress = createProgress({ label: 'verify: replay', unit: 'events' });
  let comparing = false;
  const { ReadModelsMovedBack, ReadModelsNotBuilt } = await import('../../audit/verify.ts');
  let result: ReadModelVerification;
  try {
    result = await runtime.audit.verifyReadModels({
      onProgress: (p) => {
        if (run.signal.aborted) throw new Error('interrupted: nothing was changed; run it again');
        if (p.phase === 'compare' && !comparing) {
          comparing = true;
          progress.done();
          progress = createProgress({ label: 'verify: compare', unit: 'tables', ...(p.total !== null ? { total: p.total } : {}) });
        }
        progress.update(p.done, p.total ?? undefined);
      },
    });
  } catch (error) {
    // A store whose read models were never built, or were reset during the check, is a state to explain, not a crash to report.
    if (!(error instanceof ReadModelsNotBuilt || error instanceof ReadModelsMovedBack)) throw error;
    run.err(`crm verify: ${error.message}`);
    return 1;
  }
  progress.done();
  for (const table of result.tables) {
    run.out(
      `${table.equal ? 'ok  ' : 'DIFF'} ${table.table.padEnd(32)} live ${table.liveRows} rows, replayed ${table.replayedRows} rows${table.equal ? '' : `, ${table.differences} differing`}`,
    );
  }
  for (const line of describeSkips(result.skipped)) run.out(`Gap explained:${line.slice(1)}`);
  const lag = describeLag(result);
  if (result.ok) {
    run.out(`Read models equal a replay of ${result.events} events (${result.tables.length} tables, ${Math.round(result.durationMs)} ms).`);
    if (lag) run.out(`Note: ${lag}.`);
    return 0;
  }
  run.out(`Read models DIFFER from a replay of the events: ${result.differences} rows.`);
  if (lag) run.out(`Note: ${lag}.`);
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
  database: { kind: 'reads' },
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
