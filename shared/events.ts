import type { CrmEvent } from '../domain/catalogue.ts';
import type { EventMetadata } from '../domain/metadata.ts';

/**
 * The two shapes of an event every layer passes around: as the store records it (opaque data and
 * metadata) and decoded (decrypted, upcast and validated). They live here, not in eventstore/ or
 * projections/, so that the store, the command side, projections, audit and the API depend on one
 * neutral module instead of on each other.
 */

/** Metadata is opaque to the store; its shape is defined in `domain/metadata.ts`. */
export type EventMetadataRecord = Record<string, unknown>;

/** An event as an engine hands it out (eventstore/contract.ts). */
export interface RecordedEvent {
  id: string;
  type: string;
  data: unknown;
  metadata: EventMetadataRecord;
  stream: string;
  revision: number;
  position: bigint;
  /** When the store recorded the event (record time, as opposed to business time in metadata). */
  recordedAt: Date;
}

/** A decoded event as projections see it: decrypted, upcast and validated, with its store envelope. */
export interface ProjectedEvent<E extends CrmEvent = CrmEvent> {
  event: E;
  id: string;
  stream: string;
  revision: number;
  position: bigint;
  recordedAt: Date;
  metadata: EventMetadata;
}
