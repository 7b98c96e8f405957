import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';

/**
 * Secrets of the server itself (not of a client), in `server_secrets` in the events schema beside
 * `api_keys`: generated once, on the first start, so every API replica of one database reads the same
 * one. The value never leaves the database and this process: it is not logged, not in any response,
 * not in the OpenAPI document. Rotating one: delete its row and restart every replica (cursors issued
 * before then become 400s; clients start their listing again).
 */
export async function loadServerSecret(db: Kysely<unknown>, schema: string, name: string): Promise<Buffer> {
  return db.transaction().execute(async (trx) => {
    // Replicas starting at once: CREATE TABLE IF NOT EXISTS races on the catalogue (docs/TOOLCHAIN-NOTES.md).
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`${schema}.server_secrets`}))`.execute(trx);
    await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schema)}`.execute(trx);
    await sql`
      CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'server_secrets')} (
        name text PRIMARY KEY,
        secret text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`.execute(trx);
    await sql`INSERT INTO ${sql.id(schema, 'server_secrets')} (name, secret) VALUES (${name}, ${randomBytes(32).toString('base64')})
      ON CONFLICT (name) DO NOTHING`.execute(trx);
    const { rows } = await sql<{ secret: string }>`SELECT secret FROM ${sql.id(schema, 'server_secrets')} WHERE name = ${name}`.execute(trx);
    return Buffer.from(rows[0]!.secret, 'base64');
  });
}
