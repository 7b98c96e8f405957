import type { Actor } from '../domain/metadata.ts';

/** Who issues a command and how, and what it returns: their own module, shared by index.ts and prepare.ts without a circle. */

export interface CommandContext {
  actor: Actor;
  correlationId: string;
  causationId?: string | null;
  /** A retried command with the same key appends nothing and returns the first result. */
  idempotencyKey?: string;
  /** The stream revision the caller last saw (HTTP If-Match); a mismatch is a WrongExpectedRevision. */
  expectedRevision?: number;
  /** Business time; defaults to the clock. */
  occurredAt?: string;
  /** Why, in the actor's words (recorded in every event's metadata). */
  reason?: string;
  /**
   * What the caller may see (the user ids whose records are visible); absent: everything. A command
   * on a record outside it is refused as not found before deciding, as if the record did not exist.
   */
  scope?: { owners: readonly string[] } | null;
  /**
   * Imports: the idempotency fingerprint (`commandHash`) is taken of what the command means
   * (commands/fingerprint.ts), so a row spelled another way (the CRM's own export of it) is the same
   * command. The fingerprints earlier imports stored for the same row are accepted as the same too:
   * that of the payload as sent, and of each command in `formerly` (what an earlier version of the
   * importer built from the row), and those in `stored`: fingerprints an import stored for the same
   * row that no command can be taken again from, the row found the same by its stored events
   * (BatchCommands.registeredAs: an address spelt in another case).
   */
  fingerprint?: { byMeaning: true; formerly?: readonly { type: string; [field: string]: unknown }[]; stored?: readonly string[] };
}

export interface CommandResult {
  /** Id of the aggregate addressed (the primary for a merge). */
  id: string;
  stream: string;
  /** The stream's revision after the command (unchanged when nothing was appended). */
  revision: number;
  /**
   * Global position of the last event appended (or of the stream's last event when nothing was appended).
   * Commands decided together on one stream share one append and this position, the last of the append:
   * a read that waits for it sees the command's events.
   */
  position: bigint;
  /** Events appended by this command (for a merge: the duplicate's, then the primary's). */
  eventIds: string[];
  /** Its events were stored by an earlier run of it (the same idempotency key): nothing was appended now. */
  replayed?: true;
}
