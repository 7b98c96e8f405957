import type { AppendResult, ExpectedRevision, StreamRead } from '../contract.ts';
import { EventStoreUnavailable } from '../errors.ts';
import type { PreparedEvent } from '../validation.ts';

/** One stream's append, checked and encoded (validation.ts), waiting for its turn. */
export interface PendingAppend {
  stream: string;
  expected: ExpectedRevision;
  events: PreparedEvent[];
  /** Streams the decision read, which must still stand at those revisions (AppendOptions.dependsOn). */
  dependsOn?: readonly StreamRead[];
}

/** What became of one append of a group: stored (or already stored), refused, or not tried because another was refused. */
export type GroupOutcome = { kind: 'done'; result: AppendResult } | { kind: 'refused'; error: unknown } | { kind: 'skipped' };

export interface AppendGroupsOptions {
  /** One append on its own (what runs when nothing else waits). */
  appendOne(append: PendingAppend): Promise<AppendResult>;
  /**
   * Appends of distinct streams in one transaction, one outcome each in order. When one is refused
   * nothing is written and the others come back `skipped` (append_streams is all or nothing).
   */
  appendGroup(appends: PendingAppend[]): Promise<GroupOutcome[]>;
  /** Calls to the database at once; appends that arrive meanwhile wait and go together in the next. */
  maxInFlight: number;
  /** Events in one group at most. */
  maxEvents: number;
}

interface Waiter {
  append: PendingAppend;
  resolve(result: AppendResult): void;
  reject(error: unknown): void;
}

/**
 * Group commit. An append that finds fewer than `maxInFlight` calls running goes at once, alone;
 * appends that arrive while the calls run wait and then share one call, one transaction and one WAL
 * flush, each with its own expected revision and its own answer. Under load the cost of a commit is
 * shared by the whole group; without load nothing waits.
 *
 * Order per stream is kept: a stream with an append in flight, or already in the group being formed,
 * waits for the next group, so two appends to one stream are never in flight together.
 */
export function createAppendGroups(options: AppendGroupsOptions): { append(append: PendingAppend): Promise<AppendResult> } {
  const waiting: Waiter[] = [];
  const streamsInFlight = new Set<string>();
  let inFlight = 0;

  /** The next group: waiters in arrival order, each stream once, none already in flight. */
  const take = (): Waiter[] => {
    const group: Waiter[] = [];
    const streams = new Set<string>();
    // Streams the group's appends depend on: none of them is written in the same call, whose checks
    // all see the streams as they stood before it (a deal would pass its customer's check beside the forget).
    const read = new Map<string, ExpectedRevision>();
    let events = 0;
    for (let i = 0; i < waiting.length;) {
      const waiter = waiting[i]!;
      const { stream, dependsOn = [] } = waiter.append;
      const size = waiter.append.events.length;
      const fits = group.length === 0 || events + size <= options.maxEvents;
      // Two reads of one stream in a call are one check: at the same revision.
      const apart = !read.has(stream) && dependsOn.every((d) => !streams.has(d.stream) && (read.get(d.stream) ?? d.revision) === d.revision);
      if (fits && apart && !streams.has(stream) && !streamsInFlight.has(stream)) {
        group.push(waiter);
        streams.add(stream);
        for (const d of dependsOn) read.set(d.stream, d.revision);
        events += size;
        waiting.splice(i, 1);
      } else {
        // Later waiters of a skipped stream stay behind it, so their order holds.
        streams.add(stream);
        i++;
      }
    }
    return group;
  };

  const alone = async (waiter: Waiter): Promise<void> => {
    try {
      waiter.resolve(await options.appendOne(waiter.append));
    } catch (error) {
      waiter.reject(error);
    }
  };

  const send = async (group: Waiter[]): Promise<void> => {
    if (group.length === 1) return alone(group[0]!);
    let outcomes: GroupOutcome[];
    try {
      outcomes = await options.appendGroup(group.map((waiter) => waiter.append));
    } catch (error) {
      if (error instanceof EventStoreUnavailable) {
        for (const waiter of group) waiter.reject(error);
        return;
      }
      // The call failed as a whole (an id reused by a concurrent append to another stream, an
      // ordering refusal): each append alone gets its own answer.
      await Promise.all(group.map(alone));
      return;
    }
    const again: Waiter[] = [];
    outcomes.forEach((outcome, i) => {
      const waiter = group[i]!;
      if (outcome.kind === 'done') waiter.resolve(outcome.result);
      else if (outcome.kind === 'refused') waiter.reject(outcome.error);
      else again.push(waiter);
    });
    // Not tried because another was refused: first in line for the next group.
    waiting.unshift(...again);
  };

  const pump = (): void => {
    while (inFlight < options.maxInFlight && waiting.length > 0) {
      const group = take();
      if (group.length === 0) return;
      inFlight++;
      for (const waiter of group) streamsInFlight.add(waiter.append.stream);
      void send(group).finally(() => {
        inFlight--;
        for (const waiter of group) streamsInFlight.delete(waiter.append.stream);
        pump();
      });
    }
  };

  return {
    append: (append) =>
      new Promise<AppendResult>((resolve, reject) => {
        waiting.push({ append, resolve, reject });
        pump();
      }),
  };
}
