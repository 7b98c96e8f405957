import { sql, type Kysely } from 'kysely';
import type { StreamSnapshot, StreamSnapshots } from '../contract.ts';
import { quoteIdentifier } from './migrations.ts';

interface SnapshotRow {
  stream: string;
  revision: string;
  format: string;
  state: string;
}

/** The `stream_snapshots` table of an events schema (migration 0011), behind the contract's StreamSnapshots. */
export function createStreamSnapshots(db: Kysely<any>, schema: string): StreamSnapshots {
  const s = sql.raw(quoteIdentifier(schema));
  return {
    async load(streams, format) {
      const found = new Map<string, StreamSnapshot>();
      if (streams.length === 0) return found;
      // One probe per stream in each table. A snapshot is read only up to its stream's head, so a
      // snapshot left beyond its events (a restored backup) is never taken for the stream's state.
      const { rows } = await sql<SnapshotRow>`
        SELECT n.stream, n.revision::text AS revision, n.format, n.state
          FROM unnest(${[...new Set(streams)]}::text[]) AS wanted(name)
          CROSS JOIN LATERAL (SELECT * FROM ${s}.stream_snapshots x WHERE x.stream = wanted.name LIMIT 1) n
          CROSS JOIN LATERAL (SELECT revision FROM ${s}.streams h WHERE h.stream = wanted.name LIMIT 1) h
         WHERE n.format = ${format} AND n.revision <= h.revision`.execute(db);
      for (const row of rows) found.set(row.stream, { stream: row.stream, revision: Number(row.revision), format: row.format, state: row.state });
      return found;
    },

    async save(snapshots) {
      if (snapshots.length === 0) return;
      // Last one wins per stream within the call; across calls a newer revision (or a new format) wins.
      const latest = new Map(snapshots.map((snapshot) => [snapshot.stream, snapshot]));
      const rows = [...latest.values()];
      await sql`
        INSERT INTO ${s}.stream_snapshots AS x (stream, revision, format, state)
        SELECT * FROM unnest(${rows.map((r) => r.stream)}::text[], ${rows.map((r) => r.revision)}::bigint[],
                             ${rows.map((r) => r.format)}::text[], ${rows.map((r) => r.state)}::text[])
        ON CONFLICT (stream) DO UPDATE SET revision = excluded.revision, format = excluded.format, state = excluded.state, saved_at = now()
          WHERE x.revision < excluded.revision OR x.format <> excluded.format`.execute(db);
    },
  };
}
