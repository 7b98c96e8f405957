import type { EventStore } from '../eventstore/contract.ts';
import type { CommandPort } from '../api/deps.ts';
import { ZodError } from 'zod';
import { DomainError } from '../domain/errors.ts';
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

export async function loadDemo(
  commands: CommandPort,
  plan: DemoAction[],
  options: { progress?: Progress; signal?: AbortSignal; concurrency?: number } = {},
): Promise<DemoResult> {
  const refused: Record<string, number> = {};
  let executed = 0;
  const run = async (action: DemoAction) => {
    try {
      await commands.execute(action.command, {
        actor: action.actor,
        correlationId: action.key,
        idempotencyKey: action.key,
        occurredAt: action.at.toISOString(),
        reason: 'demo data',
      });
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
    options.progress?.tick();
  };
  for (const [index, action] of plan.entries()) {
    if (options.signal?.aborted) return { planned: plan.length, executed, refused, interrupted: true };
    await run(action);
    // PGlite answers through promise callbacks only: without a macrotask break now and then this
    // loop would starve the HTTP server and signal handlers for the whole load.
    if (index % 20 === 19) await yieldToEventLoop();
  }
  return { planned: plan.length, executed, refused, interrupted: false };
}
