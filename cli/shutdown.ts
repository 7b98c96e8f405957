/**
 * A stop of a long-running command (`crm serve`, `crm project`) is bounded as a whole: each step
 * bounds its own waits, but steps add up, and one nobody bounded (a client library waiting on a
 * stalled peer) must not keep the process past what its supervisor allows before SIGKILL. Past
 * the deadline the process says which closing steps were still pending and exits with 124 (as
 * timeout(1) does), so an operator can tell a forced stop from a clean one.
 */
export const SHUTDOWN_TIMED_OUT = 124;

export interface ShutdownDeadline {
  /** The command finished closing: the deadline no longer applies. */
  disarm(): void;
}

/** Starts the deadline when `signal` aborts (the first SIGINT/SIGTERM; cli/main.ts). */
export function armShutdownDeadline(options: {
  signal: AbortSignal;
  timeoutMs: number;
  /** The closing steps not done yet, by name. */
  pending: () => readonly string[];
  err: (line: string) => void;
  exit?: (code: number) => void;
}): ShutdownDeadline {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let timer: NodeJS.Timeout | undefined;
  let disarmed = false;
  const start = () => {
    if (disarmed) return;
    timer = setTimeout(() => {
      const pending = options.pending();
      options.err(
        `Stopping took longer than ${options.timeoutMs} ms (CRM_SHUTDOWN_TIMEOUT_MS); still pending: ${pending.length > 0 ? pending.join(', ') : 'nothing named'}. ` +
          `Exiting with code ${SHUTDOWN_TIMED_OUT} (the projections resume from their checkpoints on the next start).`,
      );
      exit(SHUTDOWN_TIMED_OUT);
    }, options.timeoutMs);
    // The command's own keep-alive holds the process while it closes (cli/main.ts); this one must not hold it after.
    timer.unref();
  };
  if (options.signal.aborted) start();
  else options.signal.addEventListener('abort', start, { once: true });
  return {
    disarm() {
      disarmed = true;
      clearTimeout(timer);
      options.signal.removeEventListener('abort', start);
    },
  };
}

/** Resolves when `signal` aborts, at once when it already has (a signal during start-up). */
export const untilAborted = (signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
