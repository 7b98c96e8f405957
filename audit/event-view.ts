import { isCrmEventType, personalFields } from '../domain/catalogue.ts';
import { inUtc } from '../domain/time.ts';
import type { RecordedEvent } from '../eventstore/contract.ts';
import { isEncrypted, type PersonalData } from '../eventstore/personal-data.ts';
import { isStoreFault } from '../eventstore/unreadable-event.ts';

/** What a personal field reads as for a caller not allowed to see personal data. */
export const MASKED = '[masked]';
/** What a personal field reads as when its stored ciphertext does not decrypt (changed behind the store), told apart from MASKED. */
export const UNDECRYPTABLE = '[undecryptable]';

/** Whether personal fields are decrypted (erased marker after forget) or masked. */
export type PersonalDataMode = 'reveal' | 'mask';

/**
 * One event as an auditor reads it: the stored data (the schema version it was recorded with, not
 * upcast, because auditors look at the record as written) and every metadata field flattened.
 * `occurredAt` is business time (what the actor said happened when), in UTC as every other time the
 * CRM gives; `recordedAt` is record time (when the store accepted it). A client's own spelling of the
 * business time (`+13:00`) is `occurredAtAsWritten`: given as written, one log sorted and compared its
 * times wrongly as text, and showed a purchase on a day the reports count in another.
 */
export interface AuditEvent {
  position: bigint;
  stream: string;
  revision: number;
  id: string;
  type: string;
  schemaVersion: number | null;
  data: unknown;
  /** The actor's stable id (`metadata.actor.userId`, e.g. `api-key:<uuid>`): what `?actor=` filters on. */
  actor: string | null;
  /** The actor's name when the event was recorded (an API key's name), null for events recorded before names were kept. */
  actorName: string | null;
  roles: string[];
  correlationId: string | null;
  causationId: string | null;
  command: string | null;
  reason: string | null;
  occurredAt: string | null;
  /** The business time as the metadata holds it, where that is not the UTC spelling of `occurredAt`; else null. */
  occurredAtAsWritten: string | null;
  recordedAt: Date;
}

const str = (value: unknown): string | null => (typeof value === 'string' ? value : null);

export const maskPersonalFields = (type: string, data: unknown): unknown => {
  const spec = isCrmEventType(type) ? personalFields[type] : undefined;
  if (!spec || typeof data !== 'object' || data === null || Array.isArray(data)) return data;
  const out: Record<string, unknown> = { ...(data as Record<string, unknown>) };
  for (const field of spec.fields) {
    if (out[field] !== undefined && out[field] !== null) out[field] = MASKED;
  }
  return out;
};

/** Ciphertext left undecrypted (a corrupted field, or one under a type renamed) is never shown raw. */
const hideCiphertext = (data: unknown): unknown => {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return data;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) out[key] = isEncrypted(value) ? UNDECRYPTABLE : value;
  return out;
};

export async function toAuditEvent(recorded: RecordedEvent, personalData: PersonalData, mode: PersonalDataMode): Promise<AuditEvent> {
  const metadata = recorded.metadata ?? {};
  const actor = metadata.actor as { userId?: unknown; name?: unknown; roles?: unknown } | undefined;
  let data: unknown;
  if (mode === 'mask') data = maskPersonalFields(recorded.type, recorded.data);
  else {
    try {
      data = hideCiphertext(await personalData.reveal(recorded.type, recorded.data));
    } catch (error) {
      if (isStoreFault(error)) throw error;
      // A field that no longer decrypts (tampered ciphertext) must not hide the rest of the history,
      // nor read as masked: the auditor may see it, and it is the tampering that shows.
      data = hideCiphertext(recorded.data);
    }
  }
  const occurredAt = str(metadata.occurredAt);
  return {
    position: recorded.position,
    stream: recorded.stream,
    revision: recorded.revision,
    id: recorded.id,
    type: recorded.type,
    schemaVersion: typeof metadata.schemaVersion === 'number' ? metadata.schemaVersion : null,
    data,
    actor: str(actor?.userId),
    actorName: str(actor?.name),
    roles: Array.isArray(actor?.roles) ? actor.roles.filter((r): r is string => typeof r === 'string') : [],
    correlationId: str(metadata.correlationId),
    causationId: str(metadata.causationId),
    command: str(metadata.command),
    reason: str(metadata.reason),
    occurredAt: occurredAt === null ? null : inUtc(occurredAt),
    // Written in UTC already (`Z`, with or without milliseconds): nothing more to say.
    occurredAtAsWritten: occurredAt === null || occurredAt.endsWith('Z') ? null : occurredAt,
    recordedAt: recorded.recordedAt,
  };
}

/**
 * JSON form for HTTP and exports. Positions go out as decimal strings, like everywhere in the API
 * (api/http.ts `PositionString`): PostgreSQL positions are `xid << 20` and exceed 2^53 soon enough.
 */
export const positionToJson = (position: bigint): string => position.toString();

export type AuditEventJson = Omit<AuditEvent, 'position' | 'recordedAt'> & { position: string; recordedAt: string };

export const auditEventToJson = (event: AuditEvent): AuditEventJson => ({
  ...event,
  position: positionToJson(event.position),
  recordedAt: event.recordedAt.toISOString(),
});
