import { Worker } from 'node:worker_threads';
import type { Fitters, FitterName } from './fitters.ts';
import type { FitAnswer, FitRequest } from './worker.ts';

/**
 * A model fit's CPU-bound steps (BG/NBD, Gamma-Gamma, the churn classifiers, the segments' k-means)
 * run on a thread of their own. On the event loop, a fit of a thousand customers held every request
 * of the process for 1.8-3 s (a liveness probe with a 1 s timeout failed meanwhile), and the hold
 * grows with the customer base.
 */
export interface FittingThread {
  run<K extends FitterName>(name: K, ...args: Parameters<Fitters[K]>): Promise<ReturnType<Fitters[K]>>;
  close(): Promise<void>;
}

/**
 * The worker runs the TypeScript sources through tsx's loader, however the process itself runs
 * them (compiled by the `crm` bin, or transformed by the test runner): a fit's thread costs that
 * loader's memory (tens of MB) for as long as the fit lasts.
 */
const WORKER_URL = new URL('./worker-entry.mjs', import.meta.url);

export function openFittingThread(): FittingThread {
  const worker = new Worker(WORKER_URL);
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: unknown) => void }>();
  let next = 0;
  let ended: Error | undefined;
  const endAll = (error: Error) => {
    ended ??= error;
    for (const w of waiting.values()) w.reject(ended);
    waiting.clear();
  };
  worker.on('message', (answer: FitAnswer) => {
    const w = waiting.get(answer.id);
    waiting.delete(answer.id);
    if ('error' in answer) w?.reject(answer.error);
    else w?.resolve(answer.result);
  });
  worker.on('error', (error) => endAll(error));
  worker.on('exit', (code) => endAll(new Error(`the fitting thread ended (exit code ${code})`)));
  return {
    run(name, ...args) {
      if (ended) return Promise.reject(ended);
      const id = next++;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
        worker.postMessage({ id, name, args } satisfies FitRequest);
      });
    },
    async close() {
      await worker.terminate();
    },
  };
}
