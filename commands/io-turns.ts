/**
 * Turns for the event loop inside long synchronous stretches (deciding a batch of 1,000 commands,
 * preparing an import's rows). A bulk import stores one batch while it decides the next; the stored
 * batch's reply sits on the socket until the loop gets a turn, and the next append waits for that
 * reply. Without turns the append waited for the rest of the stretch (tens of milliseconds a batch);
 * with a turn every 2 ms it goes out almost at once.
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
