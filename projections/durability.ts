import { sql, type QueryExecutorProvider } from 'kysely';

/**
 * Read-model transactions commit without waiting for their WAL flush (`synchronous_commit = off`,
 * for this transaction only). Safe here, and only here: the read models are rebuilt from the event
 * log and each batch commits together with its checkpoint, so a crash can lose at most the last
 * batches *and their checkpoints* together, and the runner applies them again from the log. The
 * events themselves are appended with the server's full durability. What it buys: a batch's commit
 * no longer waits for an fsync, which the command path's own commits were queueing behind.
 */
export const relaxDurability = async (trx: QueryExecutorProvider): Promise<void> => {
  await sql`SET LOCAL synchronous_commit = off`.execute(trx);
};
