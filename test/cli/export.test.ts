import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { CRM_BIN, cleanEnv, runCrm, schemaEnv } from './support.ts';

/** `crm export` against the real PostgreSQL: what leaves imports again, and the ways its output can fail. */
const source = testSchemas('cli_export_from');
const target = testSchemas('cli_export_to');
const folder = mkdtempSync(join(tmpdir(), 'crm-export-'));
const crm = (args: string[], schemas: TestSchemas) => runCrm(args, { cwd: folder, env: schemaEnv(schemas), timeoutMs: 120_000 });

afterAll(async () => {
  await source.dropSchemas();
  await target.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

/** The columns of a customers export that an import carries over, one line per customer, sorted. */
const carried = (csv: string): string[] => {
  const [header, ...lines] = csv.trim().split('\n');
  const columns = header!.split(',');
  const at = ['id', 'name', 'email', 'phone', 'company', 'source', 'marketingConsent', 'registeredAt'].map((c) => columns.indexOf(c));
  expect(at).not.toContain(-1);
  // The values checked here hold no comma, so a plain split reads them.
  return lines.map((line) => at.map((i) => line.split(',')[i]).join(',')).sort();
};

describe('crm export', () => {
  it('writes customers that import again as they were (times, consent, phone numbers and formula-like names included)', async () => {
    const customers = join(folder, 'customers.csv');
    writeFileSync(
      customers,
      [
        'name,email,phone,company,source,marketing_consent,registered_at',
        'Ada,ada@export.example,+44 20 1234 5678,Analytical,fair,yes,1997-01-02',
        '=Plus Minus,plus@export.example,+1 555 0100,-Minus Ltd,web,no,1998-03-04T05:06:07Z',
      ].join('\n'),
    );
    expect((await crm(['import', customers, '--report', join(folder, 'r1.csv')], source)).code).toBe(0);
    expect((await crm(['rebuild', 'customers'], source)).code).toBe(0);
    const exported = join(folder, 'exported.csv');
    const first = await crm(['export', 'customers', '--output', exported], source);
    expect(first.code, first.stderr).toBe(0);
    const text = readFileSync(exported, 'utf8');
    // Guarded for spreadsheets...
    expect(text).toContain(`"'+1 555 0100"`);
    expect(text).toContain(`"'=Plus Minus"`);
    // ...and read back without the guard.
    const again = await crm(['import', exported, '--report', join(folder, 'r2.csv')], target);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toContain('2 rows read, 2 imported');
    expect((await crm(['rebuild', 'customers'], target)).code).toBe(0);
    const roundTrip = join(folder, 'round-trip.csv');
    expect((await crm(['export', 'customers', '--output', roundTrip], target)).code).toBe(0);
    expect(carried(readFileSync(roundTrip, 'utf8'))).toEqual(carried(text));
  });

  it('refuses an output it cannot write, naming it, before opening the CRM', async () => {
    const result = await crm(['export', 'customers', '--output', join(folder, 'missing', 'out.csv')], source);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^crm: cannot write the export to .*missing\/out\.csv: ENOENT/m);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('stops quietly when its reader goes away (crm export customers | head -1)', async () => {
    // Pages of 500: 1,200 more customers make the export write after the reader has gone.
    const many = join(folder, 'many.csv');
    writeFileSync(many, ['name,email', ...Array.from({ length: 1_200 }, (_, i) => `Reader ${i},reader${i}@export.example`)].join('\n'));
    expect((await crm(['import', many, '--report', join(folder, 'r3.csv')], source)).code).toBe(0);
    expect((await crm(['rebuild', 'customers'], source)).code).toBe(0);
    const child = spawn(process.execPath, [CRM_BIN, 'export', 'customers'], { cwd: folder, env: cleanEnv(schemaEnv(source)) });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // The reader takes the first chunk and closes the pipe.
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).not.toMatch(/EPIPE|\n\s+at /);
    expect(code).toBe(0);
  });
});
