/** How bad a line is: `error` wants an operator's act, `warn` trouble that may pass, `info` the rest. */
export type LogLevel = 'error' | 'warn' | 'info';

/**
 * How a part of the runtime (a retrying loop, the projections) reports to the process's log
 * (runtime/crm.ts: the process's logger under the part's name, honouring LOG_LEVEL). Level `info` when left out.
 */
export type Log = (message: string, details?: Record<string, unknown>, level?: LogLevel) => void;

/** Within one outage, a different error is logged again at most this often. */
const CHANGED_ERROR_EVERY_MS = 60_000;

/**
 * The log of a loop that retries on failure (a publisher, a subscription's deliveries, the reconcile
 * timer): the first failure of an outage is logged, and its end with the attempts it took, not every
 * retry: a loop retrying every second while the database is away would otherwise write a line a second.
 * A different error during the outage (the receiver answered 500, now it refuses connections) is
 * logged again, at most once a minute.
 */
export class OutageLog {
  private outage: { since: number; attempts: number; lastError: string; loggedAt: number } | undefined;

  constructor(
    private readonly log: Log | undefined,
    private readonly messages: { failed: string; recovered: string },
    private readonly context: Record<string, unknown> = {},
  ) {}

  get failing(): boolean {
    return this.outage !== undefined;
  }

  /** A failed attempt; `details` (what was tried: a URL, a status) go with the line when one is logged. */
  failed(error: string, details: Record<string, unknown> = {}): void {
    const now = performance.now();
    const outage = this.outage;
    if (!outage) {
      this.outage = { since: now, attempts: 1, lastError: error, loggedAt: now };
      this.log?.(this.messages.failed, { ...this.context, ...details, error }, 'warn');
      return;
    }
    outage.attempts++;
    if (error !== outage.lastError && now - outage.loggedAt >= CHANGED_ERROR_EVERY_MS) {
      outage.loggedAt = now;
      this.log?.(
        this.messages.failed,
        {
          ...this.context,
          ...details,
          error,
          attempts: outage.attempts,
          failingForSeconds: Math.round((now - outage.since) / 1000),
        },
        'warn',
      );
    }
    outage.lastError = error;
  }

  /** A success: ends the outage (logged once, with how long it lasted, and `details`); nothing when there was none. */
  recovered(details: Record<string, unknown> = {}): void {
    const outage = this.outage;
    if (!outage) return;
    this.outage = undefined;
    this.log?.(this.messages.recovered, {
      ...this.context,
      ...details,
      failedAttempts: outage.attempts,
      failedForSeconds: Math.round((performance.now() - outage.since) / 100) / 10,
      lastError: outage.lastError,
    });
  }
}

/** Repeats of one message are let through at most this often. */
const REPEAT_EVERY_MS = 5 * 60_000;

/**
 * For parts that log every retry themselves (the publishers' lease renewal, projections/leases.ts):
 * the same failure (a `warn` or `error` message) again within five minutes is left out, and counted on
 * the next one let through. An `info` line always passes: each says something happened (a lease taken
 * over or handed over), and a take-over 77 s after the first "projection leases changed" was never logged.
 */
export function withoutRepeats(log: Log | undefined): Log | undefined {
  if (!log) return undefined;
  const seen = new Map<string, { at: number; left: number }>();
  return (message, details, level) => {
    if (level === undefined || level === 'info') {
      log(message, details, level);
      return;
    }
    const now = performance.now();
    const last = seen.get(message);
    if (last && now - last.at < REPEAT_EVERY_MS) {
      last.left++;
      return;
    }
    seen.set(message, { at: now, left: 0 });
    log(message, last && last.left > 0 ? { ...details, repeatsLeftOut: last.left } : details, level);
  };
}
