import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { TEST_DATABASE_URL, testSchemas, type TestSchemas } from '../support/postgres.ts';
import { CRM_BIN, cleanEnv, runCrm, schemaEnv } from './support.ts';
import { loadConfig } from '../../cli/config.ts';
import { importFile } from '../../cli/import.ts';
import { rowCommands, type ImportKind } from '../../commands/import/rows.ts';
import { createdIdFor } from '../../commands/ids.ts';
import { openCrm } from '../../runtime/crm.ts';

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
    // Its progress ends on stderr with the records written and where.
    expect(first.stderr).toMatch(
      new RegExp(`export done: 2 records in \\d+s \\([\\d,]+ records/s\\), written to ${exported.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    );
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

  it('writes NDJSON that imports again as it stood: tags, an inactive customer, won and lost deals, resolved feedback with its body, activities, purchases, refunds, campaigns with their responses and costs', async () => {
    const from = testSchemas('cli_export_history_from');
    const to = testSchemas('cli_export_history_to');
    try {
      const write = (name: string, lines: string[]) => {
        writeFileSync(join(folder, name), lines.join('\n'));
        return join(folder, name);
      };
      const files = {
        customers: write('h-customers.csv', [
          'name,email,tags,source,status,registered_at,deactivated_at,deactivation_reason',
          // Written with an offset: the export writes the same instant in UTC.
          'Ada,ada@history.example,b2b;newsletter,fair,,1997-05-06T10:00:00+02:00,,',
          'Ida,ida@history.example,,,inactive,1997-06-07 08:00,1999-02-03,Closed the account',
        ]),
        deals: write('h-deals.csv', [
          'deal_id,customer_email,title,amount,owner_id,expected_close_date,stage,probability,status,opened_at,closed_at,won_reason,lost_reason,stage_entered_at',
          '6f1d0c0e-0000-4000-8000-000000000001,ada@history.example,Won,100,sam,1998-06-30,,,won,1998-01-05,1998-02-01,Best offer,,',
          '6f1d0c0e-0000-4000-8000-000000000002,ada@history.example,Lost,200,sam,1998-06-30,,,lost,1998-01-06,1998-03-01,,price,',
          // In its stage since weeks after it was opened: its days in stage come over with it.
          '6f1d0c0e-0000-4000-8000-000000000003,ada@history.example,Open,300,sue,1998-06-30,proposal,0.35,open,1998-01-07,,,,1998-02-15T09:30:00Z',
          '6f1d0c0e-0000-4000-8000-000000000004,ada@history.example,Won quietly,50,sue,1998-06-30,,,won,1998-01-08T09:00:00-05:00,1998-02-02,,,',
        ]),
        feedback: write('h-feedback.csv', [
          'feedback_id,customer_email,kind,subject,body,priority,submitted_at,assignee_id,first_responded_at,resolved_at,closed_at,csat,rated_at,first_response_due_at,resolution_due_at,first_response,resolution,rating_comment',
          // Its reply, resolution and rating comment leave with the export and come back.
          '6f1d0c0e-0000-4000-8000-000000000011,ada@history.example,complaint,Late,Where is it,high,1998-04-01T08:00:00Z,sue,1998-04-01T09:30:00Z,1998-04-02T08:00:00Z,1998-04-03,4,1998-04-04,,,Sorry - on its way,Sent again,"slow, ""meh"""',
          '6f1d0c0e-0000-4000-8000-000000000012,ada@history.example,question,Sizes,Do you have XL,,1998-05-01,,,,,,,,,,,',
          // Escalated in the system it came from: its deadlines were tightened, and they stay so.
          '6f1d0c0e-0000-4000-8000-000000000013,ida@history.example,complaint,Broken,It broke,urgent,1998-06-01T08:00:00Z,,,,,,,1998-06-01T09:00:00Z,1998-06-01T12:00:00Z,,,',
        ]),
        activities: write('h-activities.csv', [
          'activity_id,customer_email,deal_id,kind,subject,body,due_at,assignee_id,completed_at,occurred_at',
          '6f1d0c0e-0000-4000-8000-000000000031,ada@history.example,,call,Renewal,"Wants the blue one, ""soon""",,,,1998-01-09T10:00:00Z',
          // On a deal: the deal's customer is the activity's.
          '6f1d0c0e-0000-4000-8000-000000000032,,6f1d0c0e-0000-4000-8000-000000000003,task,Send quote,,1998-01-20T09:00:00Z,6f1d0c0e-0000-4000-8000-0000000000aa,1998-01-19T17:00:00Z,1998-01-10',
          '6f1d0c0e-0000-4000-8000-000000000033,ida@history.example,,task,Check in,,1998-07-01T09:00:00Z,,,1998-06-02',
        ]),
        purchases: write('h-purchases.csv', [
          'order_id,customer_email,amount,currency,occurred_at',
          'H-1,ada@history.example,19.90,EUR,1998-01-10 10:00',
          'H-2,ada@history.example,5,USD,1998-02-11',
          'H-3,ida@history.example,42.5,EUR,1998-12-24T18:00:00+01:00',
        ]),
        refunds: write('h-refunds.csv', [
          'refund_id,order_id,customer_email,amount,currency,reason,occurred_at',
          'R-1,H-1,ada@history.example,4.90,EUR,Arrived damaged,1998-01-20',
          'R-2,H-3,ida@history.example,42.5,EUR,,1999-01-05',
        ]),
        campaigns: write('h-campaigns.csv', [
          'campaign_id,name,channel,budget,currency,status,created_at,starts_at,ends_at,launched_at,completed_at,cancelled_at,target_segment',
          '6f1d0c0e-0000-4000-8000-000000000021,Spring,email,500,EUR,completed,1998-02-01,1998-03-01,1998-04-01,1998-03-02,1998-04-02,,"{""minRevenue"":10}"',
          '6f1d0c0e-0000-4000-8000-000000000022,Summer,sms,200,EUR,cancelled,1998-05-01,1998-06-01,,,,1998-05-20,',
          '6f1d0c0e-0000-4000-8000-000000000023,Autumn,email,300,EUR,scheduled,1998-07-01,1998-09-01,1998-10-01,,,,',
          '6f1d0c0e-0000-4000-8000-000000000024,Winter,social,100,EUR,draft,1998-08-01,,,,,,',
          '6f1d0c0e-0000-4000-8000-000000000025,Always,ads,100,EUR,paused,1998-01-01,1998-01-05,,,,,',
          // Cancelled after it ran: its responses, dated before the cancellation, are history and come in after it.
          '6f1d0c0e-0000-4000-8000-000000000026,Flash,email,100,EUR,cancelled,1998-06-01,,,1998-06-05,,1998-06-20,',
        ]),
        responses: write('h-responses.csv', [
          'campaign_id,customer_email,response,revenue,currency,occurred_at',
          // A currency on a response without revenue (none is recorded, and the export writes none).
          '6f1d0c0e-0000-4000-8000-000000000021,ada@history.example,sent,,EUR,1998-03-03',
          '6f1d0c0e-0000-4000-8000-000000000021,ada@history.example,converted,80,USD,1998-03-10 12:00',
          '6f1d0c0e-0000-4000-8000-000000000025,ida@history.example,opened,,,1998-01-06',
          '6f1d0c0e-0000-4000-8000-000000000026,ida@history.example,clicked,,,1998-06-10',
        ]),
        // Beyond Spring's budget of 500 (history is taken as it was), and one cost with no invoice number.
        costs: write('h-costs.csv', [
          'campaign_id,cost_id,amount,currency,description,occurred_at',
          '6f1d0c0e-0000-4000-8000-000000000021,INV-1,300,EUR,Print run,1998-03-05',
          '6f1d0c0e-0000-4000-8000-000000000021,INV-2,250.50,EUR,,1998-03-20 09:00',
          '6f1d0c0e-0000-4000-8000-000000000025,,40,EUR,Banner,1998-01-05',
        ]),
      };
      for (const file of Object.values(files)) {
        const imported = await crm(['import', file, '--report', join(folder, 'h-report.csv')], from);
        expect(imported.code, imported.stdout + imported.stderr + readFileSync(join(folder, 'h-report.csv'), 'utf8')).toBe(0);
      }
      expect((await crm(['rebuild'], from)).code).toBe(0);
      // Each kind is exported once from each side (a `crm` process costs seconds): the file is read again where needed.
      const exports = new Map<string, Promise<string>>();
      const exported = (schemas: TestSchemas, kind: string): Promise<string> => {
        const out = join(folder, `h-${kind}-${schemas.read}.ndjson`);
        if (!exports.has(out))
          exports.set(
            out,
            crm(['export', kind, '--format', 'ndjson', '--output', out], schemas).then((result) => {
              expect(result.code, result.stderr).toBe(0);
              return out;
            }),
          );
        return exports.get(out)!;
      };
      const kinds = ['customers', 'deals', 'feedback', 'activities', 'purchases', 'refunds', 'campaigns', 'responses', 'costs'];
      const records = (file: string) =>
        readFileSync(file, 'utf8')
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as Record<string, unknown>);
      // Exports read only: side by side. Imports go in order (purchases before their refunds, campaigns before their responses).
      await Promise.all(kinds.map((kind) => exported(from, kind)));
      for (const kind of kinds) {
        const file = await exported(from, kind);
        const imported = await crm(['import', file, '--kind', kind, '--report', join(folder, `h-${kind}-report.csv`)], to);
        expect(imported.code, imported.stdout + readFileSync(join(folder, `h-${kind}-report.csv`), 'utf8')).toBe(0);
      }
      // Each export imported back into the store it came from is what it holds already: nothing is
      // appended and nothing refused, however the original files spelled their times and currencies
      // (before, the customer written +02:00 and the response written EUR were refused). In process:
      // eight more `crm` processes would cost more than the rest of this test.
      const same = await openCrm(
        loadConfig(
          {
            DATABASE_URL: from.url,
            CRM_EVENTS_SCHEMA: from.events,
            CRM_READ_SCHEMA: from.read,
            CRM_REPORTING_SCHEMA: from.reporting,
            CRM_PROJECTIONS: 'off',
            LOG_LEVEL: 'warn',
          },
          folder,
        ),
      );
      try {
        for (const kind of kinds) {
          const file = await exported(from, kind);
          const rows = records(file).length;
          const outcome = await importFile(same.batch, { file, kind: kind as ImportKind, reportPath: join(folder, `h-${kind}-same-report.csv`) });
          expect({ ...outcome, file: kind }, readFileSync(join(folder, `h-${kind}-same-report.csv`), 'utf8')).toMatchObject({
            file: kind,
            kind,
            rows,
            imported: rows,
            alreadyPresent: rows,
            rejected: 0,
          });
        }
      } finally {
        await same.close();
      }
      expect((await crm(['rebuild'], to)).code).toBe(0);
      await Promise.all(kinds.map((kind) => exported(to, kind)));
      const kept = {
        customers: [
          'id',
          'name',
          'email',
          'tags',
          'source',
          'status',
          'registeredAt',
          'openFeedbackCount',
          'dealsOpen',
          'dealsWon',
          'dealsLost',
          'orderCount',
          'firstPurchaseAt',
          'lastPurchaseAt',
          'revenue',
          'refunded',
        ],
        purchases: ['orderId', 'customerId', 'amount', 'currency', 'occurredAt'],
        refunds: ['refundId', 'orderId', 'customerId', 'amount', 'currency', 'reason', 'occurredAt'],
        campaigns: [
          'id',
          'name',
          'channel',
          'status',
          'budget',
          'currency',
          'startsAt',
          'endsAt',
          'targetSegment',
          'createdAt',
          'launchedAt',
          'completedAt',
          'cancelledAt',
          'costs',
          'overBudget',
          'roi',
        ],
        responses: ['campaignId', 'customerId', 'response', 'revenue', 'currency', 'occurredAt'],
        costs: ['campaignId', 'costId', 'amount', 'currency', 'description', 'occurredAt'],
        deals: [
          'id',
          'stage',
          'status',
          'amount',
          'ownerId',
          'probability',
          'probabilityOverride',
          'openedAt',
          'closedAt',
          'wonReason',
          'lostReason',
          'stageEnteredAt',
        ],
        activities: ['id', 'customerId', 'dealId', 'kind', 'subject', 'body', 'dueAt', 'assigneeId', 'occurredAt', 'completedAt', 'open'],
        feedback: [
          'id',
          'body',
          'status',
          'assigneeId',
          'firstRespondedAt',
          'resolvedAt',
          'closedAt',
          'csat',
          'ratedAt',
          'firstResponseSeconds',
          'resolutionSeconds',
          'breached',
          'firstResponseDueAt',
          'resolutionDueAt',
          'firstResponse',
          'resolution',
          'ratingComment',
        ],
      };
      for (const [kind, fields] of Object.entries(kept)) {
        const view = async (schemas: TestSchemas) =>
          records(await exported(schemas, kind))
            .map((r) => Object.fromEntries(fields.map((f) => [f, r[f]])))
            .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
        const before = await view(from);
        expect(before.length).toBeGreaterThan(1);
        expect({ kind, records: await view(to) }).toEqual({ kind, records: before });
      }
      expect(records(await exported(to, 'deals')).find((r) => r.title === 'Open')).toMatchObject({
        stageEnteredAt: '1998-02-15T09:30:00.000Z',
        openedAt: '1998-01-07T00:00:00.000Z',
      });
      // The deadlines a file gave (an escalated item's) are the item's, not its priority's.
      expect(records(await exported(to, 'feedback')).find((r) => r.subject === 'Broken')).toMatchObject({
        firstResponseDueAt: '1998-06-01T09:00:00.000Z',
        resolutionDueAt: '1998-06-01T12:00:00.000Z',
      });
      expect(records(await exported(to, 'feedback')).find((r) => r.subject === 'Late')).toMatchObject({
        firstResponse: 'Sorry - on its way',
        resolution: 'Sent again',
        ratingComment: 'slow, "meh"',
      });
      // What was compared is the history, not new items: closed and resolved feedback stayed so.
      expect(records(await exported(to, 'feedback')).map((r) => r.status)).toEqual(expect.arrayContaining(['closed', 'open']));
      // Inactive since the day the file says, for its reason, not since the import.
      expect(records(await exported(to, 'customers')).find((r) => r.email === 'ida@history.example')).toMatchObject({
        status: 'inactive',
        source: null,
        deactivatedAt: '1999-02-03T00:00:00.000Z',
        deactivationReason: 'Closed the account',
      });
      // The file's reasons and owners, and none where it gave none (the import's own reason read as why a deal was won).
      expect(
        records(await exported(to, 'deals'))
          .map((r) => [r.title, r.ownerId, r.wonReason])
          .sort(),
      ).toEqual([
        ['Lost', 'sam', null],
        ['Open', 'sue', null],
        ['Won quietly', 'sue', null],
        ['Won', 'sam', 'Best offer'],
      ]);
      expect(
        records(await exported(to, 'campaigns'))
          .map((r) => r.status)
          .sort(),
      ).toEqual(['cancelled', 'cancelled', 'completed', 'draft', 'paused', 'scheduled']);
      // A campaign cancelled after it ran keeps the response dated before its cancellation, on both sides.
      for (const side of [from, to])
        expect(records(await exported(side, 'responses')).filter((r) => r.campaignId === '6f1d0c0e-0000-4000-8000-000000000026')).toMatchObject([
          { response: 'clicked', occurredAt: '1998-06-10T00:00:00.000Z' },
        ]);
      expect(records(await exported(to, 'campaigns')).find((r) => r.name === 'Spring')).toMatchObject({ costs: 550.5, overBudget: true });
    } finally {
      await from.dropSchemas();
      await to.dropSchemas();
    }
    // About 40 crm processes: 110 s alone here, 222 s at a load average of 18, and past 240 s once in CI
    // beside the other files (the machine's two cores shared): bounded for a loaded machine, not a quiet one.
  }, 480_000);

  it('writes records imported from files without ids so that they import back into their store appending nothing and refusing nothing, for every kind', async () => {
    const from = testSchemas('cli_export_idless');
    try {
      const write = (name: string, lines: string[]) => {
        writeFileSync(join(folder, name), lines.join('\n'));
        return join(folder, name);
      };
      // The campaign's id is the one its import derives from its name, as a responses file takes it from the campaigns export.
      const [created] = rowCommands.campaigns({ name: 'Spring', channel: 'email', budget: '500' });
      const spring = createdIdFor('CreateCampaign', created!.key);
      const files: [ImportKind, string][] = [
        [
          'customers',
          write('i-customers.csv', ['name,email,registered_at', 'Ada,ada@idless.example,1997-05-06T10:00:00+02:00', 'Ida,ida@idless.example,1997-06-07']),
        ],
        [
          'deals',
          write('i-deals.csv', [
            'customer_email,title,amount,owner_id,expected_close_date,status,opened_at,closed_at,won_reason',
            'ada@idless.example,Wartungsvertrag,2400,sam,2024-12-31,,2024-06-01,,',
            'ada@idless.example,Fleet,900,sam,2024-12-31,won,2024-06-02T09:00:00+02:00,2024-07-01,Best offer',
            'ida@idless.example,Vans,300,sue,2024-12-31,lost,2024-06-03 10:00,2024-07-02,',
          ]),
        ],
        [
          'feedback',
          write('i-feedback.csv', [
            'customer_email,kind,subject,body,submitted_at,resolved_at',
            'ada@idless.example,complaint,Late,Where is it,2024-03-15T01:00:00+01:00,2024-03-16',
            'ida@idless.example,question,Sizes,Do you have XL,15.03.2024,',
          ]),
        ],
        [
          'activities',
          write('i-activities.csv', [
            'customer_email,kind,subject,occurred_at,completed_at',
            'ada@idless.example,call,Renewal,2024-03-15T11:00:00+01:00,',
            'ida@idless.example,task,Send quote,2024-03-16,2024-03-17T12:00:00Z',
          ]),
        ],
        ['purchases', write('i-purchases.csv', ['order_id,customer_email,amount,currency,occurred_at', 'I-1,ada@idless.example,19.90,EUR,2024-01-10 10:00'])],
        [
          'refunds',
          write('i-refunds.csv', ['order_id,customer_email,amount,currency,reason,occurred_at', 'I-1,ada@idless.example,4.90,EUR,Damaged,2024-01-20']),
        ],
        [
          'campaigns',
          write('i-campaigns.csv', [
            'name,channel,budget,status,created_at,starts_at,ends_at,launched_at,completed_at',
            'Spring,email,500,completed,2024-02-01,2024-03-01,2024-04-01,2024-03-02,2024-04-02',
            'Winter,social,100,draft,2024-08-01,,,,',
          ]),
        ],
        ['responses', write('i-responses.csv', ['campaign_id,customer_email,response,occurred_at', `${spring},ada@idless.example,opened,2024-03-03`])],
        [
          'costs',
          write('i-costs.csv', [
            'campaign_id,amount,description,occurred_at',
            `${spring},40,Banner,2024-03-05T01:00:00+01:00`,
            `${spring},300,Print,2024-03-06`,
          ]),
        ],
      ];
      const crmOf = async () =>
        openCrm(
          loadConfig(
            {
              DATABASE_URL: from.url,
              CRM_EVENTS_SCHEMA: from.events,
              CRM_READ_SCHEMA: from.read,
              CRM_REPORTING_SCHEMA: from.reporting,
              CRM_PROJECTIONS: 'off',
              LOG_LEVEL: 'warn',
            },
            folder,
          ),
        );
      const first = await crmOf();
      try {
        for (const [kind, file] of files) {
          const report = join(folder, `i-${kind}-report.csv`);
          const outcome = await importFile(first.batch, { file, kind, reportPath: report });
          expect({ ...outcome }, readFileSync(report, 'utf8')).toMatchObject({ kind, rejected: 0 });
        }
      } finally {
        await first.close();
      }
      expect((await crm(['rebuild'], from)).code).toBe(0);
      const exported = await Promise.all(
        files.map(async ([kind]) => {
          const out = join(folder, `i-${kind}.csv`);
          const result = await crm(['export', kind, '--output', out], from);
          expect(result.code, result.stderr).toBe(0);
          return [kind, out] as const;
        }),
      );
      // Imported back: every row is the one it came from (before, an exported deal, feedback item,
      // activity or campaign was refused as `... already exists`: its id read as another row's).
      const same = await crmOf();
      try {
        for (const [kind, file] of exported) {
          const rows = readFileSync(file, 'utf8').trim().split('\n').length - 1;
          const report = join(folder, `i-${kind}-same-report.csv`);
          const outcome = await importFile(same.batch, { file, kind, reportPath: report });
          expect({ ...outcome, file: kind }, readFileSync(report, 'utf8')).toMatchObject({
            file: kind,
            kind,
            rows,
            imported: rows,
            alreadyPresent: rows,
            rejected: 0,
          });
        }
      } finally {
        await same.close();
      }
    } finally {
      await from.dropSchemas();
    }
  }, 240_000);

  it('reads its export of records made through the API, imported into the same store, as present: nothing imported, nothing refused, exit 0; an edited row is refused naming its column', async () => {
    const store = testSchemas('cli_export_api_records');
    try {
      const runtime = await openCrm(loadConfig({ ...schemaEnv(store), CRM_PROJECTIONS: 'off', LOG_LEVEL: 'warn' }, folder));
      try {
        const ctx = { actor: { userId: 'sam', roles: ['admin'] }, correlationId: 'cli-export-api-records' };
        for (const [i, name] of ['Ada', 'Ida', 'Bo'].entries()) {
          const { id } = await runtime.commands.execute({ type: 'RegisterCustomer', name, email: `${name.toLowerCase()}@api-records.example` }, ctx);
          const feedback = await runtime.commands.execute(
            { type: 'SubmitFeedback', customerId: id, kind: 'complaint', channel: 'email', subject: `Late ${i}`, body: 'Where is it' },
            ctx,
          );
          await runtime.commands.execute({ type: 'AssignFeedback', feedbackId: feedback.id, assigneeId: 'sue' }, ctx);
        }
      } finally {
        await runtime.close();
      }
      expect((await crm(['rebuild'], store)).code).toBe(0);
      for (const kind of ['customers', 'feedback']) {
        const file = join(folder, `api-records-${kind}.csv`);
        expect((await crm(['export', kind, '--output', file], store)).code).toBe(0);
        const again = await crm(['import', file, '--report', join(folder, `api-records-${kind}-report.csv`)], store);
        expect(again.stdout + again.stderr, kind).toContain(`${kind}: 3 rows read, 3 imported (3 of them already present), 0 rejected`);
        expect(again.code, kind).toBe(0);
      }
      const file = join(folder, 'api-records-feedback.csv');
      // Another assignee for the second item (the one whose subject is `Late 1`).
      const lines = readFileSync(file, 'utf8').split('\n');
      const at = lines.findIndex((line) => line.includes(',Late 1,'));
      lines[at] = lines[at]!.replace(',sue,', ',tom,');
      writeFileSync(file, lines.join('\n'));
      const edited = await crm(['import', file, '--report', join(folder, 'api-records-edited-report.csv')], store);
      expect(edited.stdout).toContain('feedback: 3 rows read, 2 imported (2 of them already present), 1 rejected');
      const report = readFileSync(join(folder, 'api-records-edited-report.csv'), 'utf8').trim().split('\n');
      expect(report).toHaveLength(2);
      expect(report[1]).toMatch(
        new RegExp(`^${at + 1},"row: Feedback [0-9a-f-]{36} is in the store already, with other values in assignee_id \\(""tom"" in this file\\)`),
      );
      expect(edited.code).toBe(3);
    } finally {
      await store.dropSchemas();
    }
  }, 240_000);

  it('writes the exchange rates in force as a rates file: imported elsewhere they give the same rates, imported again nothing', async () => {
    const from = testSchemas('cli_export_rates_from');
    const to = testSchemas('cli_export_rates_to');
    try {
      const rates = join(folder, 'rates-in.csv');
      writeFileSync(
        rates,
        [
          'currency,rate,valid_from,reason',
          'USD,0.9,2025-01-01,',
          'USD,0.95,2025-02-01,',
          'JPY,0.0061,2025-01-01,',
          'USD,0.92,2025-02-01,typo in February',
        ].join('\n'),
      );
      expect((await runCrm(['import-rates', rates], { cwd: folder, env: schemaEnv(from), timeoutMs: 120_000 })).code).toBe(0);
      expect((await crm(['rebuild', 'exchange_rates'], from)).code).toBe(0);
      const file = join(folder, 'rates-out.csv');
      const exported = await crm(['export', 'exchange-rates', '--output', file], from);
      expect(exported.code, exported.stderr).toBe(0);
      const lines = readFileSync(file, 'utf8').trim().split('\n');
      expect(lines[0]).toBe('currency,rate,validFrom,reason,baseCurrency,setAt');
      // The February correction is the rate in force; the rate it corrected is history, not a rate to import.
      expect(
        lines
          .slice(1)
          .map((line) => line.split(',').slice(0, 5).join(','))
          .sort(),
      ).toEqual([
        'JPY,0.0061,2025-01-01T00:00:00.000Z,,EUR',
        'USD,0.9,2025-01-01T00:00:00.000Z,,EUR',
        'USD,0.92,2025-02-01T00:00:00.000Z,typo in February,EUR',
      ]);
      const into = (schemas: TestSchemas) => runCrm(['import-rates', file], { cwd: folder, env: schemaEnv(schemas), timeoutMs: 120_000 });
      expect((await into(to)).stdout).toMatch(/3 recorded/);
      expect((await into(to)).stdout).toMatch(/0 recorded/);
      const ratesIn = async (schemas: TestSchemas) => {
        const runtime = await openCrm(loadConfig(schemaEnv(schemas), folder), { overrides: { publishers: false } });
        try {
          await runtime.prepareReadModels();
          await runtime.startProjections();
          const { rates: list } = await runtime.apiDeps.queries.exchangeRates();
          return list.map((r) => `${r.currency} ${r.rateDecimal} ${r.validFrom}`);
        } finally {
          await runtime.close();
        }
      };
      const expected = ['JPY 0.0061 2025-01-01T00:00:00.000Z', 'USD 0.9 2025-01-01T00:00:00.000Z', 'USD 0.92 2025-02-01T00:00:00.000Z'];
      expect(await ratesIn(from)).toEqual(expected);
      await expect.poll(() => ratesIn(to), { timeout: 30_000 }).toEqual(expected);
    } finally {
      await from.dropSchemas();
      await to.dropSchemas();
    }
  });

  it('refuses an events schema that does not exist, naming it, and creates none (a mistyped name exported nothing, exit 0)', async () => {
    const missing = testSchemas('cli_export_missing');
    try {
      const result = await crm(['export', 'customers'], missing);
      expect(result.code).toBe(66);
      expect(result.stderr).toContain(
        `no CRM data in schema ${missing.events} of this database: check CRM_EVENTS_SCHEMA (and DATABASE_URL); nothing was created`,
      );
      expect(result.stdout).toBe('');
      const client = new pg.Client({ connectionString: missing.url });
      await client.connect();
      try {
        const { rows } = await client.query('SELECT nspname FROM pg_namespace WHERE nspname = ANY($1)', [[missing.events, missing.read, missing.reporting]]);
        expect(rows).toEqual([]);
      } finally {
        await client.end();
      }
    } finally {
      await missing.dropSchemas();
    }
  });

  it('runs beside other exports started at the same moment on a store whose read models are not set up: each sets them up in turn', async () => {
    const fresh = testSchemas('cli_export_together');
    try {
      // A store set up, its read models not yet.
      const client = new pg.Client({ connectionString: fresh.url });
      await client.connect();
      await client.query(`CREATE SCHEMA "${fresh.events}"`).finally(() => client.end());
      // Each process creates the tables and recreates the reporting views; at once, one saw another's
      // views half made ("relation ... does not exist") before the set-up took the lock.
      const results = await Promise.all(
        ['customers', 'deals', 'campaigns', 'feedback'].map((kind) => crm(['export', kind, '--output', join(folder, `together-${kind}.csv`)], fresh)),
      );
      for (const result of results) expect(result.code, result.stderr).toBe(0);
      expect(readFileSync(join(folder, 'together-campaigns.csv'), 'utf8').split('\n')[0]).toContain('name');
    } finally {
      await fresh.dropSchemas();
    }
  }, 120_000);

  it('refuses an output it cannot write, naming it, before opening the CRM', async () => {
    const result = await crm(['export', 'customers', '--output', join(folder, 'missing', 'out.csv')], source);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^crm: cannot write the export to .*missing\/out\.csv: ENOENT/m);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    // A folder: refused before a whole export is written beside it and fails to replace it.
    const intoFolder = await crm(['export', 'customers', '--output', folder], source);
    expect(intoFolder.code).toBe(2);
    expect(intoFolder.stderr).toMatch(/^crm: cannot write the export to .*: it is a folder; name a file in it/m);
    expect(intoFolder.stderr).not.toMatch(/\n\s+at /);
    // An empty name names no file (it wrote to standard output); `-` is standard output (it wrote a file named "-").
    const unnamed = await crm(['export', 'customers', '--output', ''], source);
    expect(unnamed.code).toBe(2);
    expect(unnamed.stderr).toContain('--output needs a file name (or - for standard output)');
    const dash = await crm(['export', 'customers', '--output', '-'], source);
    expect(dash.code, dash.stderr).toBe(0);
    expect(dash.stdout.split('\n')[0]).toMatch(/^id,name,email/);
    expect(existsSync(join(folder, '-'))).toBe(false);
  });

  it('writes its file whole or not at all: a failed export leaves the file it would replace as it was, and no partial file', async () => {
    const path = join(folder, 'kept.csv');
    writeFileSync(path, 'the export of last week\n');
    // Nothing listens on port 1: the CRM cannot open its database.
    const env = { ...schemaEnv(source), DATABASE_URL: 'postgres://postgres@127.0.0.1:1/crm' };
    const failed = await runCrm(['export', 'customers', '--output', path], { cwd: folder, env, timeoutMs: 60_000 });
    expect(failed.code).toBe(69);
    expect(failed.stderr).toMatch(/database is not available/);
    expect(readFileSync(path, 'utf8')).toBe('the export of last week\n');
    expect(readdirSync(folder).filter((name) => name.includes('kept.csv'))).toEqual(['kept.csv']);
    // A run that succeeds replaces it.
    expect((await crm(['export', 'customers', '--output', path], source)).code).toBe(0);
    expect(readFileSync(path, 'utf8').split('\n')[0]).toMatch(/^id,name,email/);
    expect(readdirSync(folder).filter((name) => name.includes('kept.csv'))).toEqual(['kept.csv']);
  });

  describe('interrupted', () => {
    /** `crm export customers --output <name>` started; resolves once its partial file exists (before the CRM is open). */
    const started = async (name: string) => {
      const path = join(folder, name);
      writeFileSync(path, 'the export of last week\n');
      const child = spawn(process.execPath, [CRM_BIN, 'export', 'customers', '--output', path], { cwd: folder, env: cleanEnv(schemaEnv(source)) });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
      const files = () => readdirSync(folder).filter((f) => f.includes(name));
      const until = Date.now() + 30_000;
      while (!files().some((f) => f.endsWith('.partial'))) {
        if (Date.now() > until) throw new Error(`no partial file for ${name}: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      return { child, path, files, done: async () => ({ code: await closed, stderr }) };
    };

    it('by Ctrl-C: stops, says the file is as it was, and leaves no partial file', async () => {
      const run = await started('ctrl-c.csv');
      run.child.kill('SIGINT');
      const { code, stderr } = await run.done();
      expect(code).toBe(130);
      expect(stderr).toMatch(/SIGINT: stopping at the next safe point \(an --output file is left as it was; run the command again for the whole export\)/);
      expect(stderr).toMatch(/crm export: interrupted; nothing was written to .*ctrl-c\.csv \(what it held before is kept\)/);
      expect(readFileSync(run.path, 'utf8')).toBe('the export of last week\n');
      expect(run.files()).toEqual(['ctrl-c.csv']);
    });

    it('by Ctrl-C twice (quit now): the partial file goes with the process', async () => {
      const run = await started('twice.csv');
      run.child.kill('SIGINT');
      run.child.kill('SIGINT');
      expect((await run.done()).code).toBe(130);
      expect(readFileSync(run.path, 'utf8')).toBe('the export of last week\n');
      expect(run.files()).toEqual(['twice.csv']);
    });

    it('by kill -9: the partial file left behind is removed by the next export to that file', async () => {
      const run = await started('killed.csv');
      run.child.kill('SIGKILL');
      await run.done();
      expect(run.files().filter((f) => f.endsWith('.partial'))).toHaveLength(1);
      expect(readFileSync(run.path, 'utf8')).toBe('the export of last week\n');
      expect((await crm(['export', 'customers', '--output', run.path], source)).code).toBe(0);
      expect(run.files()).toEqual(['killed.csv']);
      expect(readFileSync(run.path, 'utf8').split('\n')[0]).toMatch(/^id,name,email/);
    });
  });

  it('says to retry, without a stack, when the read model it needs is from an earlier version (not rebuilt yet)', async () => {
    expect((await crm(['export', 'refunds'], source)).code).toBe(0);
    const lines = `${pg.escapeIdentifier(source.read)}.revenue_lines`;
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    try {
      // The table as version 5 of the customers projection left it: no refund ids.
      await client.query(`ALTER TABLE ${lines} RENAME COLUMN refund_id TO refund_id_before`);
      const result = await crm(['export', 'refunds'], source);
      expect(result.code).toBe(75);
      expect(result.stderr).toMatch(/^crm: The customers read model is from an earlier version and is being rebuilt .*crm projections/m);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await client.query(`ALTER TABLE ${lines} RENAME COLUMN refund_id_before TO refund_id`);
      await client.end();
    }
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
