import type { ProjectionSkip } from '../projections/skips.ts';
import type { ChainsVerification } from './sql/chain.ts';
import { KEY_GONE, KEY_PUT_BACK } from './sql/customer-keys.ts';
import type { CheckpointAhead } from '../projections/checkpoints.ts';
import { MAX_MERGE_CHAIN } from '../domain/customer/decider.ts';
import type { FarMerge, UnmatchedMerge } from './sql/merges.ts';
import type { ReadModelVerification, ReplayFailure } from './verify.ts';

/** Human summaries for `crm verify` (one line each; the CLI prints them and exits 1 unless `ok`). */

const show = (value: unknown): string => (typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value ?? null));

export function describeReadModelVerification(result: ReadModelVerification): string[] {
  const stopped = result.replayFailures ?? [];
  const lines = [
    `${result.ok ? 'OK' : stopped.length > 0 ? 'INCOMPLETE' : 'DIFFERENT'}: ${result.tables.length} tables compared after replaying ${result.events} events ` +
      `(${result.differences} differing rows, ${result.durationMs} ms)`,
    ...describeReplayFailures(stopped).map((line) => `  ${line}`),
  ];
  for (const table of result.tables) {
    lines.push(
      `  ${table.equal ? 'same     ' : 'DIFFERENT'} ${table.table}: ${table.liveRows} live rows, ${table.replayedRows} replayed` +
        (table.equal ? '' : `, ${table.differences} differing`),
    );
    for (const row of table.sample) {
      const key = Object.entries(row.key)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(', ');
      const columns = (row.columns ?? []).map((c) => `${c.column}: live ${show(c.live)}, replayed ${show(c.replayed)}`).join('; ');
      lines.push(`      ${row.kind} ${key}${columns ? ` (${columns})` : ''}`);
    }
  }
  if (result.failedProjections.length > 0) lines.push(`  failed projections: ${result.failedProjections.join(', ')}`);
  lines.push(...describeMergeFindings(result.unmatchedMerges ?? [], result.farMerges ?? []).map((line) => `  merge: ${line}`));
  lines.push(...describeCheckpointsAhead(result.checkpointsAhead ?? []).map((line) => `  ${line}`));
  lines.push(...describeSkips(result.skipped ?? []));
  const behind = describeLag(result);
  if (behind) lines.push(`  ${behind}`);
  return lines;
}

/**
 * Read models compared below the store's head: equal as far as they were projected, but the later
 * events were not verified (a read model that was never projected compares "equal" at position 0).
 */
export function describeLag(result: Pick<ReadModelVerification, 'positions' | 'head'>): string | undefined {
  const behind = Object.entries(result.positions).filter(([, position]) => position < result.head);
  if (behind.length === 0) return undefined;
  const lowest = behind.reduce((low, [, position]) => (position < low ? position : low), result.head);
  return (
    `not verified: the events after position ${lowest} (the store's head is ${result.head}): ` +
    `${behind.map(([name]) => name).join(', ')} had not projected them yet; run verify again once the projections caught up (GET /ready)`
  );
}

/**
 * The events the verification's own replay stopped on (verify.ts `replayFailures`), one line per event
 * with the projections that stopped on it and the tables left out of the comparison.
 */
export function describeReplayFailures(failures: readonly ReplayFailure[]): string[] {
  const byEvent = new Map<string, ReplayFailure[]>();
  for (const f of failures) {
    const key = `${f.position ?? '?'}`;
    byEvent.set(key, [...(byEvent.get(key) ?? []), f]);
  }
  return [...byEvent.values()].map((group) => {
    const f = group[0]!;
    return (
      `the verification's replay could not apply the event at stream ${f.stream ?? '?'}, revision ${f.revision ?? '?'}, position ${f.position ?? '?'} ` +
      `(event ${f.eventId ?? '?'}): ${f.error}; not compared (the replay did not complete): ${group.flatMap((g) => g.tables).join(', ')}`
    );
  });
}

/** Live checkpoints past the store's last event (verify.ts `checkpointsAhead`), one line each. */
export function describeCheckpointsAhead(ahead: readonly CheckpointAhead[]): string[] {
  return ahead.map(
    (a) =>
      `${a.projection}: checkpoint at position ${a.position}, past the store's last event (${a.head}): ` +
      'the read model applied events the store no longer holds, or its checkpoint was edited',
  );
}

/** Skipped poison events explain a gap: live and replay both leave them out, by an operator's recorded decision. */
export function describeSkips(skipped: readonly ProjectionSkip[]): string[] {
  return skipped.map(
    (s) =>
      `  skipped by ${s.actor ?? 'unknown'} on ${s.recordedAt.toISOString()}: ${s.projection} at position ${s.position}` +
      `${s.stream ? ` (stream ${s.stream}, event ${s.eventId ?? '?'})` : ''}, reason: ${s.reason}${s.error ? `; it failed with ${s.error}` : ''}`,
  );
}

export function describeChainsVerification(result: ChainsVerification): string[] {
  const lines = [
    `${result.ok ? 'OK' : 'BROKEN'}: ${result.streams.checked} events checked on their stream chains, ` +
      `${result.global.checked} on the global chain (sealed through ${result.global.sealedThrough ?? 'nothing yet'}, ${result.global.unsealed} not sealed yet)`,
  ];
  const broken = result.firstBroken;
  if (broken) {
    lines.push(
      `  first broken link (${broken.chain} chain): stream ${broken.stream ?? '?'}, revision ${broken.revision ?? '?'}, ` +
        `position ${broken.position?.toString() ?? '?'}: ${broken.reason}`,
    );
  }
  return lines;
}

/**
 * What to do after a broken hash chain (`crm verify --chain`, and a failed chains job): the events
 * were changed behind the CRM, so nothing may be rebuilt from them until they are restored.
 */
export function chainsNextSteps(result: Pick<ChainsVerification, 'ok' | 'firstBroken'>): string[] {
  if (result.ok) return [];
  const broken = result.firstBroken;
  const where =
    broken?.stream !== null && broken?.stream !== undefined
      ? `stream ${broken.stream}${broken.revision !== null && broken.revision !== undefined ? ` revision ${broken.revision}` : ''}` +
        (broken.position !== null && broken.position !== undefined ? ` (position ${broken.position})` : '')
      : broken?.position !== null && broken?.position !== undefined
        ? `position ${broken.position}`
        : 'the link named above';
  if (broken?.chain === 'keys') {
    const id = broken.stream?.replace(/^customer-/, '') ?? '<id>';
    const putBack = broken.reason.includes(KEY_PUT_BACK);
    return [
      ...(putBack
        ? [
            "A forgotten customer's data key was put back behind the CRM (from a backup, or by hand): its personal data reads in clear again in history, exports and past records.",
            `Delete the key again: UPDATE <events schema>.customer_keys SET data_key = NULL, forgotten_at = coalesce(forgotten_at, now()) WHERE customer_id = '${id}' (each customer named); then run \`crm verify --chain\` again, and find who could write to that table.`,
          ]
        : []),
      ...(broken.reason.includes(KEY_GONE)
        ? [
            "The data key of a customer who was never forgotten is gone (deleted or erased behind the CRM): the customer's personal data reads as erased.",
            "Restore that customer_keys row from a backup before any command on the customer: a command would store a new key, and the customer's earlier events would stay unreadable for good.",
            'Do not run `crm rebuild`: the read models still hold the last readable copy of the personal data.',
          ]
        : []),
    ];
  }
  if (broken?.restoredAfter !== undefined) {
    return [
      `The anchors after position ${broken.restoredAfter} are not on the chain, no event is at their positions, and the events after them were recorded ` +
        `after they were taken: the store was restored to a point before them (or its events after ${broken.restoredAfter} were cut) and has been ` +
        'written since. Nothing the store holds was found altered, but the history those anchors cover is gone from it.',
      'If the restore was deliberate: what was recorded after the backup is lost here (forgets, revoked keys and new records included: see README ' +
        `"Backup and restore"); keep the anchors after ${broken.restoredAfter} as the record of that history, move them out of the anchors file ` +
        'you verify against, then run `crm verify --chain` again.',
      `If no one restored it: the events after ${broken.restoredAfter} were deleted behind the CRM and new ones written; find who could write to the ` +
        'database, and restore the events from a backup that holds them (`crm verify --chain --anchors-file <your anchors>` tells one that does).',
    ];
  }
  if (broken?.endsAt !== undefined) {
    return [
      `The events end at position ${broken.endsAt}, before an anchor you kept (${broken.position}): what was recorded after ${broken.endsAt} is not in this store. ` +
        'It was restored from a backup taken before that anchor, or the end of its events was cut.',
      'If the restore was deliberate: what was recorded after the backup is lost here (forgets, revoked keys and new records included: see README "Backup and restore"); ' +
        `remove the anchors past ${broken.endsAt} from your anchors file, then run \`crm verify --chain\` again.`,
      'If not: restore the events from a backup that holds them (`crm verify --chain --anchors-file <your anchors>` tells one that does), and do not run `crm rebuild` before.',
    ];
  }
  return [
    'The events or their seals were changed outside the CRM (edited, deleted or inserted in the database); the commands never do that.',
    'Do not run `crm rebuild`: it would rebuild the read models from the altered events and make them the truth.',
    `Investigate from the first broken link, ${where}: its history (GET /audit/streams/<stream>) and the global log around it (GET /audit/events), compared with a backup.`,
    'Restore the events table from a backup taken before the change (check it with `crm verify --chain` first), then run `crm verify --chain` and `crm verify` again.',
  ];
}

/**
 * What to do when the read models differ from a replay (`crm verify`, and a failed read-models
 * job): repairable from the events, once the events themselves are known to be intact.
 */
/** One line per merge recorded on one side only (verify.ts `unmatchedMerges`), then per customer too far down a chain (`farMerges`). */
export function describeMergeFindings(merges: readonly UnmatchedMerge[], far: readonly FarMerge[]): string[] {
  return [
    ...merges.map(
      (m) =>
        `customer ${m.duplicateId} is merged into ${m.primaryId} (position ${m.position}), which does not record it` +
        (m.cycle
          ? `, and ${m.primaryId} is merged into ${m.duplicateId} in turn`
          : m.primaryMerged
            ? `, and ${m.primaryId} was merged into another since`
            : ''),
    ),
    ...far.map((f) => `customer ${f.customerId} is ${f.mergesAway} or more merges from the end of its chain, past the ${MAX_MERGE_CHAIN} a chain may hold`),
  ];
}

export function readModelsNextSteps(
  result: Pick<ReadModelVerification, 'ok' | 'failedProjections'> & {
    checkpointsAhead?: readonly CheckpointAhead[];
    replayFailures?: readonly ReplayFailure[];
    differences?: number;
    unmatchedMerges?: readonly UnmatchedMerge[] | null;
    farMerges?: readonly FarMerge[] | null;
  },
): string[] {
  if (result.ok) return [];
  const ahead = result.checkpointsAhead ?? [];
  const stopped = result.replayFailures ?? [];
  const merges = result.unmatchedMerges ?? [];
  const far = result.farMerges ?? [];
  const halves = merges.filter((m) => !m.cycle && !m.primaryMerged);
  const stuck = merges.filter((m) => !m.cycle && m.primaryMerged);
  const cycles = merges.filter((m) => m.cycle);
  // A check whose only finding is a replay that stopped, or merges recorded on one side, found no difference to repair.
  const onlyMerges =
    merges.length + far.length > 0 && stopped.length === 0 && ahead.length === 0 && result.failedProjections.length === 0 && result.differences === 0;
  const repair = !onlyMerges && (stopped.length === 0 || ahead.length > 0 || result.failedProjections.length > 0 || (result.differences ?? 1) > 0);
  return [
    ...(halves.length > 0
      ? [
          `Merges recorded on the duplicate's side only (${halves.map((m) => `${m.duplicateId} into ${m.primaryId}`).join(', ')}): the primary's figures leave the duplicate out. ` +
            'Send each merge again (POST /customers/<primary>/merge with {"duplicateId": "<duplicate>"} and the primary\'s revision in If-Match, or the same through the console): it records the primary\'s side.',
        ]
      : []),
    ...(stuck.length > 0
      ? [
          `Merges recorded on the duplicate's side only whose primary was merged into another customer since (${stuck.map((m) => `${m.duplicateId} into ${m.primaryId}`).join(', ')}): ` +
            'the merge cannot be sent again (its primary takes no command), and no command repairs this; the figures at the end of that chain leave the duplicate out. Report it.',
        ]
      : []),
    ...(far.length > 0
      ? [
          `Customers more than ${MAX_MERGE_CHAIN} merges from the end of their chain (${far.map((f) => f.customerId).join(', ')}), merged before chains were bounded: ` +
            'the figures at the end of the chain leave their orders out, and one of their orders sent there again is taken as new. No command shortens a chain; report it.',
        ]
      : []),
    ...(cycles.length > 0
      ? [
          `Customers merged into each other (${cycles.map((m) => `${m.duplicateId} and ${m.primaryId}`).join(', ')}), by two merges that raced in opposite directions ` +
            'before merges were stored whole: neither takes commands, and no command repairs this. Their events stay as the record of what happened; report it.',
        ]
      : []),
    ...(stopped.length > 0
      ? [
          `This check's own replay could not apply ${[...new Set(stopped.map((f) => `stream ${f.stream ?? '?'} revision ${f.revision ?? '?'} (position ${f.position ?? '?'})`))].join(', ')}, ` +
            'a stored event that no longer decodes or validates; the live projections are not concerned by this. ' +
            'Run `crm verify --chain` to check whether the history was edited: if a chain is broken, do not rebuild (see its advice). ' +
            'If the chains are intact, the CRM cannot read an event it recorded: report it (`crm rebuild` would stop on the same event). ' +
            `The tables of ${[...new Set(stopped.map((f) => f.projection))].join(', ')} were not compared.`,
        ]
      : []),
    ...(ahead.length > 0
      ? [
          `The read models of ${ahead.map((a) => a.projection).join(', ')} applied events up to a position past the store's last event: ` +
            'events were cut from the end of the store, or the checkpoints were edited. A cut tail (its seals and stream heads rewound too) ' +
            'verifies intact on the chains alone: run `crm verify --chain --anchors-file <your anchors>` with the anchors kept outside the database, ' +
            'and do not rebuild before the events are known to be complete.',
        ]
      : []),
    ...(result.failedProjections.length > 0
      ? [`Projections stopped on an event (${result.failedProjections.join(', ')}): \`crm projections\` shows where; retry or skip that event there first.`]
      : []),
    ...(repair
      ? [
          'First check the events with `crm verify --chain`: if a chain is broken, do not rebuild (see its advice).',
          'If the chains are intact with your anchors (`crm verify --chain --anchors-file <your anchors>`: without anchors, events after deleted seals can be re-hashed and still verify), ' +
            'the read models were changed outside the CRM or a projection misapplied events: `crm rebuild` rebuilds them from the events and swaps them in; then run `crm verify` again.',
        ]
      : []),
  ];
}
