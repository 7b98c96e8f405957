import { EventStoreError, isConnectionFault } from './errors.ts';
import { decodeRecordedEvent, type PersonalData } from './personal-data.ts';
import type { ProjectedEvent, RecordedEvent } from '../shared/events.ts';

/**
 * A stored event that no longer decrypts, decodes or validates (its ciphertext, data or type changed
 * behind the store): the record it belongs to cannot be folded. Named with its stream, revision and
 * position so that the caller is not blamed (a ZodError from the event's data read as a bad query
 * parameter) and the operator knows where to look; the API answers it as one problem (api/errors.ts).
 */
export class UnreadableEvent extends Error {
  readonly stream: string;
  readonly revision: number;
  readonly position: bigint;
  constructor(
    event: Pick<RecordedEvent, 'stream' | 'revision' | 'position'>,
    override readonly cause: unknown,
  ) {
    super(
      `The stored event ${event.stream} revision ${event.revision} (position ${event.position}) cannot be read (${reasonOf(cause)}): ` +
        'it may have been changed outside the CRM; run `crm verify --chain` to check the history.',
    );
    this.name = 'UnreadableEvent';
    this.stream = event.stream;
    this.revision = event.revision;
    this.position = event.position;
  }
}

/** A validation failure names its fields and what they should be (never their values); anything else its message. */
const reasonOf = (cause: unknown): string => {
  const issues = (cause as { issues?: unknown } | null)?.issues;
  if (Array.isArray(issues) && issues.length > 0) {
    return (issues as { path?: PropertyKey[]; message?: string }[])
      .map((i) => `${i.path?.map(String).join('.') || 'data'}: ${i.message ?? 'invalid'}`)
      .join('; ');
  }
  return cause instanceof Error ? cause.message : String(cause);
};

/** The database or the store failed (a key lookup): about the deployment, not the event, so not reported as one. */
export const isStoreFault = (error: unknown): boolean => {
  // A statement the database refused carries its SQLSTATE (five characters); crypto and validation errors do not.
  const code = (error as { code?: unknown } | null)?.code;
  return isConnectionFault(error) || error instanceof EventStoreError || (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code));
};

/** `decodeRecordedEvent` for reads of the past and for commands: an event that cannot be read is an `UnreadableEvent`. */
export async function readStoredEvent(recorded: RecordedEvent, personalData: PersonalData): Promise<ProjectedEvent> {
  try {
    return await decodeRecordedEvent(recorded, personalData);
  } catch (error) {
    if (isStoreFault(error)) throw error;
    throw new UnreadableEvent(recorded, error);
  }
}
