/**
 * The decider pattern: an aggregate is three pure functions.
 * `decide` throws a `DomainError` to refuse a command; it never performs I/O and never changes the state.
 *
 * `evolve` returns the next state but may add to the growing collections (orders, refunds, costs,
 * responses) of the state it is given rather than copying them, so that folding a stream of 100k
 * events stays linear. Treat a state passed to `evolve` as consumed; `copyState` (entries.ts) it to keep it.
 */
export interface Decider<Command, Event, State> {
  initialState: () => State;
  /**
   * `occurredAt` is the event's business time where the fold has it (the command side always does): a
   * decider that refuses commands dated before a step of its lifecycle (a deal's opening) keeps it.
   */
  evolve: (state: State, event: Event, occurredAt?: string) => State;
  decide: (command: Command, state: State) => Event[];
}
