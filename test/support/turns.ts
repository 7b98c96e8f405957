/**
 * Counts the event loop's turns (a chain of `setImmediate` callbacks) from now until `stop()`: a
 * stretch of work that gives none (only microtasks, no I/O) counts 0.
 */
export const countTurns = (): { stop(): number } => {
  let counting = true;
  let turns = 0;
  const turn = () => {
    if (!counting) return;
    turns += 1;
    setImmediate(turn);
  };
  setImmediate(turn);
  return {
    stop: () => {
      counting = false;
      return turns;
    },
  };
};
