import type { CrmRuntime } from '../runtime/crm.ts';

/**
 * Why the read model of `kind` may not hold every recorded event, or undefined when it is current.
 * Commands that read a read model (`crm export`, `crm claim-emails`) read it as it stands; after `crm
 * demo` or `crm import` with no projection running, that is an empty or stale answer unless the
 * operator is told.
 */
/** `consequence`: what reading it as it stands means for the command, e.g. `the file holds the read model as it stands`. */
export const projectionLag = async (runtime: CrmRuntime, readSchema: string, kind: string, consequence: string): Promise<string | undefined> => {
  const { readCheckpoints } = await import('../projections/checkpoints.ts');
  const checkpoint = (await readCheckpoints(runtime.database.db, readSchema)).get(kind);
  const head = await runtime.store.headPosition();
  const position = checkpoint?.position ?? 0n;
  const advice = `${consequence}; \`crm serve\` or \`crm project\` brings it up to date, \`crm projections\` shows its state`;
  // A running projection does not move past a failed event: an operator retries or skips it first.
  if (checkpoint?.state === 'failed')
    return `the ${kind} projection is stopped on a failed event at position ${checkpoint.failedPosition}: ${consequence}; \`crm projections\` shows the event and its error, and \`crm projections retry ${kind}\` (once the cause is fixed) or \`crm projections skip ${kind} --position ${checkpoint.failedPosition} --reason "..."\` lets it go on.`;
  if (position < head) return `the ${kind} read model is behind the event store (projected up to position ${position}, head ${head}): ${advice}.`;
  return undefined;
};
