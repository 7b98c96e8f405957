import { Readable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { parseRecords, type ImportRecord } from '../../commands/import/parse.ts';

/**
 * The records of a file that arrives in these pieces, one at a time as from a socket: each piece is
 * read before the next is sent (Readable.from an array hands the decoder them all at once, and the
 * reader gets one chunk). The decoder holds the first 64 bytes to tell the encoding by and passes on
 * whole lines only: `BLANK_LINES` before a header make the header's line a later piece.
 */
const recordsOfPieces = async (pieces: string[], numberColumns?: ReadonlySet<string>): Promise<ImportRecord[]> => {
  async function* slowly(): AsyncGenerator<Buffer> {
    for (const piece of pieces) {
      yield Buffer.from(piece);
      for (let i = 0; i < 5; i += 1) await nextTurn();
    }
  }
  const read: ImportRecord[] = [];
  for await (const record of parseRecords(Readable.from(slowly()), 'csv', 'utf-8', numberColumns)) read.push(record);
  return read;
};

/** 40 blank lines, 80 bytes: more than the decoder holds before it passes lines on. */
const BLANK_LINES = '\r\n'.repeat(40);

const ada = { name: 'Ada', email: 'ada@example.com' };
const grace = { name: 'Grace', email: 'grace@example.com' };

/** The header of a CSV file, read ahead to tell its delimiter, while the file is still arriving. */
describe('a CSV header arriving in pieces', () => {
  it('is told from the whole header line, not from the piece of it that came first', async () => {
    expect(await recordsOfPieces([`${BLANK_LINES}na`, 'me;email\r\n', 'Ada;ada@example.com\r\n'])).toEqual([{ line: 42, row: ada }]);
    expect(await recordsOfPieces([BLANK_LINES, 'name;email\r\nAda;ada@example.com\r\n'])).toEqual([{ line: 42, row: ada }]);
    expect(await recordsOfPieces(['name', ';email\nAda;ada@example.com\n'])).toEqual([{ line: 2, row: ada }]);
  });

  it('reads every row of the pieces after the header, a row cut between two of them too', async () => {
    expect(await recordsOfPieces(['name;email\r\n', 'Ada;ada@example.com\r\nGrace;grace@', 'example.com\r\n', 'Lin;lin@example.com'])).toEqual([
      { line: 2, row: ada },
      { line: 3, row: grace },
      { line: 4, row: { name: 'Lin', email: 'lin@example.com' } },
    ]);
  });

  it('counts a CR LF cut between two pieces before the header as one line end', async () => {
    expect(await recordsOfPieces([`${BLANK_LINES}\r`, '\n\r', '\nname;email\r', '\nAda;ada@example.com\r\n'])).toEqual([{ line: 44, row: ada }]);
  });

  it("takes the delimiter from Excel's sep= line cut from its header, blanks around it", async () => {
    expect(await recordsOfPieces([`${BLANK_LINES}se`, 'p=; \r\nname,x;email\r\n', 'Ada,A;ada@example.com\r\n'])).toEqual([
      { line: 43, row: { 'name,x': 'Ada,A', email: 'ada@example.com' } },
    ]);
  });
});

describe('a CSV file read while it arrives', () => {
  it('hands on its first rows before the rest has come (an upload is read as it streams in), whatever its line ends', async () => {
    for (const lineEnd of ['\r\n', '\n', '\r']) {
      let sendTheRest!: () => void;
      const theRest = new Promise<void>((resolve) => (sendTheRest = resolve));
      async function* upload(): AsyncGenerator<Buffer> {
        yield Buffer.from(['name;email', 'Ada;ada@example.com', lineEnd.repeat(40)].join(lineEnd));
        await theRest;
        yield Buffer.from(`Grace;grace@example.com${lineEnd}`);
      }
      const reading = parseRecords(Readable.from(upload()), 'csv');
      const waited = new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), 5_000).unref());
      const first = await Promise.race([reading.next(), waited]);
      sendTheRest();
      expect(first, JSON.stringify(lineEnd)).toEqual({ done: false, value: { line: 2, row: ada } });
      const rest: ImportRecord[] = [];
      for await (const record of reading) rest.push(record);
      expect(rest, JSON.stringify(lineEnd)).toEqual([{ line: 43, row: grace }]);
    }
  });

  it('reads a file that is only a header, without a line end, as no rows', async () => {
    expect(await recordsOfPieces(['name;email'])).toEqual([]);
    expect(await recordsOfPieces([`${BLANK_LINES}name;email`])).toEqual([]);
  });
});

describe('the delimiter of a CSV header', () => {
  it('is the one it holds most of outside quotes: commas inside quoted names do not count', async () => {
    expect(await recordsOfPieces(['"name,full";"e,mail";"tags,all"\r\nAda;ada@example.com;a,b\r\n'])).toEqual([
      { line: 2, row: { 'name,full': 'Ada', 'e,mail': 'ada@example.com', 'tags,all': 'a,b' } },
    ]);
  });

  it('is a comma when no other is ahead of it: a header of one column, or as many commas as semicolons', async () => {
    expect(await recordsOfPieces(['name\nAda\nLovelace,Ada\n'])).toEqual([
      { line: 2, row: { name: 'Ada' } },
      { line: 3, unreadable: 'row: the number of fields differs from the header' },
    ]);
    expect(await recordsOfPieces(['name,email;x\nAda,ada@example.com;y\n'])).toEqual([{ line: 2, row: { name: 'Ada', 'email;x': 'ada@example.com;y' } }]);
  });
});

describe('numbers in a file separated by semicolons', () => {
  it('reads three decimals after a comma as decimals (only a tab-separated file may mean thousands by them)', async () => {
    expect(await recordsOfPieces(['amount;subject\n1,234;x\n'])).toEqual([{ line: 2, row: { amount: '1.234', subject: 'x' } }]);
  });

  it('suggests a fourth decimal only for a number with one mark in it', async () => {
    expect(await recordsOfPieces(['amount;subject\n2.500.000;y\n'])).toEqual([
      {
        line: 2,
        unreadable:
          'amount: "2.500.000" in a file separated by semicolons may be 2500000 or 2,500.000 (a decimal comma); write it without thousands separators, with a decimal comma',
      },
    ]);
  });
});
