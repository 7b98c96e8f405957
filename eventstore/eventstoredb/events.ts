import type { AllStreamResolvedEvent, ResolvedEvent } from '@eventstore/db-client';
import type { EventFilter, RecordedEvent } from '../contract.ts';

const isSystem = (stream: string, type: string): boolean => stream.startsWith('$') || type.startsWith('$');

export const matchesFilter = (filter: EventFilter | undefined, stream: string, type: string): boolean =>
  (!filter?.streamPrefixes?.length || filter.streamPrefixes.some((prefix) => stream.startsWith(prefix))) &&
  (!filter?.eventTypes?.length || filter.eventTypes.includes(type));

const decode = (value: unknown): unknown => {
  if (value instanceof Uint8Array) {
    const text = Buffer.from(value).toString('utf8');
    if (text.length === 0) return {};
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return value;
};

/** A client event as the contract's RecordedEvent; system events and link events without a target are left out. */
export const toRecorded = (resolved: ResolvedEvent | AllStreamResolvedEvent): RecordedEvent | undefined => {
  const event = resolved.event;
  if (!event || isSystem(event.streamId, event.type)) return undefined;
  const metadata = decode(event.metadata);
  return {
    id: event.id,
    type: event.type,
    data: decode(event.data),
    metadata: metadata && typeof metadata === 'object' && !Array.isArray(metadata) ? (metadata as Record<string, unknown>) : {},
    stream: event.streamId,
    revision: Number(event.revision),
    // Servers from 22.6 on put the position on every event (`MIN_SERVER_VERSION` is later).
    position: event.position?.commit ?? resolved.commitPosition ?? 0n,
    recordedAt: event.created,
  };
};

/** Stable JSON (sorted keys) so that content comparison ignores key order. */
export const canonicalJson = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
