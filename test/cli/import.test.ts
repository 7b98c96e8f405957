import { randomUUID } from 'node:crypto';
import { existsSync, linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { openCrm } from '../../runtime/crm.ts';
import type { BatchCommands } from '../../commands/batch.ts';
import { UsageError } from '../../cli/command.ts';
import { importFile } from '../../cli/import.ts';
import { testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import { runCrm } from './support.ts';

/** `crm import` against the real PostgreSQL (one schema set for this file), run as a child process. */
const schemas = testSchemas('cli_import');
const folder = mkdtempSync(join(tmpdir(), 'crm-import-'));
const env = {
  DATABASE_URL: schemas.url,
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  LOG_LEVEL: 'warn',
};

afterAll(async () => {
  await schemas.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

const eventCount = async (): Promise<number> => {
  const client = new pg.Client({ connectionString: schemas.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM "${schemas.events}".events`);
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
};

/** The owner each deal was opened with, by deal id. */
const dealOwners = async (): Promise<Record<string, string>> => {
  const client = new pg.Client({ connectionString: schemas.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ deal: string; owner: string }>(
      `SELECT data->>'dealId' AS deal, data->>'ownerId' AS owner FROM "${schemas.events}".events WHERE type = 'DealOpened'`,
    );
    return Object.fromEntries(rows.map((r) => [r.deal, r.owner]));
  } finally {
    await client.end();
  }
};

const reportOf = (path: string) =>
  readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => ({ line: Number(line.split(',')[0]), reason: line.slice(line.indexOf(',') + 1) }));

describe('crm import', () => {
  const customers = join(folder, 'customers.csv');
  const purchases = join(folder, 'purchases.csv');
  const customersReport = join(folder, 'customers-report.csv');
  const purchasesReport = join(folder, 'purchases-report.csv');
  writeFileSync(
    customers,
    [
      'name,email,phone,company,tags,source,marketing_consent',
      'Ada Lovelace,ada@example.com,+44 20 1234 5678,Analytical Engines,vip;b2b,referral,yes',
      'No Email,not-an-email,,,,,no',
      'Grace Hopper,grace@example.com,,Navy,,web,true',
      ',nameless@example.com,,,,,',
      'Too,many,fields,in,this,row,yes,extra',
      'Alan Turing,alan@example.com,,,,,maybe',
      'Edsger Dijkstra,edsger@example.com,,,,,0',
    ].join('\n'),
  );
  writeFileSync(
    purchases,
    [
      'order_id,customer_email,amount,currency,occurred_at',
      'A-1,ada@example.com,120.50,EUR,2025-03-01',
      'A-2,ada@example.com,-5,EUR,2025-03-02',
      'G-1,grace@example.com,99.99,usd,2025-04-01T10:00:00Z',
      'X-1,nobody@example.com,10,EUR,2025-04-02',
      'G-2,grace@example.com,15,EURO,2025-04-03',
    ].join('\n'),
  );

  it('imports the good customer rows and reports each bad one with its line number and field', async () => {
    const result = await runCrm(['import', customers, '--report', customersReport], { cwd: folder, env });
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(result.code).toBe(3); // some rows were rejected
    expect(result.stdout).toContain('7 rows read, 3 imported');
    const report = reportOf(customersReport);
    expect(report.map((r) => r.line)).toEqual([3, 5, 6, 7]);
    expect(report[0]!.reason).toContain('email');
    expect(report[1]!.reason).toContain('name');
    expect(report[2]!.reason).toContain('number of fields');
    // The file's column, where it named the command's field (marketingConsent).
    expect(report[3]!.reason).toContain('marketing_consent: ""maybe"" is not a yes or no; write true, yes, y, 1, wahr, vrai or false');
    expect(await eventCount()).toBe(3);
    // Every column of that file is read: nothing to warn of.
    expect(result.stderr).not.toContain('columns not read');
  });

  it('imports purchases by customer email, refusing bad amounts, currencies and unknown customers', async () => {
    const result = await runCrm(['import', purchases, '--report', purchasesReport], { cwd: folder, env });
    expect(result.code).toBe(3);
    expect(result.stdout).toContain('purchases: 5 rows read, 2 imported');
    const report = reportOf(purchasesReport);
    expect(report.map((r) => r.line)).toEqual([3, 5, 6]);
    expect(report[0]!.reason).toContain('amount');
    expect(report[2]!.reason).toContain('currency');
    expect(await eventCount()).toBe(5);
  });

  it('stops at a line the CSV cannot be read past (an unclosed quote), with the rows before it imported and what to do next', async () => {
    const broken = join(folder, 'broken.csv');
    const report = join(folder, 'broken-report.csv');
    const before = await eventCount();
    // Line 3's quote is never closed: the parser cannot tell where any later row starts.
    writeFileSync(broken, ['name,email', 'Lin Screen 24" Ltd,lin@example.com', '"Mo,mo@example.com', 'Nia,nia@example.com'].join('\n'));
    const result = await runCrm(['import', broken, '--report', report], { cwd: folder, env });
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.code).toBe(65);
    // Line 4 is inside the unclosed quote: never read.
    // The broken row is no row read (it was counted as one).
    expect(result.stdout).toContain('1 rows read, 1 imported');
    expect(result.stderr).toMatch(/^import stopped: /m);
    expect(result.stderr).toMatch(/^crm: line 3: file: cannot be read from this line on \(Quote Not Closed.*\); .*mend the file and import it again/m);
    expect(reportOf(report)).toEqual([{ line: 3, reason: expect.stringContaining('cannot be read from this line on') }]);
    // The quote inside the unquoted cell of line 2 is text.
    expect(await eventCount()).toBe(before + 1);
  });

  it('refuses a row nested thousands of levels deep and imports the rows around it, without a stack trace', async () => {
    // Found by sending such a file: "crm: unexpected error / RangeError: Maximum call stack size exceeded",
    // exit 1, nothing of the file imported (over HTTP the job failed with that message).
    const deep = join(folder, 'deep.ndjson');
    const report = join(folder, 'deep-report.csv');
    const nest = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    writeFileSync(
      deep,
      [
        JSON.stringify({ name: 'Before Deep', email: 'before-deep@example.com' }),
        `{"name":"Deep Tags","email":"deep-tags@example.com","tags":${nest(20_000)}}`,
        `{"name":"Deep Name","email":"deep-name@example.com","name":${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}}`,
        JSON.stringify({ name: 'After Deep', email: 'after-deep@example.com' }),
      ].join('\n'),
    );
    const before = await eventCount();
    const result = await runCrm(['import', deep, '--kind', 'customers', '--report', report], { cwd: folder, env });
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.code, result.stderr).toBe(3);
    expect(result.stdout).toContain('4 rows read, 2 imported');
    expect(reportOf(report)).toEqual([
      { line: 2, reason: expect.stringContaining('nested deeper than') },
      { line: 3, reason: expect.stringContaining('nested deeper than') },
    ]);
    expect(await eventCount()).toBe(before + 2);
  });

  it('asks for --kind when the columns do not tell the kind of file, without a stack trace', async () => {
    const unknown = join(folder, 'unknown.csv');
    writeFileSync(unknown, 'colour,size\nred,9\n');
    const result = await runCrm(['import', unknown, '--report', join(folder, 'unknown-report.csv')], { cwd: folder, env });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^crm: Cannot tell the kind of file from its columns; .* Give it with --kind\.$/m);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('says a file with a header and no rows holds none (exit 0: an export of nothing reads back as nothing)', async () => {
    const empty = join(folder, 'no-rows.csv');
    writeFileSync(empty, 'name,email\n');
    const result = await runCrm(['import', empty, '--report', join(folder, 'no-rows-report.csv')], { cwd: folder, env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(`crm: ${empty} holds no rows`);
    expect(result.stderr).toContain(': nothing was imported.');
  });

  it('stops at the first line that is not UTF-8 and says to give --encoding; reads the file with --encoding windows-1252', async () => {
    const latin1 = join(folder, 'latin1.csv');
    const report = join(folder, 'latin1-report.csv');
    writeFileSync(latin1, Buffer.from('name,email\nAnne,anne@example.com\nJürgen,juergen@example.com\n', 'latin1'));
    const before = await eventCount();
    const utf8 = await runCrm(['import', latin1, '--report', report], { cwd: folder, env });
    expect(utf8.code).toBe(65);
    expect(utf8.stderr).toMatch(
      /^crm: line 3: file: cannot be read from this line on \(it is not UTF-8 text: name the file's encoding with --encoding.*windows-1252 for Western Europe/m,
    );
    expect(await eventCount()).toBe(before + 1);
    const windows = await runCrm(['import', latin1, '--encoding', 'latin1', '--report', report], { cwd: folder, env });
    expect(windows.code, windows.stderr).toBe(0);
    expect(windows.stdout).toContain('2 rows read, 2 imported (1 of them already present)');
    expect(await eventCount()).toBe(before + 2);
    const unknown = await runCrm(['import', latin1, '--encoding', 'ebcdic'], { cwd: folder, env });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--encoding must name an encoding: utf-8, windows-1252 for Western Europe, windows-1254 for Turkish');
  });

  it('refuses a folder as its file, and a report it cannot write, naming them, without a stack trace', async () => {
    const folderAsFile = await runCrm(['import', folder], { cwd: folder, env });
    expect(folderAsFile.code).toBe(2);
    expect(folderAsFile.stderr).toContain(`crm: the file ${folder} is not a file`);
    const report = join(folder, 'missing', 'report.csv');
    const noReport = await runCrm(['import', customers, '--report', report], { cwd: folder, env });
    expect(noReport.code).toBe(2);
    expect(noReport.stderr).toMatch(/^crm: cannot write the report to .*missing\/report\.csv: ENOENT/m);
    for (const result of [folderAsFile, noReport]) expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('refuses a report that is the file imported, by any name, before writing anything: the file is left whole', async () => {
    // `--report f.csv` emptied f.csv to `line,reason` and said "0 rows read", exit 0.
    const file = join(folder, 'report-over-input.csv');
    const content = 'name,email\nRo Port,ro-port@example.com\n';
    writeFileSync(file, content);
    linkSync(file, join(folder, 'report-over-input-link.csv'));
    const before = await eventCount();
    for (const report of [file, 'report-over-input.csv', `../${basename(folder)}/report-over-input.csv`, 'report-over-input-link.csv']) {
      const result = await runCrm(['import', file, '--report', report], { cwd: folder, env });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain(`crm: --report ${report} is the file being imported: writing the report there would empty it; name another file`);
      expect(result.stderr).not.toMatch(/\n\s+at /);
      expect(readFileSync(file, 'utf8')).toBe(content);
    }
    expect(await eventCount()).toBe(before);
    // Refused by the import itself too, before it opens anything.
    await expect(importFile({} as BatchCommands, { file, reportPath: join(folder, 'report-over-input-link.csv') })).rejects.toThrow(UsageError);
    expect(readFileSync(file, 'utf8')).toBe(content);
  });

  it('appends nothing when the same files are imported again', async () => {
    const before = await eventCount();
    const again = await runCrm(['import', customers, '--report', customersReport], { cwd: folder, env });
    expect(again.stdout).toContain('3 imported');
    const purchasesAgain = await runCrm(['import', purchases, '--kind', 'purchases', '--report', purchasesReport], { cwd: folder, env });
    expect(purchasesAgain.stdout).toContain('2 imported');
    expect(await eventCount()).toBe(before);
  });

  it('names the columns no row read (a misspelt registered_at, consent and tags) and what to do, and imports the rest', async () => {
    const typos = join(folder, 'typos.csv');
    writeFileSync(typos, ['name,email,marketing_consnet,registerd_at,tgas', 'Typo Person,typo1@example.com,true,2015-03-01,vip'].join('\n'));
    const result = await runCrm(['import', typos, '--report', join(folder, 'typos-report.csv')], { cwd: folder, env });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('1 rows read, 1 imported');
    expect(result.stderr).toMatch(/^crm: columns not read: marketing_consnet, registerd_at, tgas\. Their cells were left out/m);
    expect(result.stderr).toContain('registered_at');
    expect(result.stderr).toContain('change those through the API');
  });

  it("imports a spreadsheet's rows padded with empty cells past the header, and refuses one with a value past it, naming its line", async () => {
    const padded = join(folder, 'padded.csv');
    const report = join(folder, 'padded-report.csv');
    const before = await eventCount();
    writeFileSync(
      padded,
      ['name;email', 'Pad One;pad1@example.com;;', 'Pad Two;pad2@example.com;  ;', 'Pad Three;pad3@example.com;;stray', 'Pad Four;pad4@example.com'].join(
        '\r\n',
      ),
    );
    const result = await runCrm(['import', padded, '--report', report], { cwd: folder, env });
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.code).toBe(3);
    expect(result.stdout).toContain('4 rows read, 3 imported');
    expect(reportOf(report)).toEqual([{ line: 4, reason: 'row: the number of fields differs from the header' }]);
    expect(result.stderr).not.toContain('columns not read');
    expect(await eventCount()).toBe(before + 3);
  });

  it('takes a customers file again whose addresses changed only in case as the same customers: nothing appended, nothing refused', async () => {
    const spelt = join(folder, 'case-spelt.csv');
    const lower = join(folder, 'case-lower.csv');
    const report = join(folder, 'case-report.csv');
    writeFileSync(spelt, ['name,email', 'Case Person,Case.Person@Example.COM'].join('\n'));
    writeFileSync(lower, ['name,email', 'Case Person,case.person@example.com'].join('\n'));
    const first = await runCrm(['import', spelt, '--report', report], { cwd: folder, env });
    expect(first.code, first.stderr).toBe(0);
    const before = await eventCount();
    const again = await runCrm(['import', lower, '--report', report], { cwd: folder, env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('1 imported (1 of them already present)');
    expect(await eventCount()).toBe(before);
  });

  it("shows a header's control characters in the message instead of sending them to the terminal", async () => {
    const hostile = join(folder, 'hostile-header.csv');
    writeFileSync(hostile, ['name,email,evil\x1b[8mhidden\x1b]0;title\x07col', 'Header Person,header1@example.com,x'].join('\n'));
    const result = await runCrm(['import', hostile, '--report', join(folder, 'hostile-report.csv')], { cwd: folder, env });
    expect(result.code, result.stderr).toBe(0);
    // eslint-disable-next-line no-control-regex -- no control character may reach the terminal
    expect(result.stderr).not.toMatch(/[\x00-\x09\x0b-\x1f]/);
    expect(result.stderr).toContain('columns not read: evil\\u001b[8mhidden\\u001b]0;title\\u0007col');
  });

  it("shows a file name's control characters escaped in what it says, the refusal of a missing file among it", async () => {
    // A file saved from a download or a mail can be named so: the terminal obeyed its ESC sequence.
    const named = join(folder, 'rows\x1b]0;pwned\x07\x9b2J.csv');
    writeFileSync(named, 'name,email\n');
    const empty = await runCrm(['import', named, '--report', join(folder, 'named-report.csv')], { cwd: folder, env });
    expect(empty.code, empty.stderr).toBe(0);
    expect(empty.stderr).toContain('rows\\u001b]0;pwned\\u0007\\u009b2J.csv holds no rows');
    const missing = await runCrm(['import', join(folder, 'gone\x1b[2J.csv')], { cwd: folder, env });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('gone\\u001b[2J.csv');
    // eslint-disable-next-line no-control-regex -- no control character may reach the terminal
    for (const said of [empty.stderr, missing.stderr]) expect(said).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
  });
});

describe('crm import --default-owner', () => {
  /** A user registered in the store the command imports into. */
  const registerUser = async (): Promise<string> => {
    const runtime = await openCrm(testConfig(schemas, { CRM_PROJECTIONS: 'off' }));
    try {
      const userId = randomUUID();
      await runtime.commands.execute(
        { type: 'RegisterUser', userId, name: 'Dana', email: `dana-${userId}@crm.example`, role: 'sales' },
        { actor: { userId: 'test', roles: ['admin'] }, correlationId: 'test', idempotencyKey: `user-${userId}` },
      );
      return userId;
    } finally {
      await runtime.close();
    }
  };

  // Six runs of `crm`, each a process that starts the CRM: seconds each on a loaded machine.
  it(
    'refuses deal rows without owner_id naming the column and the option; gives them the default owner; refuses an unknown one before the first row',
    {
      timeout: 300_000,
    },
    async () => {
      const owner = await registerUser();
      const customersFile = join(folder, 'owner-customers.csv');
      writeFileSync(customersFile, 'name,email\nDee,dee-owner@example.com\n');
      expect((await runCrm(['import', customersFile, '--report', join(folder, 'owner-customers-report.csv')], { cwd: folder, env })).code).toBe(0);
      const [unowned, owned] = [randomUUID(), randomUUID()];
      const deals = join(folder, 'owner-deals.csv');
      writeFileSync(
        deals,
        [
          'deal_id,customer_email,title,amount,owner_id,expected_close_date',
          `${unowned},dee-owner@example.com,Fleet,100,,2027-06-30`,
          `${owned},dee-owner@example.com,Pilot,50,sam,2027-06-30`,
        ].join('\n'),
      );
      const report = join(folder, 'owner-deals-report.csv');

      const without = await runCrm(['import', deals, '--report', report], { cwd: folder, env });
      expect(without.code).toBe(3);
      expect(without.stdout).toContain('deals: 2 rows read, 1 imported (0 of them already present), 1 rejected');
      expect(reportOf(report)).toEqual([
        {
          line: 2,
          reason:
            '"owner_id: required: a deal has an owner (a user id); fill the column, or give the import a default owner for the rows without one (--default-owner <userId>)"',
        },
      ]);
      expect(await dealOwners()).toMatchObject({ [owned]: 'sam' });
      expect(await dealOwners()).not.toHaveProperty(unowned);

      const before = await eventCount();
      const nobody = randomUUID();
      for (const [given, message] of [
        [
          nobody,
          `crm: --default-owner: no user ${nobody}: register the user first (POST /admin/users), or name one GET /admin/users lists; nothing was imported`,
        ],
        ['sam', 'crm: --default-owner: "sam" is not a user id: name a user by the id GET /admin/users lists (a UUID); nothing was imported'],
      ]) {
        const refusedReport = join(folder, `owner-refused-${given}.csv`);
        const refused = await runCrm(['import', deals, '--default-owner', given!, '--report', refusedReport], { cwd: folder, env });
        expect(refused.code).toBe(2);
        expect(refused.stderr.trim()).toBe(message);
        // Refused before the report was opened.
        expect(existsSync(refusedReport)).toBe(false);
      }
      expect(await eventCount()).toBe(before);

      const withOwner = await runCrm(['import', deals, '--default-owner', owner, '--report', report], { cwd: folder, env });
      expect(withOwner.code, withOwner.stderr).toBe(0);
      expect(withOwner.stdout).toContain('deals: 2 rows read, 2 imported (1 of them already present), 0 rejected');
      expect(await dealOwners()).toMatchObject({ [unowned]: owner, [owned]: 'sam' });
    },
  );
});
