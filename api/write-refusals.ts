import { DiskFull, shortageIn } from '../eventstore/errors.ts';

/** Why this process's commands are refused while its queries still answer. */
export const WRITE_REFUSAL_REASONS = ['disk-full'] as const;
export type WriteRefusalReason = (typeof WRITE_REFUSAL_REASONS)[number];

/** As GET /ready shows it. */
export type WritesStatus =
  { state: 'accepted'; reason: null; since: null; detail: null } | { state: 'refused'; reason: WriteRefusalReason; since: string; detail: string };

/**
 * Commands refused for a full database disk, as the commands of this process met it. Queries keep
 * working then, so /ready stays 200 (taking every replica out of the balancer would turn refused
 * writes into an outage of reads too); it says so under `writes` and `warnings`, and
 * `crm_writes_refused` gives an alert something to watch. Told by the commands themselves, not by a
 * reading of the disk: the first refused with `database.disk-full` (SQLSTATE 53100, or the embedded
 * database's reserve reached: eventstore/postgres/free-space.ts) sets it, the next one that records
 * its events clears it.
 */
export interface WriteRefusals {
  /** A command failed with `error`: a full disk refuses writes from now on. */
  failed(error: unknown): void;
  /** A command recorded its events: writes are taken again. */
  recorded(): void;
  status(): WritesStatus;
}

const ACCEPTED: WritesStatus = { state: 'accepted', reason: null, since: null, detail: null };

/**
 * Public words (GET /ready has no key): what ran out and what happens to commands, not the database's
 * own message, which names its files or the data folder.
 */
const RESERVE_REACHED =
  'the disk of the embedded database has less free space than it keeps in reserve (CRM_MIN_FREE_DISK_MB): commands get 503 database.disk-full until some is freed';
const DISK_FULL = "the database's disk is full: commands get 503 database.disk-full until its operator frees some";

export const createWriteRefusals = (): WriteRefusals => {
  let current: WritesStatus = ACCEPTED;
  return {
    failed(error) {
      const shortage = shortageIn(error);
      // Since the first refusal: the ones after it are the same state going on.
      if (shortage?.shortage !== 'disk' || current.state === 'refused') return;
      current = {
        state: 'refused',
        reason: 'disk-full',
        since: new Date().toISOString(),
        detail: shortage.said instanceof DiskFull ? RESERVE_REACHED : DISK_FULL,
      };
    },
    recorded() {
      current = ACCEPTED;
    },
    status: () => current,
  };
};
