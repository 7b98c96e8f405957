import type { EventStore } from '../eventstore/contract.ts';
import type { SqlDatabase } from '../shared/sql.ts';
import type { PersonalData } from '../eventstore/personal-data.ts';
import type { SessionLock } from '../projections/shadows.ts';

/** What the auditor's services need; wired once by the composition root. */
export interface AuditDeps {
  store: EventStore;
  personalData: PersonalData;
  /** Always PostgreSQL or PGlite: read models live there whatever the event engine. */
  database: SqlDatabase;
  schemas: {
    /** Event store tables (used directly only when `store.engine` is postgres or pglite). */
    events: string;
    /** Read models, projection checkpoints and the `audit_verifications` table. */
    read: string;
  };
  /** CRM_BASE_CURRENCY: the currency of the base figures of records as of an instant (default EUR). */
  baseCurrency?: string;
  /** Marks a verification's shadow schema as in use to other processes (projections/shadows.ts). */
  sessionLock?: SessionLock;
}

/** True when the events live in `database` under `schemas.events`, so SQL can answer audit queries. */
export const eventsInSql = (deps: AuditDeps): boolean => deps.store.engine === 'postgres' || deps.store.engine === 'pglite';
