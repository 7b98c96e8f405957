import type { EventStore } from '../eventstore/contract.ts';
import type { BackgroundLoadStatus, CommandPort } from '../api/deps.ts';
import { ZodError } from 'zod';
import { CommandsBusy } from '../commands/stream-queue.ts';
import { DomainError } from '../domain/errors.ts';
import { createBackoff, pause } from '../eventstore/backoff.ts';
import { EventStoreUnavailable } from '../eventstore/errors.ts';
import { buildDemoPlan, demoId, type DemoAction, type DemoOptions } from './demo-data.ts';
import type { Progress } from './progress.ts';

/**
 * Loads the demo plan through the command handlers, exactly as API clients would issue it, with
 * business times in the past. Each action's idempotency key is stable for the seed, so running it
 * again (after Ctrl-C, or twice) appends nothing twice.
 */

export interface DemoResult {
  planned: number;
  executed: number;
  /** Commands the domain refused (by error code): a plan that drifts from the rules shows up here. */
  refused: Record<string, number>;
  interrupted: boolean;
}

const streamOf = (action: DemoAction): string | undefined => {
  const c = action.command;
  if (typeof c.dealId === 'string') return `deal-${c.dealId}`;
  if (typeof c.campaignId === 'string') return `campaign-${c.campaignId}`;
  if (typeof c.feedbackId === 'string') return `feedback-${c.feedbackId}`;
  if (typeof c.customerId === 'string') return `customer-${c.customerId}`;
  return undefined;
};

/** Whether the store already holds the event of an action (its idempotency key is in the metadata). */
const recorded = async (store: EventStore, action: DemoAction | undefined): Promise<boolean> => {
  if (!action) return false;
  const stream = streamOf(action);
  if (!stream) return false;
  const events = await store.readStream(stream, { direction: 'backwards', maxCount: 50 });
  return events.some((e) => e.metadata.idempotencyKey === action.key);
};

export const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export type DemoState = 'absent' | 'partial' | 'complete' | 'another';

/**
 * Absent: never started; partial: interrupted (resume it); complete: nothing to do; another: the store
 * holds the demo data set of this seed for another number of customers (or from before keys named the
 * size). The two plans share ids but not all commands, so loading this one over it would collide.
 */
export async function demoState(store: EventStore, plan: DemoAction[], options: Pick<DemoOptions, 'seed' | 'customers'>): Promise<DemoState> {
  if (await recorded(store, plan[0])) {
    // The plan's last actions all share the final instant; check the very last one.
    return (await recorded(store, plan[plan.length - 1])) ? 'complete' : 'partial';
  }
  // The first customer is in every plan of the seed, whatever its size.
  const first = await store.readStream(`customer-${demoId(options.seed, 'customer-0')}`, { maxCount: 1 });
  const key = first[0]?.metadata.idempotencyKey;
  const ours = `demo:${options.seed}:${options.customers}:`;
  return typeof key === 'string' && key.startsWith(`demo:${options.seed}:`) && !key.startsWith(ours) ? 'another' : 'absent';
}

export function demoPlan(options: DemoOptions): DemoAction[] {
  return buildDemoPlan(options);
}

/**
 * Errors that say nothing about the command: the database away, stalled past its bound, or the
 * connection lost with the outcome unknown (`OutcomeUnknown` is one), or this process saturated.
 * Trying the same command again is safe: its idempotency key finds a first attempt that committed.
 */
export const isTransient = (error: unknown): boolean => error instanceof EventStoreUnavailable || error instanceof CommandsBusy;

/** Where a background demo load stands (`GET /ready` shows it). */
export class DemoLoadTracker {
  private current: BackgroundLoadStatus;
  constructor(planned: number) {
    this.current = { state: 'loading', done: 0, planned, lastError: null };
  }
  status(): BackgroundLoadStatus {
    return { ...this.current };
  }
  update(change: Partial<BackgroundLoadStatus>): void {
    this.current = { ...this.current, ...change };
  }
}

export interface LoadDemoOptions {
  progress?: Progress;
  signal?: AbortSignal;
  /** Kept up to date as the load goes. */
  tracker?: DemoLoadTracker;
  /**
   * Transient database errors are tried again with backoff (capped at 1 s) until the command goes
   * through or `signal` aborts, instead of ending the load. Told when an outage starts and ends.
   */
  retry?: { onWaiting?: (error: Error, done: number) => void; onResumed?: (done: number) => void };
}

export async function loadDemo(commands: CommandPort, plan: DemoAction[], options: LoadDemoOptions = {}): Promise<DemoResult> {
  const refused: Record<string, number> = {};
  let executed = 0;
  let done = 0;
  const backoff = createBackoff({ initialMs: 100, maxMs: 1_000 });
  const execute = async (action: DemoAction) => {
    for (let waiting = false; ;) {
      try {
        await commands.execute(action.command, {
          actor: action.actor,
          correlationId: action.key,
          idempotencyKey: action.key,
          occurredAt: action.at.toISOString(),
          reason: 'demo data',
        });
        if (waiting) {
          backoff.reset();
          options.tracker?.update({ state: 'loading', lastError: null });
          options.retry?.onResumed?.(done);
        }
        return true;
      } catch (error) {
        if (!options.retry || !isTransient(error)) throw error;
        if (!waiting) options.retry.onWaiting?.(error as Error, done);
        waiting = true;
        options.tracker?.update({ state: 'waiting_for_database', lastError: (error as Error).message });
        await pause(backoff.next(), options.signal);
        if (options.signal?.aborted) return false;
      }
    }
  };
  const run = async (action: DemoAction) => {
    try {
      if (!(await execute(action))) return;
      executed += 1;
    } catch (error) {
      const code =
        error instanceof DomainError
          ? error.code
          : error instanceof ZodError
            ? `invalid ${action.command.type}: ${error.issues.map((i) => i.path.join('.')).join(', ')}`
            : undefined;
      if (code === undefined) throw error;
      refused[code] = (refused[code] ?? 0) + 1;
    }
    done += 1;
    options.tracker?.update({ done });
    options.progress?.tick();
  };
  for (const [index, action] of plan.entries()) {
    if (options.signal?.aborted) return { planned: plan.length, executed, refused, interrupted: true };
    await run(action);
    if (options.signal?.aborted) return { planned: plan.length, executed, refused, interrupted: true };
    // PGlite answers through promise callbacks only: without a macrotask break now and then this
    // loop would starve the HTTP server and signal handlers for the whole load.
    if (index % 20 === 19) await yieldToEventLoop();
  }
  return { planned: plan.length, executed, refused, interrupted: false };
}
