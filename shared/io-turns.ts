/**
 * Turns for the event loop inside long synchronous stretches: deciding a bulk import's batch of
 * 1,000 commands, preparing its rows, decoding and applying a projection batch of thousands of
 * events. Awaiting a resolved promise is not a turn (microtasks run before any I/O), so without
 * these a stretch held everything else for its whole length:
 * - a bulk import stores one batch while it decides the next; the stored batch's reply sat on the
 *   socket until the stretch ended, and the next append waited for it;
 * - a `crm serve` catching up a backlog answered no request while it applied a batch.
 * With a turn every 2 ms, replies and requests are read between items.
 */
export interface IoTurns {
  /** True when the stretch has run `everyMs` since the last turn (cheap: call it per item). */
  due(): boolean;
  /** Lets pending I/O callbacks run (a macrotask: socket reads come first). */
  give(): Promise<void>;
}

export const ioTurns = (everyMs = 2): IoTurns => {
  let last = performance.now();
  return {
    due: () => performance.now() - last >= everyMs,
    give: () =>
      new Promise<void>((resolve) =>
        setImmediate(() => {
          last = performance.now();
          resolve();
        }),
      ),
  };
};
