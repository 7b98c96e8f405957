import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createBatchCommands } from '../../commands/batch.ts';
import { runImport, type RejectedRow } from '../../commands/import/importer.ts';
import { parseRecords } from '../../commands/import/parse.ts';
import { commandStoreFor } from '../support/command-store.ts';
import { TEST_CUSTOMER_ID_KEY, importedCustomerId } from '../support/fixtures.ts';

/**
 * An import takes the texts of its rows as the API's commands take them (the same schemas): a
 * control character in a one-line cell (a name, a title, a tag) refuses the row, naming its line,
 * its column and the code point; a note's body keeps its line breaks and tabs.
 */
const opened = commandStoreFor('import_controls');

const importing = async (lines: string[]) => {
  const rejected: RejectedRow[] = [];
  const outcome = await runImport(
    createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: opened.store, personalData: opened.personalData }),
    parseRecords(Readable.from([lines.join('\n')]), 'csv'),
    { actor: { userId: 'crm-import', roles: ['admin'] }, onRejected: (row) => void rejected.push(row) },
  );
  return { outcome, rejected };
};

describe('an import', () => {
  it('refuses a row with a control character in a one-line cell, naming the line, the column and the code point, and stores none of it', async () => {
    const email = () => `${randomUUID()}@example.com`;
    const [fine, bell, escape, lineBreak, nextLine, inTag] = [email(), email(), email(), email(), email(), email()];
    const { outcome, rejected } = await importing([
      'name,email,company,tags',
      `Fine Person,${fine},ACME,vip`,
      `Ana\u0007Lima,${bell},ACME,vip`,
      `Bob,${escape},"Evil\u001b]0;pwned\u0007 Ltd",vip`,
      // A quoted cell over two lines: the row is named by the line it starts on.
      `"Ana\nLima",${lineBreak},ACME,vip`,
      `Carl,${nextLine},x\u0085y,vip`,
      `Dora,${inTag},ACME,vip;gold\u009b`,
    ]);
    expect(outcome).toMatchObject({ kind: 'customers', imported: 1, rejected: 5 });
    expect(rejected).toEqual([
      { line: 3, reason: 'name: "Ana\\u0007Lima" is refused: contains the control character U+0007 at position 4' },
      { line: 4, reason: 'company: "Evil\\u001b]0;pwned\\u0007 Ltd" is refused: contains the control character U+001B at position 5' },
      { line: 5, reason: 'name: "Ana\\nLima" is refused: contains the control character U+000A at position 4 (a line break: this field takes one line)' },
      // The report quotes a refused value with its C1 controls escaped, as JSON escapes C0 ones.
      { line: 7, reason: 'company: "x\\u0085y" is refused: contains the control character U+0085 at position 2 (a line break: this field takes one line)' },
      { line: 8, reason: 'tags: "vip;gold\\u009b" is refused: contains the control character U+009B at position 5' },
    ]);
    for (const refused of [bell, escape, lineBreak, nextLine, inTag])
      expect(await opened.store.readStream(`customer-${importedCustomerId(refused)}`)).toEqual([]);
    expect(await opened.store.readStream(`customer-${importedCustomerId(fine)}`)).toHaveLength(1);
  });

  it('keeps tabs and line breaks in a note, and refuses its other control characters', async () => {
    const customer = `${randomUUID()}@example.com`;
    expect((await importing(['name,email', `Noted Person,${customer}`])).outcome).toMatchObject({ imported: 1 });
    const { outcome, rejected } = await importing([
      'kind,subject,body,customer_email,occurred_at,due_at',
      `note,Call,"First line\r\nsecond\n\tthird",${customer},2026-01-05T10:00:00Z,`,
      `note,Call,"cleared\rpaid",${customer},2026-01-06T10:00:00Z,`,
      `note,Bell\u0007,fine,${customer},2026-01-07T10:00:00Z,`,
    ]);
    expect(outcome).toMatchObject({ kind: 'activities', imported: 1, rejected: 2 });
    // Lines count the line ends inside quoted cells: the first row spans lines 2-4, a lone CR ends line 5.
    expect(rejected).toEqual([
      { line: 5, reason: 'body: "cleared\\rpaid" is refused: contains the control character U+000D at position 8' },
      { line: 7, reason: 'subject: "Bell\\u0007" is refused: contains the control character U+0007 at position 5' },
    ]);
  });
});
