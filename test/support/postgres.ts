import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * Each test file gets its own schemas in the `test` database (or `DATABASE_URL`), so that files
 * running in parallel never see each other's rows. Call `dropSchemas` in `afterAll`.
 */
export const TEST_DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestSchemas {
  url: string;
  /** Event store tables. */
  events: string;
  /** Read models and projection checkpoints. */
  read: string;
  /** Documented views for reporting tools. */
  reporting: string;
  dropSchemas: () => Promise<void>;
}

export const testSchemas = (label: string): TestSchemas => {
  const prefix = `t_${label.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${randomBytes(3).toString('hex')}`;
  const names = { events: `${prefix}_events`, read: `${prefix}_read`, reporting: `${prefix}_reporting` };
  return {
    url: TEST_DATABASE_URL,
    ...names,
    dropSchemas: async () => {
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        // Shadow and as-of schemas created by rebuild/replay share the prefix.
        const { rows } = await client.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname LIKE $1`, [`${prefix}%`]);
        for (const { nspname } of rows) await client.query(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
};
