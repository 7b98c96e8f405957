import type { CliCommand } from '../command.ts';

const megabytes = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MB`;

export const purgeErasedCommand: CliCommand = {
  name: 'purge-erased',
  maxArguments: 0,
  summary: "Rewrite the tables that held forgotten customers' personal data, so that no old row version keeps it in the database files",
  usage: 'purge-erased',
  details: `
A forget erases the customer's personal data in every row, but PostgreSQL keeps the rows' older
versions in the table and index files until that space is written over: a plain VACUUM only marks it
free, and the embedded database (CRM_DATA_DIR) runs no autovacuum at all. This command writes anew
(VACUUM FULL) each table that holds personal data or the keys to it: the data keys and the address
index of the events schema, the customers, feedback, activities and likely-duplicate tables of the
read models and of every copy made by crm replay, and the HTTP import jobs' bad rows. What is left in
the files afterwards is the live rows.

Each table is locked while it is written (reads and commands that need it wait): run it at a quiet
hour after forgets. A table that another session holds (a BI tool's open transaction, a long
report) is tried again for up to 60 s, each try waiting at most the connection's lock_timeout; then
the command stops with exit code 75, naming those sessions. On the embedded database, stop crm serve first (the data folder takes one
process). WAL archives and backups keep what they hold until they expire. Safe to interrupt and to
run again: a table rewritten is complete, the others are left as they were.`,
  database: { kind: 'rerunnable', note: 'a table written anew again holds the same rows' },
  options: {},
  async run(run) {
    const { openDatabase } = await import('../../runtime/crm.ts');
    const { erasableTables, rewriteTable } = await import('../../runtime/purge-erased.ts');
    const database = await openDatabase(run.config, { existingOnly: true });
    try {
      const tables = await erasableTables(database.db, run.config.schemas);
      let before = 0;
      let after = 0;
      for (const [i, table] of tables.entries()) {
        if (run.signal.aborted) {
          run.err(`crm purge-erased: stopped after ${i} of ${tables.length} tables; run it again to write the others anew.`);
          return 130;
        }
        const started = performance.now();
        const sizes = await rewriteTable(database.db, table);
        before += sizes.bytesBefore;
        after += sizes.bytesAfter;
        run.err(
          `[${i + 1}/${tables.length}] ${table.schema}.${table.table}: ${megabytes(sizes.bytesBefore)} -> ${megabytes(sizes.bytesAfter)} (${Math.round(performance.now() - started)} ms)`,
        );
      }
      run.out(`Wrote ${tables.length} tables anew (${megabytes(before)} -> ${megabytes(after)}): no old row version of them is left in the database files.`);
      return 0;
    } finally {
      await database.close();
    }
  },
};
