import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createBatchCommands, streamsOf, type BatchCommands, type BatchOutcome, type PreparedItem } from '../../commands/batch.ts';
import { runImport } from '../../commands/import/importer.ts';
import { parseRecords } from '../../commands/import/parse.ts';
import { MAX_STREAMS_PER_APPEND, type EventStore } from '../../eventstore/contract.ts';
import type { PersonalData } from '../../eventstore/personal-data.ts';
import { TEST_CUSTOMER_ID_KEY } from '../support/fixtures.ts';

/**
 * How the importer cuts a file into batches: at most `batchSize` commands, and never more streams
 * than one multi-stream append takes (a feedback row addresses its own stream and its customer's).
 */
describe('import batches', () => {
  it('ends a batch before it would address more streams than one append takes', async () => {
    // Preparing needs no store: only storing does, and it is replaced here.
    const real = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: {} as EventStore, personalData: {} as PersonalData });
    const batches: { items: number; streams: number }[] = [];
    const outcomesOf = (items: unknown[]) => {
      const prepared = items as PreparedItem[];
      batches.push({ items: prepared.length, streams: new Set(prepared.flatMap(streamsOf)).size });
      return Promise.resolve(prepared.map((): BatchOutcome => ({ ok: true, stream: '', eventIds: [], alreadyDone: false })));
    };
    const batch: BatchCommands = {
      prepare: real.prepare,
      importedCustomerId: real.importedCustomerId,
      customersByEmail: real.customersByEmail,
      customersStored: real.customersStored,
      storedAlready: real.storedAlready,
      registeredAs: real.registeredAs,
      user: real.user,
      submitBatch: (items) => Promise.resolve({ outcomes: outcomesOf(items) }),
      executeBatch: outcomesOf,
    };
    const rows = Array.from({ length: 700 }, (_, i) => `complaint,web,Late ${i},Where is my order?,${randomUUID()}`);
    const file = `kind,channel,subject,body,customer_id\n${rows.join('\n')}\n`;
    const outcome = await runImport(batch, parseRecords(Readable.from([file]), 'csv'), {
      actor: { userId: 'crm-import', roles: ['admin'] },
      onRejected: (row) => {
        throw new Error(`row ${row.line} refused: ${row.reason}`);
      },
    });
    expect(outcome).toMatchObject({ kind: 'feedback', rows: 700, imported: 700, rejected: 0 });
    expect(batches.reduce((n, b) => n + b.items, 0)).toBe(700);
    expect(Math.max(...batches.map((b) => b.streams))).toBeLessThanOrEqual(MAX_STREAMS_PER_APPEND);
    // Cut by streams (500 rows, 1,000 streams), not by the 1,000-command default.
    expect(batches.map((b) => b.items)).toEqual([500, 200]);
  });
});
