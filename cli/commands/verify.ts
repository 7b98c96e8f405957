import { terminalText } from '../../shared/terminal-text.ts';
import { appendFile, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Interrupted, stringValue, UsageError, type CliCommand, type CommandRun, type OptionWithHelp } from '../command.ts';
import type { ChainAnchor } from '../../audit/index.ts';
import type { CrmRuntime } from '../../runtime/crm.ts';
import { createProgress } from '../progress.ts';
import {
  chainsNextSteps,
  describeCheckpointsAhead,
  describeLag,
  describeReplayFailures,
  describeSkips,
  describeMergeFindings,
  readModelsNextSteps,
} from '../../audit/summary.ts';
import type { ReadModelVerification } from '../../audit/verify.ts';

const json = (value: unknown) => JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));

const printNextSteps = (run: CommandRun, steps: readonly string[]): void => {
  if (steps.length === 0) return;
  run.out('Next steps:');
  for (const step of steps) run.out(`  - ${step}`);
};

/** The anchors given (`--anchor`, and each line of `--anchors-file` that is not blank or a # comment). */
async function anchorsOf(run: CommandRun): Promise<{ anchors: ChainAnchor[]; file: string | undefined }> {
  const { parseChainAnchor } = await import('../../audit/index.ts');
  const file = stringValue(run, 'anchors-file');
  const texts = [...((run.values.anchor as string[] | undefined) ?? [])];
  if (file) {
    const content = await readFile(resolve(file), 'utf8').catch((error: NodeJS.ErrnoException) => {
      // The first run starts the file: no anchors yet.
      if (error.code === 'ENOENT') return '';
      throw new UsageError(`cannot read ${file}: ${error.message}`);
    });
    texts.push(...content.split('\n').filter((line) => line.trim() !== '' && !line.trim().startsWith('#')));
    // The new head is added at the end: a file that cannot take it is said now, not after the whole walk.
    await appendFile(resolve(file), '').catch((error: NodeJS.ErrnoException) => {
      throw new UsageError(`cannot write ${file}: ${error.message}; give a file this user may write (its folder must exist)`);
    });
  }
  const anchors = texts.map((text) => {
    // With the time the file keeps beside it, when the line has one (anything else after it is a note).
    const [anchorText = '', taken = ''] = text.trim().split(/\s+/);
    const anchor = parseChainAnchor(`${anchorText} ${taken}`) ?? parseChainAnchor(anchorText);
    if (!anchor) throw new UsageError(`${JSON.stringify(text)} is not an anchor: write <position>:<64 hex digits>, as crm verify --chain prints the head`);
    return anchor;
  });
  return { anchors, file };
}

async function verifyChains(runtime: CrmRuntime, run: CommandRun): Promise<number> {
  const { formatChainAnchor } = await import('../../audit/index.ts');
  const { anchors, file } = await anchorsOf(run);
  const progress = createProgress({ label: 'verify --chain', unit: 'events' });
  const result = await runtime.audit.verifyChains({
    onProgress: (p) => {
      // Stopped before the end: no verdict, and no head added to the anchors file.
      if (run.signal.aborted) throw new Interrupted('interrupted: the chains were not checked to the end and nothing was changed; run it again');
      progress.update(p.checked);
    },
    anchors,
  });
  // A walk that met a broken link ends there: its count is how far it got, not the events checked.
  if (result.ok) progress.done();
  else progress.done('at the first broken link', 'stopped');
  if (result.ok) {
    const { streams, global } = result;
    run.out(
      `Hash chains intact: ${streams.checked} events on their stream chains, ${global.checked} on the global chain` +
        ` (sealed through ${global.sealedThrough === null ? 'nothing yet' : `position ${global.sealedThrough}`}).`,
    );
    if (anchors.length > 0) run.out(`Anchors: ${global.anchorsMatched} of ${anchors.length} match the chain as it stands.`);
    if (global.head) {
      const head = formatChainAnchor(global.head);
      // Someone who can write to the database can re-hash both chains after an edit; a head kept elsewhere cannot be.
      run.out(`Global chain head: ${head}`);
      if (file) {
        await appendFile(resolve(file), `${head} ${new Date().toISOString()}\n`);
        run.out(`Added to ${file}; keep that file away from the database (the next run checks every anchor in it).`);
      } else {
        run.out(
          'Keep this anchor outside the database (a ticket, a mail, write-once storage) and give it back with --anchor to catch a rewrite of the chains.',
        );
      }
    }
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
  // Anchored history the store no longer holds (restored to an earlier point, or its tail cut), and nothing
  // it holds found altered: a failure of its own (exit 3), told apart from a rewrite (exit 1).
  const lost = broken?.endsAt !== undefined || broken?.restoredAfter !== undefined;
  run.out(
    (broken?.chain === 'keys'
      ? 'Customer data keys DISAGREE with the history'
      : lost
        ? `Anchored history MISSING (${broken?.chain} chain)`
        : `Hash chain BROKEN (${broken?.chain} chain)`) +
      (broken?.stream ? ` in stream ${broken.stream}${broken.revision !== null ? ` at revision ${broken.revision}` : ''}` : '') +
      (broken?.position !== null && broken?.position !== undefined ? ` at position ${broken.position}` : '') +
      `: ${broken?.reason ?? 'see the details'}`,
  );
  printNextSteps(run, chainsNextSteps(result));
  return lost ? 3 : 1;
}

async function verifyReadModels(runtime: CrmRuntime, run: CommandRun): Promise<number> {
  // The shadow a killed verification (or rebuild) left behind, a whole copy of the read models: gone
  // before this one makes its own (the next verification left it in place).
  const [{ dropAbandonedShadows }, { isMissingTable }] = await Promise.all([import('../../projections/shadows.ts'), import('../../shared/sql.ts')]);
  // No read models yet (no checkpoints table): nothing was left behind, and the verification says what to do.
  const dropped = await dropAbandonedShadows(runtime.database.db, run.config.schemas.read, { pool: runtime.database.kind === 'postgres' }).catch(
    (error: unknown) => {
      if (isMissingTable(error)) return [];
      throw error;
    },
  );
  if (dropped.length > 0) run.err(`crm verify: dropped ${dropped.length} shadow schema(s) left by a killed rebuild or verification (${dropped.join(', ')})`);
  // Two phases, each counted in its own unit: events replayed, then tables compared.
  let progress = createProgress({ label: 'verify: replay', unit: 'events' });
  let comparing = false;
  const { ReadModelsMovedBack, ReadModelsNotBuilt, ReadModelsOfAnotherVersion } = await import('../../audit/verify.ts');
  let result: ReadModelVerification;
  try {
    result = await runtime.audit.verifyReadModels({
      signal: run.signal,
      onProgress: (p) => {
        if (run.signal.aborted) throw new Interrupted('interrupted: nothing was checked to the end and nothing was changed; run it again');
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
    if (!(error instanceof ReadModelsNotBuilt || error instanceof ReadModelsMovedBack || error instanceof ReadModelsOfAnotherVersion)) throw error;
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
  // A replay that stopped is the finding, not the rows it did not reach: those tables were not compared.
  for (const line of describeReplayFailures(result.replayFailures)) run.out(`Verification INCOMPLETE: ${line}.`);
  // Merges on one side are a finding in the events, which a replay reproduces: no rows differ then.
  const mergesOnly = (result.unmatchedMerges ?? []).length + (result.farMerges ?? []).length > 0 && result.differences === 0;
  if (result.differences > 0 || (result.replayFailures.length === 0 && !mergesOnly))
    run.out(`Read models DIFFER from a replay of the events: ${result.differences} rows.`);
  for (const line of describeCheckpointsAhead(result.checkpointsAhead)) run.out(`Checkpoint past the events: ${line}.`);
  if (lag) run.out(`Note: ${lag}.`);
  if (result.firstDifference) run.out(`First difference: ${terminalText(json(result.firstDifference))}`);
  for (const table of result.tables.filter((t) => !t.equal)) for (const row of table.sample.slice(0, 5)) run.out(`  ${terminalText(json(row))}`);
  if (result.failedProjections.length) run.out(`Live projections stopped on an event: ${result.failedProjections.join(', ')}`);
  for (const line of describeMergeFindings(result.unmatchedMerges ?? [], result.farMerges ?? [])) run.out(`Merge: ${line}.`);
  printNextSteps(run, readModelsNextSteps(result));
  return 1;
}

export const verifyCommand: CliCommand = {
  name: 'verify',
  maxArguments: 0,
  onInterrupt: 'nothing is changed; run the command again for the whole check',
  summary: 'Check that the read models equal a replay of the events (--chain: check tamper evidence)',
  usage: 'verify [--chain [--anchor <position:hash>]... [--anchors-file <path>]]',
  details: `
Replays all events into a shadow schema and compares every read-model table with the live one
(row hashes, then the differing rows). Prints a summary; exits 1 when anything differs.
With --chain, recomputes each stream's hash chain and the global chain and names the first broken
link instead, and prints the global chain's head as an anchor (<position>:<hash>). The chains live in
the database they protect: someone who can write to it can alter an event and re-hash everything
after it. An anchor kept elsewhere catches that: --anchor checks one, --anchors-file checks every
anchor in the file and adds the new head to it, with the time, when the chains are intact (run it
from a machine that does not hold the database, e.g. daily). Exits 1 on a broken link, 3 when
anchored history is missing with nothing found altered (the store restored to an earlier point, or
its tail cut, and maybe written since). Read-only towards the database (but for the shadow
schema of a killed rebuild or verification, which it drops first, clearing that rebuild's
"rebuilding" marks): interrupting it changes nothing.`,
  database: { kind: 'reads' },
  options: {
    chain: { type: 'boolean', description: 'verify the hash chains of the events instead of the read models' },
    anchor: { type: 'string', multiple: true, description: '--chain: a global chain head kept outside the database (<position>:<hash>); repeatable' },
    'anchors-file': {
      type: 'string',
      description: '--chain: a file of anchors, one per line; each is checked, and the new head is added when intact',
    },
  } satisfies Record<string, OptionWithHelp>,
  async run(run) {
    if (!run.values.chain && (run.values.anchor !== undefined || run.values['anchors-file'] !== undefined))
      throw new UsageError('--anchor and --anchors-file go with --chain');
    const { openCrm } = await import('../../runtime/crm.ts');
    const runtime = await openCrm(run.config, { existingOnly: true, installedOnly: true });
    try {
      return run.values.chain ? await verifyChains(runtime, run) : await verifyReadModels(runtime, run);
    } finally {
      await runtime.close();
    }
  },
};
