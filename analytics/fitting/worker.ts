import { parentPort } from 'node:worker_threads';
import { fitters, type FitterName } from './fitters.ts';

/** The fitting thread's side: runs each fitter asked for and answers with its result or its error. */
export interface FitRequest {
  id: number;
  name: FitterName;
  args: unknown[];
}
export type FitAnswer = { id: number; result: unknown } | { id: number; error: unknown };

parentPort!.on('message', ({ id, name, args }: FitRequest) => {
  try {
    const fitter = fitters[name] as (...a: unknown[]) => unknown;
    parentPort!.postMessage({ id, result: fitter(...args) } satisfies FitAnswer);
  } catch (error) {
    // Errors of the standard kinds (the fitters' RangeErrors) keep their kind and message across threads.
    parentPort!.postMessage({ id, error } satisfies FitAnswer);
  }
});
