import { sql } from 'kysely';
import type { QueryExecutorProvider } from 'kysely';
import { isMissingTable } from '../../shared/sql.ts';

/**
 * The user the users read model shows with an address (in any case), the earliest registered when
 * several do; undefined when none does or the read models are not created yet. Users registered
 * before addresses were claimed (2026-12-04) hold no claim: this is how a registration finds them.
 */
export async function userWithAddress(db: QueryExecutorProvider, readSchema: string, email: string): Promise<string | undefined> {
  try {
    const { rows } = await sql<{ user_id: string }>`SELECT user_id::text FROM ${sql.id(readSchema, 'users')}
      WHERE lower(email) = lower(${email}) ORDER BY registered_at, user_id LIMIT 1`.execute(db);
    return rows[0]?.user_id;
  } catch (error) {
    // The read models are not created yet: no user shows the address.
    if (isMissingTable(error)) return undefined;
    throw error;
  }
}
