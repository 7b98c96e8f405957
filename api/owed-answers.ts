import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/**
 * The answers each connection is owed: requests read on it whose responses have not closed yet, a
 * pipelined one queued behind another included. What ends a connection (closing, a refusal of what
 * follows on it) waits for them, or its client reads the end as the answer to a request it sent.
 */
export interface OwedAnswers {
  /** Answers owed on `socket` now. */
  count(socket: object): number;
  /**
   * Calls `then` once `socket` is owed no answer, at once when it is owed none; `counts` picks the
   * answers waited for (a request whose body could not be read is answered by the refusal itself).
   */
  whenAnswered(socket: object, then: () => void, counts?: (request: IncomingMessage) => boolean): void;
}

interface Owed {
  pending: Set<ServerResponse>;
  waiting: { then: () => void; counts: (request: IncomingMessage) => boolean }[];
}

const owed = new WeakMap<object, Owed>();
const counted = new WeakSet<Server>();

const stillOwed = (state: Owed, counts: (request: IncomingMessage) => boolean): boolean => [...state.pending].some((response) => counts(response.req));

const answers: OwedAnswers = {
  count: (socket) => owed.get(socket)?.pending.size ?? 0,
  whenAnswered: (socket, then, counts = () => true) => {
    const state = owed.get(socket);
    if (!state || !stillOwed(state, counts)) then();
    else state.waiting.push({ then, counts });
  },
};

/** The answers owed on `server`'s connections, counted from the first call on (as the server is made: api/app.ts). */
export const owedAnswers = (server: Server): OwedAnswers => {
  if (counted.has(server)) return answers;
  counted.add(server);
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    const state = owed.get(socket) ?? { pending: new Set(), waiting: [] };
    owed.set(socket, state);
    state.pending.add(response);
    response.once('close', () => {
      state.pending.delete(response);
      const due = state.waiting.filter((waiter) => !stillOwed(state, waiter.counts));
      state.waiting = state.waiting.filter((waiter) => !due.includes(waiter));
      for (const waiter of due) waiter.then();
    });
  });
  return answers;
};
