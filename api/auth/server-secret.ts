import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';

/**
 * Secrets of the server itself (not of a client), in `server_secrets` in the events schema beside
 * `api_keys` (made by the event store's migration `0014_server_secrets`): generated once, on the
 * first start, so every API replica of one database reads the same one. The value never leaves the database and this process: it is not logged, not in any response,
 * not in the OpenAPI document. Rotating one: delete its row and restart every replica (cursors issued
 * before then become 400s; clients start their listing again).
 */
export async function loadServerSecret(db: Kysely<unknown>, schema: string, name: string): Promise<Buffer> {
  // Replicas starting at once: the first insert wins, the others wait for it and read its secret.
  await sql`INSERT INTO ${sql.id(schema, 'server_secrets')} (name, secret) VALUES (${name}, ${randomBytes(32).toString('base64')})
    ON CONFLICT (name) DO NOTHING`.execute(db);
  const { rows } = await sql<{ secret: string }>`SELECT secret FROM ${sql.id(schema, 'server_secrets')} WHERE name = ${name}`.execute(db);
  return Buffer.from(rows[0]!.secret, 'base64');
}
