import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createdIdFor, customerIdUnder, unkeyedCustomerId } from '../../commands/ids.ts';
import {
  IMPORTED_RESOLUTION,
  IMPORTED_RESPONSE,
  detectKind,
  importColumns,
  importKinds,
  isImportKind,
  knownColumns,
  MAX_JSON_DEPTH,
  normalizeHeader,
  rowCommands as builders,
  type RowOptions,
  RowRejected,
  takesDefaultOwner,
  type ImportKind,
  type Row,
} from '../../commands/import/rows.ts';
import { commandSchemas, type CommandType } from '../../commands/schemas.ts';
import { EXPORT_COLUMNS } from '../../projections/queries/export.ts';
import { importedCustomerId } from '../support/fixtures.ts';

/** The row builders as an import calls them: customers named by address get the tests' keyed ids. */
const rowCommands = Object.fromEntries(
  Object.entries(builders).map(([kind, build]) => [
    kind,
    (row: Row, options: RowOptions = {}) => build(row, { customerIdFor: importedCustomerId, ...options }),
  ]),
) as typeof builders;

/**
 * File rows to commands, without a store: every column a kind reads under each of its names, the
 * optional columns present, absent and blank, the defaults, the idempotency keys, and the values left
 * for the command schema to refuse (naming the field).
 */

/** The idempotency key of a row: the file kind and a digest of the row's natural key. */
const keyFor = (kind: ImportKind, natural: string) => `import:${kind}:${createHash('sha256').update(natural).digest('hex').slice(0, 40)}`;
const one = (kind: ImportKind, row: Row) => {
  const commands = rowCommands[kind](row);
  expect(commands).toHaveLength(1);
  return commands[0]!;
};
/** The schema's refusal of a command, as field paths. */
const refusedFields = (command: { type: CommandType; [field: string]: unknown }): string[] => {
  const { type, ...payload } = command;
  const parsed = (commandSchemas[type] as unknown as { safeParse(v: unknown): { success: boolean; error?: { issues: { path: PropertyKey[] }[] } } }).safeParse(
    payload,
  );
  return parsed.success ? [] : [...new Set(parsed.error!.issues.map((i) => i.path.join('.')))];
};
const rejection = (kind: ImportKind, row: Row): string => {
  try {
    rowCommands[kind](row);
  } catch (error) {
    expect(error).toBeInstanceOf(RowRejected);
    return (error as Error).message;
  }
  throw new Error('the row was not refused');
};

const ADA = 'ada@example.com';
const CUSTOMER = '11111111-1111-4111-8111-111111111111';
const OWNER = '22222222-2222-4222-8222-222222222222';

describe('import kinds and headers', () => {
  it('knows the nine kinds, and nothing else', () => {
    expect([...importKinds]).toEqual(['customers', 'purchases', 'refunds', 'deals', 'campaigns', 'responses', 'costs', 'feedback', 'activities']);
    for (const kind of importKinds) expect(isImportKind(kind)).toBe(true);
    for (const other of ['customer', 'Customers', '', 'planets', undefined, 3]) expect(isImportKind(other)).toBe(false);
  });

  it('normalises headers: trimmed, lower case, runs of spaces and dashes one underscore, camel case as words', () => {
    expect(normalizeHeader('  Customer Email ')).toBe('customer_email');
    expect(normalizeHeader('Expected-Close-Date')).toBe('expected_close_date');
    expect(normalizeHeader('order - id')).toBe('order_id');
    // Invisible characters pasted in a header (a zero-width space, direction marks, a word joiner) name nothing.
    expect(normalizeHeader('\u200bE-Mail\u200e')).toBe('email');
    expect(normalizeHeader('na\u2060me\u200f')).toBe('name');
    expect(normalizeHeader('refund\t\tID')).toBe('refund_id');
    expect(normalizeHeader('registeredAt')).toBe('registered_at');
    expect(normalizeHeader('marketingConsent')).toBe('marketing_consent');
    expect(normalizeHeader('orderID')).toBe('order_id');
    expect(normalizeHeader('ID')).toBe('id');
    expect(normalizeHeader('a_b')).toBe('a_b');
  });

  it('tells each kind of file from its columns, and no kind from too few of them', () => {
    const cases: [string[], ImportKind | undefined][] = [
      [['refund_id', 'customer_id'], 'refunds'],
      [['order_id', 'refund_reason'], 'refunds'],
      [['order_id', 'amount', 'refund_reason'], 'refunds'],
      [['Order ID', 'Amount'], 'purchases'],
      [['order_id', 'amount'], 'purchases'],
      [['order_id'], undefined],
      [['refund_reason', 'amount'], undefined],
      [['amount'], undefined],
      [['title', 'expected_close_date'], 'deals'],
      [['title', 'amount', 'currency', 'owner_id', 'stage', 'opened_at', 'status', 'closed_at', 'customer_email'], 'deals'],
      [['kind', 'channel', 'subject', 'priority', 'submitted_at', 'customer_email'], 'feedback'],
      [['order_id', 'customer_email', 'amount', 'currency', 'reason', 'occurred_at'], 'refunds'],
      [['order_id', 'amount', 'refunded_at'], 'refunds'],
      // An activities export has a subject and a body as feedback has, and its own columns beside them.
      [['id', 'customerId', 'dealId', 'kind', 'subject', 'body', 'dueAt', 'assigneeId', 'occurredAt', 'completedAt', 'loggedBy'], 'activities'],
      [['activity_id', 'customer_email', 'kind', 'subject'], 'activities'],
      [['deal_id', 'kind', 'subject', 'body', 'occurred_at'], 'activities'],
      [['customer_email', 'kind', 'subject', 'body', 'submitted_at'], 'feedback'],
      [['title'], undefined],
      [['expected_close_date'], undefined],
      [['campaign_id', 'response', 'customer_id'], 'responses'],
      [['campaign_id', 'kind', 'customer_email'], 'responses'],
      [['campaign_id', 'response'], undefined],
      [['campaign_id', 'customer_id'], undefined],
      [['response', 'customer_id'], undefined],
      [['kind', 'customer_email'], undefined],
      [['campaign_id', 'cost_id'], 'costs'],
      [['campaignId', 'costId', 'amount', 'currency', 'description', 'occurredAt'], 'costs'],
      [['campaign_id', 'amount', 'description'], 'costs'],
      [['campaign_id', 'amount', 'customer_id'], undefined],
      [['cost_id', 'amount'], undefined],
      [['channel', 'budget'], 'campaigns'],
      [['campaign_id', 'name', 'channel', 'budget'], 'campaigns'],
      [['channel'], undefined],
      [['budget'], undefined],
      [['subject', 'body'], 'feedback'],
      [['kind', 'channel', 'subject', 'body', 'customer_id'], 'feedback'],
      [['subject'], undefined],
      [['body'], undefined],
      [['email', 'name'], 'customers'],
      [[' Name ', 'EMAIL'], 'customers'],
      [['email'], undefined],
      [['name'], undefined],
      [[], undefined],
    ];
    for (const [headers, kind] of cases) expect({ headers, kind: detectKind(headers) }).toEqual({ headers, kind });
  });

  it('derives a customer id from an email under the installation key: stable, trimmed and in any case, another under another key', () => {
    const key = Buffer.alloc(32, 1);
    const id = customerIdUnder(key, ADA);
    expect(customerIdUnder(key, '  ADA@Example.COM ')).toBe(id);
    expect(customerIdUnder(Buffer.alloc(32, 2), ADA)).not.toBe(id);
    // Nothing an analyst can compute from a guessed address alone: not the digest importers used before.
    expect(id).not.toBe(unkeyedCustomerId(ADA));
    const variants = new Set<string>();
    for (let i = 0; i < 64; i++) {
      const keyed = customerIdUnder(key, `p${i}@example.com`);
      expect(keyed).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const digest = createHmac('sha256', key).update(`crm-import:customer:p${i}@example.com`).digest('hex');
      const plain = keyed.replaceAll('-', '');
      expect(plain.slice(0, 12) + plain.slice(13, 16) + plain.slice(17)).toBe(digest.slice(0, 12) + digest.slice(13, 16) + digest.slice(17, 32));
      variants.add(keyed[19]!);
    }
    expect([...variants].sort()).toEqual(['8', '9', 'a', 'b']);
    expect(customerIdUnder(key, 'grace@example.com')).not.toBe(id);
  });

  it('still knows the id importers gave before ids were keyed (customers imported so keep it)', () => {
    expect(unkeyedCustomerId(ADA)).toBe('e3a7480b-93a5-452a-be43-2b3995f7f951');
    expect(unkeyedCustomerId('  ADA@Example.COM ')).toBe(unkeyedCustomerId(ADA));
    const digest = createHash('sha256').update(`crm-import:customer:${ADA}`).digest('hex');
    expect(unkeyedCustomerId(ADA).replaceAll('-', '').slice(0, 12)).toBe(digest.slice(0, 12));
  });

  it('lists in the help every column a kind reads under its first name', () => {
    // Other names a column may have (aliases) are accepted but not listed.
    const aliases: Record<ImportKind, string[]> = {
      customers: ['customer_id', 'consent', 'customer_since', 'owner'],
      purchases: ['email', 'date', 'purchased_at'],
      refunds: ['email', 'refund_reason', 'date', 'refunded_at'],
      deals: ['email', 'id', 'owner', 'created_at', 'reason'],
      campaigns: ['id'],
      responses: ['email', 'kind', 'date'],
      costs: ['date'],
      feedback: ['email', 'id', 'occurred_at', 'date', 'assignee', 'responded_at', 'response'],
      activities: ['email', 'id', 'date', 'assignee'],
    };
    for (const kind of importKinds) {
      const read = new Set<string>();
      // Every column blank, so each alias is read in turn; then with a customer, an owner and each outcome,
      // so the columns read after them are read too.
      const history = { customer_id: 'c', first_responded_at: '2020-01-01', resolved_at: '2020-01-02', closed_at: '2020-01-03', rated_at: '2020-01-04' };
      for (const given of [
        {},
        { customer_id: 'c', owner_id: 'u' },
        { customer_id: 'c', owner_id: 'u', status: 'won' },
        { customer_id: 'c', owner_id: 'u', status: 'lost' },
        { status: 'completed' },
        { status: 'paused' },
        { status: 'cancelled' },
        { status: 'inactive' },
        history,
      ]) {
        const row = new Proxy(
          {},
          {
            get: (_target, name) => {
              if (typeof name === 'string') read.add(name);
              return (given as Row)[name as string] ?? ' ';
            },
            has: (_target, name) => {
              if (typeof name === 'string') read.add(name);
              return name in given;
            },
          },
        );
        try {
          rowCommands[kind](row);
        } catch (error) {
          expect(error).toBeInstanceOf(RowRejected);
        }
      }
      const listed = importColumns[kind]
        .replace(/\([^)]*\)/g, '')
        .split(',')
        .flatMap((part) => part.trim().split(' or '))
        .map((part) => part.trim().split(/[\s(]/)[0]!);
      expect({ kind, listed: listed.sort() }).toEqual({ kind, listed: [...read].filter((c) => !aliases[kind].includes(c)).sort() });
    }
  });
});

describe("an export's columns imported back", () => {
  it("are known to its kind, read or its export's own (merged_into, logged_by); only the figures the export derives are named", () => {
    // Figures no import reads, named when an export is imported back, as a column of another system's
    // file would be (README, Columns no row read are named). A column an export gains is listed here or known.
    const derived: Record<ImportKind, string[]> = {
      customers: [
        'first_purchase_at',
        'last_purchase_at',
        'order_count',
        'revenue',
        'refunded',
        'currency',
        'forgotten_at',
        'updated_at',
        'open_feedback_count',
        'deals_open',
        'deals_won',
        'deals_lost',
        'revision',
        'position',
        'base_currency',
        'revenue_base',
        'missing_rates',
      ],
      purchases: [],
      refunds: [],
      deals: [
        'weighted_amount',
        'updated_at',
        'days_in_stage',
        'revision',
        'amount_at',
        'base_currency',
        'amount_base',
        'weighted_amount_base',
        'missing_rates',
      ],
      campaigns: [
        'costs',
        'sent',
        'opened',
        'clicked',
        'converted',
        'unsubscribed',
        'revenue',
        'roi',
        'conversion_rate',
        'over_budget',
        'updated_at',
        'revision',
        'base_currency',
        'costs_base',
        'revenue_base',
        'roi_base',
        'missing_rates',
      ],
      responses: [],
      costs: [],
      feedback: [
        'escalation_count',
        'updated_at',
        'first_response_seconds',
        'resolution_seconds',
        'first_response_breached',
        'resolution_breached',
        'breached',
        'revision',
      ],
      activities: ['open', 'overdue', 'updated_at', 'revision'],
    };
    for (const kind of importKinds) {
      // `id` is read as the record's own (customer_id, deal_id, ...), under its export's name.
      const unknown = EXPORT_COLUMNS[kind].map(normalizeHeader).filter((column) => column !== 'id' && !knownColumns[kind].has(column));
      expect({ kind, unknown }).toEqual({ kind, unknown: derived[kind] });
    }
  });
});

describe('customer rows', () => {
  it('refuses a text column given a number NDJSON cannot hold (1e400 reads as Infinity), naming the column', () => {
    // Found importing {"name":1e400,...}: the customer came in named "null" (JSON.stringify(Infinity)).
    expect(rejection('customers', { email: ADA, name: Infinity })).toBe('name: a number out of range (1e400 and the like read as Infinity)');
    expect(rejection('customers', { email: ADA, name: 'Ada', company: -Infinity })).toBe(
      'company: a number out of range (1e400 and the like read as Infinity)',
    );
    // A finite number is text as written, as before.
    expect(rowCommands.customers({ email: ADA, name: 42 })[0]!.command.name).toBe('42');
    // An object or an array is no text: refused as the API refuses one (its JSON came in as the name).
    expect(rejection('customers', { email: ADA, name: { first: 'Ada' } })).toBe('name: a JSON object where text is expected');
    expect(rejection('purchases', { customer_email: ADA, order_id: ['o-1'], amount: 5 })).toBe('order_id: a JSON array where text is expected');
  });

  it('refuses a text column given an NDJSON integer beyond 2^53, which JSON.parse rounds, naming the column', () => {
    // Found importing {"order_id":9007199254740993} and {"order_id":9007199254740992}: both stored as ...992, one order.
    const beyond = (read: number) => `a number beyond 2^53 loses digits (it reads as ${read}): write it as a string, in quotes`;
    expect(rejection('purchases', { customer_id: CUSTOMER, order_id: JSON.parse('9007199254740993') as number, amount: 5 })).toBe(
      `order_id: ${beyond(9007199254740992)}`,
    );
    expect(rejection('purchases', { customer_id: CUSTOMER, order_id: 9007199254740992, amount: 5 })).toBe(`order_id: ${beyond(9007199254740992)}`);
    expect(rejection('customers', { email: ADA, name: 'Ada', id: -9007199254740992 })).toBe(`id: ${beyond(-9007199254740992)}`);
    expect(rejection('customers', { email: ADA, name: 'Ada', phone: 1e21 })).toBe(`phone: ${beyond(1e21)}`);
    // The largest integer a number holds exactly is text as written.
    expect(one('purchases', { customer_id: CUSTOMER, order_id: 9007199254740991, amount: 5 }).command.orderId).toBe('9007199254740991');
    expect(one('purchases', { customer_id: CUSTOMER, order_id: -9007199254740991, amount: 5 }).command.orderId).toBe('-9007199254740991');
    // An amount that large is beyond what an amount may be (MAX_AMOUNT), refused by the schema as any.
    expect(refusedFields(one('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: 9007199254740992 }).command)).toEqual(['amount']);
  });

  it('maps every column, with the business time as a full ISO time', () => {
    const row = {
      id: CUSTOMER,
      name: ' Ada Lovelace ',
      email: ` ${ADA} `,
      phone: '+44 20 7946 0000',
      company: 'Analytical Engines',
      tags: 'vip; gold|| beta ;',
      source: 'fair',
      marketing_consent: 'Yes',
      registered_at: '1997-01-02',
      owner_id: OWNER,
    };
    expect(one('customers', row)).toStrictEqual({
      command: {
        type: 'RegisterCustomer',
        customerId: CUSTOMER,
        name: 'Ada Lovelace',
        email: ADA,
        phone: '+44 20 7946 0000',
        company: 'Analytical Engines',
        tags: ['vip', 'gold', 'beta'],
        source: 'fair',
        marketingConsent: true,
        occurredAt: '1997-01-02T00:00:00.000Z',
        ownerId: OWNER,
      },
      key: keyFor('customers', ADA),
      // What the importer built before it read the owner: a customer stored so is this row still.
      formerly: [
        {
          type: 'RegisterCustomer',
          customerId: CUSTOMER,
          name: 'Ada Lovelace',
          email: ADA,
          phone: '+44 20 7946 0000',
          company: 'Analytical Engines',
          tags: ['vip', 'gold', 'beta'],
          source: 'fair',
          marketingConsent: true,
          occurredAt: '1997-01-02T00:00:00.000Z',
        },
      ],
    });
  });

  it('fills the optional columns when absent or blank, and derives the id from the email', () => {
    const expected = {
      command: {
        type: 'RegisterCustomer',
        customerId: importedCustomerId(ADA),
        name: 'Ada',
        email: ADA,
        phone: null,
        company: null,
        tags: [],
        // No source is no source (it read `import`, which an export then wrote back as the source).
        marketingConsent: false,
      },
      key: keyFor('customers', ADA),
      formerly: [
        {
          type: 'RegisterCustomer',
          customerId: importedCustomerId(ADA),
          name: 'Ada',
          email: ADA,
          phone: null,
          company: null,
          tags: [],
          source: 'import',
          marketingConsent: false,
        },
      ],
    };
    expect(one('customers', { name: 'Ada', email: ADA })).toStrictEqual(expected);
    const blank = {
      name: 'Ada',
      email: ADA,
      id: ' ',
      customer_id: '',
      phone: ' ',
      company: '',
      tags: ' ',
      source: '  ',
      marketing_consent: '',
    };
    expect(one('customers', blank)).toStrictEqual(expected);
    const nulls = { name: 'Ada', email: ADA, id: null, phone: null, company: null, tags: null, source: null, marketing_consent: null };
    expect(one('customers', nulls)).toStrictEqual(expected);
    // A file that dates its customers and leaves one undated: refused, not registered at the import's time.
    const undated =
      /^registered_at: empty in a file that dates its rows; the row would be recorded at the import's time: write its date, or leave the column out/;
    expect(() => one('customers', { ...blank, registered_at: ' ' })).toThrow(undated);
    expect(() => one('customers', { ...nulls, registered_at: null })).toThrow(undated);
    expect(() => one('customers', { ...blank, customer_since: '' })).toThrow(/^customer_since: empty in a file that dates its rows/);
    // An inactive customer's deactivation dates it (as before), and an undated deactivation is refused alike.
    expect(rowCommands.customers({ ...blank, registered_at: '', status: 'inactive', deactivated_at: '2019-01-01' })[0]!.command).toMatchObject({
      occurredAt: '2019-01-01T00:00:00.000Z',
    });
    expect(() => one('customers', { ...blank, status: 'inactive', deactivated_at: '' })).toThrow(/^deactivated_at: empty in a file that dates its rows/);
  });

  it("gives the run's default owner to a customer whose row has none, and none without a default", () => {
    const DEFAULT = '33333333-3333-4333-8333-333333333333';
    const defaulted = one('customers', { name: 'Ada', email: ADA, owner_id: ' ' });
    expect(defaulted.command).not.toHaveProperty('ownerId');
    const [register] = rowCommands.customers({ name: 'Ada', email: ADA, owner_id: ' ' }, { defaultOwner: DEFAULT });
    expect(register!.command).toMatchObject({ ownerId: DEFAULT });
    // No earlier importer gave an owner the file did not: a customer it stored without one is not this row.
    expect(register).not.toHaveProperty('formerly');
    const [own] = rowCommands.customers({ name: 'Ada', email: ADA, owner: OWNER }, { defaultOwner: DEFAULT });
    expect(own!.command).toMatchObject({ ownerId: OWNER });
    expect(own!.formerly![0]).not.toHaveProperty('ownerId');
    expect(takesDefaultOwner('customers', { name: 'Ada', email: ADA }, { defaultOwner: DEFAULT })).toBe(true);
    // Kinds without an owner take none.
    expect(takesDefaultOwner('purchases', { order_id: 'A-1' }, { defaultOwner: DEFAULT })).toBe(false);
    expect(one('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: '3' }).command).not.toHaveProperty('ownerId');
  });

  it('takes the other names of the id, the consent and the registration time', () => {
    const cmd = one('customers', { name: 'Ada', email: ADA, customer_id: CUSTOMER, consent: 'no', customer_since: '2001-02-03T04:05:06.000Z' });
    expect(cmd.command).toMatchObject({ customerId: CUSTOMER, marketingConsent: false, occurredAt: '2001-02-03T04:05:06.000Z' });
    // The first name wins over the others when both are given.
    const both = one('customers', {
      name: 'Ada',
      email: ADA,
      id: CUSTOMER,
      customer_id: 'other',
      marketing_consent: 'n',
      consent: 'y',
      registered_at: '1990-01-01',
      customer_since: '2000-01-01',
    });
    expect(both.command).toMatchObject({ customerId: CUSTOMER, marketingConsent: false, occurredAt: '1990-01-01T00:00:00.000Z' });
  });

  it("reads consent as yes/no words in any case, German and French Excel's included, keeps NDJSON booleans, and refuses other text saying what it reads", () => {
    const consent = (value: unknown) => one('customers', { name: 'Ada', email: ADA, marketing_consent: value }).command.marketingConsent;
    for (const yes of ['true', 'TRUE', 'yes', 'Yes', 'y', 'Y', '1', 'WAHR', 'Wahr', 'VRAI', 'vrai', true])
      expect({ yes, consent: consent(yes) }).toEqual({ yes, consent: true });
    for (const no of ['false', 'False', 'no', 'NO', 'n', '0', 'FALSCH', 'falsch', 'FAUX', 'Faux', false])
      expect({ no, consent: consent(no) }).toEqual({ no, consent: false });
    expect(() => consent('maybe')).toThrow(
      new RowRejected('marketing_consent: "maybe" is not a yes or no; write true, yes, y, 1, wahr, vrai or false, no, n, 0, falsch, faux (in any case)'),
    );
    expect(() => consent('\u009b31m')).toThrow(/^marketing_consent: "\\u009b31m" is not a yes or no/);
    // An NDJSON value that is no boolean is the schema's to refuse, naming the field.
    expect(consent(2)).toBe(2);
    expect(refusedFields(one('customers', { name: 'Ada', email: ADA, marketing_consent: 2 }).command)).toEqual(['marketingConsent']);
  });

  it('keys a customer row by its email alone, so the other columns may change', () => {
    const a = one('customers', { name: 'Ada', email: ADA, phone: '123' });
    const b = one('customers', { name: 'Ada L.', email: ADA });
    expect(a.key).toBe(b.key);
    expect(one('customers', { name: 'Grace', email: 'grace@example.com' }).key).toBe(keyFor('customers', 'grace@example.com'));
    // Without an email: no id, the key of an empty email, and the schema names the field.
    const none = one('customers', { name: 'Nobody' });
    expect(none.key).toBe(keyFor('customers', ''));
    expect(none.command.customerId).toBeUndefined();
    expect(refusedFields(none.command)).toEqual(['email']);
  });

  it('keeps NDJSON values that are not text as they are, written out where text is expected', () => {
    const cmd = one('customers', { name: 42, email: ADA, tags: 'a', marketing_consent: true, company: false });
    expect(cmd.command).toMatchObject({ name: '42', company: 'false', marketingConsent: true, tags: ['a'] });
  });

  it('reads tags given as an NDJSON array, as the exports write them', () => {
    expect(one('customers', { name: 'Ada', email: ADA, tags: [' b2b ', 'newsletter', ''] }).command.tags).toEqual(['b2b', 'newsletter']);
    expect(one('customers', { name: 'Ada', email: ADA, tags: [] }).command.tags).toEqual([]);
    expect(refusedFields(one('customers', { name: 'Ada', email: ADA, tags: ['ok', { no: 1 }] }).command)).toEqual(['tags.1']);
  });

  it('brings an inactive customer in inactive, and refuses merged and forgotten ones with the reason', () => {
    const row = { id: CUSTOMER, name: 'Ada', email: ADA, registered_at: '1997-01-02' };
    const key = keyFor('customers', ADA);
    expect(rowCommands.customers({ ...row, status: 'Active', merged_into: ' ' })).toHaveLength(1);
    expect(rowCommands.customers({ ...row, status: 'inactive', deactivated_at: '1998-02-03', deactivation_reason: 'moved away' })[1]).toStrictEqual({
      command: { type: 'DeactivateCustomer', customerId: CUSTOMER, reason: 'moved away', occurredAt: '1998-02-03T00:00:00.000Z' },
      key: `${key}:deactivated`,
    });
    // Without a time, the deactivation is recorded when imported.
    expect(rowCommands.customers({ ...row, status: 'INACTIVE' })[1]).toStrictEqual({
      command: { type: 'DeactivateCustomer', customerId: CUSTOMER },
      key: `${key}:deactivated`,
    });
    const other = '22222222-2222-4222-8222-222222222222';
    expect(rejection('customers', { ...row, status: 'merged', merged_into: other })).toBe(
      `merged_into: merged into ${other}; a merged customer is not imported (merge through the API)`,
    );
    expect(rejection('customers', { ...row, status: 'forgotten' })).toMatch(/^status: a forgotten customer is not imported/);
    expect(rejection('customers', { ...row, status: 'vip' })).toBe('status: expected active or inactive, got "vip"');
  });

  it('registers an inactive customer without registered_at when it was deactivated, and refuses a deactivation before the registration', () => {
    const row = { id: CUSTOMER, name: 'Ada', email: ADA, status: 'inactive', deactivated_at: '1998-02-03' };
    const [register, deactivate] = rowCommands.customers(row);
    expect(register!.command.occurredAt).toBe('1998-02-03T00:00:00.000Z');
    expect(deactivate!.command.occurredAt).toBe('1998-02-03T00:00:00.000Z');
    // Imported before this default, it registered at its import: the same row.
    expect(register!.formerly?.[0]).not.toHaveProperty('occurredAt');
    expect(rejection('customers', { ...row, registered_at: '1999-01-01' })).toBe(
      'deactivated_at: before registered_at (1998-02-03T00:00:00.000Z < 1999-01-01T00:00:00.000Z)',
    );
  });

  it('leaves bad values for the schema, which names each field', () => {
    expect(refusedFields(one('customers', { name: 'Ada', email: 'not-an-email' }).command)).toEqual(['email']);
    expect(refusedFields(one('customers', { name: 'Ada', email: ADA, phone: 'call me' }).command)).toEqual(['phone']);
    expect(rejection('customers', { name: 'Ada', email: ADA, registered_at: '02/01/1997' })).toBe(
      'registered_at: "02/01/1997": a date with slashes is refused, as its order (month/day or day/month) is ambiguous in general; write it as 2019-12-31 (ISO) or 31.12.2019',
    );
    // One whose order is plain is refused too, saying why (it said "could be month/day or day/month").
    expect(rejection('customers', { name: 'Ada', email: ADA, registered_at: '31/12/2019' })).toContain(
      'ambiguous in general; write it as 2019-12-31 (ISO) or 31.12.2019',
    );
    expect(refusedFields(one('customers', { name: 'Ada', email: ADA, registered_at: '1800-01-01' }).command)).toEqual(['occurredAt']);
    expect(refusedFields(one('customers', { name: 'Ada', email: ADA, id: 'not-an-id' }).command)).toEqual(['customerId']);
  });
});

describe('purchase and refund rows', () => {
  it('refuses an id a spreadsheet turned into a number in scientific notation, in every id column a file gives, and takes digits as they are', () => {
    const reason = (column: string, value: string) =>
      `${column}: the spreadsheet turned this id into a number (${value}): format the column as text before saving`;
    for (const value of ['1,23457E+11', '1.23457E+11', '1E+11', '12e-3']) {
      expect(rejection('purchases', { customer_id: CUSTOMER, order_id: value, amount: '5' })).toBe(reason('order_id', value));
      expect(rejection('refunds', { customer_id: CUSTOMER, order_id: 'A-1', refund_id: value, amount: '5' })).toBe(reason('refund_id', value));
      expect(rejection('refunds', { customer_id: CUSTOMER, order_id: value, amount: '5' })).toBe(reason('order_id', value));
      expect(rejection('deals', { customer_id: CUSTOMER, deal_id: value, title: 'T', amount: '1', owner_id: OWNER })).toBe(reason('deal_id', value));
      expect(rejection('feedback', { customer_id: CUSTOMER, feedback_id: value, subject: 'S', body: 'B' })).toBe(reason('feedback_id', value));
      expect(rejection('activities', { customer_id: CUSTOMER, activity_id: value, kind: 'note', subject: 'S' })).toBe(reason('activity_id', value));
      expect(rejection('activities', { deal_id: value, kind: 'note', subject: 'S' })).toBe(reason('deal_id', value));
      expect(rejection('campaigns', { campaign_id: value, name: 'N', channel: 'email', budget: '1' })).toBe(reason('campaign_id', value));
      expect(rejection('costs', { campaign_id: CUSTOMER, cost_id: value, amount: '1' })).toBe(reason('cost_id', value));
      expect(rejection('responses', { campaign_id: value, customer_id: CUSTOMER, response: 'sent' })).toBe(reason('campaign_id', value));
      expect(rejection('purchases', { customer_id: value, order_id: 'A-1', amount: '5' })).toBe(reason('customer_id', value));
    }
    // Digits, and text that only looks like a number, are ids as written (00042 is not 42).
    for (const orderId of ['123456789012', '00042', 'INV-1E+11', '1E+11-B'])
      expect(one('purchases', { customer_id: CUSTOMER, order_id: orderId, amount: '5' }).command).toMatchObject({ orderId });
  });

  it("reads a row without a currency in the run's currency (the base currency), and knows what an earlier importer stored for it as EUR", () => {
    const row = { customer_id: CUSTOMER, order_id: 'A-1', amount: '3' };
    const [purchase] = rowCommands.purchases(row, { currency: 'USD' });
    expect(purchase).toStrictEqual({
      command: { type: 'RecordPurchase', customerId: CUSTOMER, orderId: 'A-1', amount: 3, currency: 'USD' },
      key: keyFor('purchases', `${CUSTOMER}:A-1`),
      formerly: [{ type: 'RecordPurchase', customerId: CUSTOMER, orderId: 'A-1', amount: 3, currency: 'EUR' }],
    });
    // A currency the file gives is the row's, whatever the run's; so is EUR as the run's.
    expect(rowCommands.purchases({ ...row, currency: 'jpy' }, { currency: 'USD' })[0]).not.toHaveProperty('formerly');
    expect(rowCommands.purchases(row, { currency: 'EUR' })[0]).not.toHaveProperty('formerly');
    for (const [kind, fields] of [
      ['refunds', { customer_id: CUSTOMER, order_id: 'A-1', amount: '1', occurred_at: '1997-02-01' }],
      ['costs', { campaign_id: CUSTOMER, amount: '10' }],
      ['campaigns', { name: 'Spring', channel: 'email', budget: '100' }],
    ] as const) {
      const [command] = rowCommands[kind](fields, { currency: 'CHF' });
      expect(command!.command.currency).toBe('CHF');
      expect(command!.formerly?.map((former) => former.currency)).toContain('EUR');
    }
  });
  it('maps a purchase, its currency in upper case, its amount a number, its time in the payload', () => {
    expect(one('purchases', { customer_id: CUSTOMER, order_id: ' A-1 ', amount: '12.50', currency: 'usd', occurred_at: '1997-02-01' })).toStrictEqual({
      command: { type: 'RecordPurchase', customerId: CUSTOMER, orderId: 'A-1', amount: 12.5, currency: 'USD', occurredAt: '1997-02-01T00:00:00.000Z' },
      key: keyFor('purchases', `${CUSTOMER}:A-1`),
    });
    expect(one('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: 3 })).toStrictEqual({
      command: { type: 'RecordPurchase', customerId: CUSTOMER, orderId: 'A-1', amount: 3, currency: 'EUR' },
      key: keyFor('purchases', `${CUSTOMER}:A-1`),
    });
    expect(one('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: '3', currency: ' ' }).command).toStrictEqual({
      type: 'RecordPurchase',
      customerId: CUSTOMER,
      orderId: 'A-1',
      amount: 3,
      currency: 'EUR',
    });
    // A dated file's undated purchase was this month's revenue, for good: refused, naming the column.
    for (const column of ['occurred_at', 'date', 'purchased_at'])
      expect(() => one('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: '3', [column]: ' ' })).toThrow(
        new RegExp(`^${column}: empty in a file that dates its rows`),
      );
    expect(() => one('refunds', { customer_id: CUSTOMER, order_id: 'A-1', amount: '3', reason: 'x', occurred_at: null })).toThrow(
      /^occurred_at: empty in a file that dates its rows/,
    );
  });

  it('finds the customer by id, else by customer_email or email, and names the column when there is none', () => {
    const byEmail = importedCustomerId(ADA);
    const customerOf = (row: Row) => one('purchases', { order_id: 'A-1', amount: '1', ...row }).command.customerId;
    expect(customerOf({ customer_id: CUSTOMER, customer_email: 'x@example.com' })).toBe(CUSTOMER);
    expect(customerOf({ customer_email: ADA })).toBe(byEmail);
    expect(customerOf({ email: ` ${ADA.toUpperCase()} ` })).toBe(byEmail);
    expect(customerOf({ customer_id: ' ', customer_email: ADA, email: 'other@example.com' })).toBe(byEmail);
    expect(customerOf({ customer_id: null, customer_email: '', email: ADA })).toBe(byEmail);
    expect(rejection('purchases', { order_id: 'A-1', amount: '1' })).toBe('customer_id: required (or customer_email)');
    expect(rejection('purchases', { order_id: 'A-1', amount: '1', customer_id: ' ', customer_email: '', email: null })).toMatch(/^customer_id: /);
    for (const kind of ['refunds', 'deals', 'responses', 'feedback'] as const) expect(rejection(kind, { amount: '1' })).toMatch(/^customer_id: required/);
  });

  it('takes the purchase time under each of its names, the first one given winning', () => {
    const timeOf = (row: Row) => one('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: '1', ...row }).command.occurredAt;
    expect(timeOf({ occurred_at: '2001-01-01' })).toBe('2001-01-01T00:00:00.000Z');
    expect(timeOf({ date: '2002-01-01' })).toBe('2002-01-01T00:00:00.000Z');
    expect(timeOf({ purchased_at: '2003-01-01T10:11:12Z' })).toBe('2003-01-01T10:11:12Z');
    expect(timeOf({ occurred_at: ' ', date: '2002-01-01', purchased_at: '2003-01-01' })).toBe('2002-01-01T00:00:00.000Z');
  });

  it("reads the ways files write one instant, leaves the API's times as written, and refuses the rest naming the column", () => {
    const row = (value: string) => ({ customer_id: CUSTOMER, order_id: 'A-1', amount: '1', occurred_at: value });
    const timeOf = (value: string) => one('purchases', row(value)).command.occurredAt;
    // As the API takes them: as written, so a file imported before keeps its idempotency keys.
    for (const value of ['1997-02-01T10:00:00Z', '1997-02-01T10:00:00.123456789Z', '1997-02-01T10:00:00.000+02:00']) expect(timeOf(value)).toBe(value);
    expect(timeOf('1997-02-01')).toBe('1997-02-01T00:00:00.000Z');
    expect(timeOf('1997-2-1')).toBe('1997-02-01T00:00:00.000Z');
    expect(timeOf('1997/02/01')).toBe('1997-02-01T00:00:00.000Z');
    // SQL dumps and spreadsheets: a space for the T, no zone (UTC, as plain dates), a short offset.
    expect(timeOf('1997-02-01 10:00')).toBe('1997-02-01T10:00:00.000Z');
    expect(timeOf('1997-02-01 10:00:05.25')).toBe('1997-02-01T10:00:05.25Z');
    expect(timeOf('1997-02-01T10:00:00')).toBe('1997-02-01T10:00:00.000Z');
    expect(timeOf('1997-02-01 10:00:00+02')).toBe('1997-02-01T10:00:00.000+02:00');
    expect(timeOf('1997-02-01T10:00:00 -0530')).toBe('1997-02-01T10:00:00.000-05:30');
    // Day first wherever dots are written.
    expect(timeOf('01.02.1997')).toBe('1997-02-01T00:00:00.000Z');
    expect(timeOf('1.2.1997 9:30')).toBe('1997-02-01T09:30:00.000Z');
    expect(rejection('purchases', row('02/01/1997'))).toMatch(
      /^occurred_at: "02\/01\/1997": a date with slashes is refused, as its order \(month\/day or day\/month\) is ambiguous in general/,
    );
    for (const value of ['1997-02-30', '31.04.1997', '1997-02-01 24:00', '1997-02-01 10:60'])
      expect(rejection('purchases', row(value))).toBe(`occurred_at: ${JSON.stringify(value)} is not a date in the calendar`);
    for (const value of ['97-02-01', 'x1997-02-01', '1997-02-01x', '1997-02-011', '19970-02-01', '1997-002-01', 'yesterday'])
      expect(rejection('purchases', row(value))).toBe(
        `occurred_at: ${JSON.stringify(value)} is not a time; write 2019-12-31, 2019-12-31 10:00 (UTC) or 2019-12-31T10:00:00+02:00`,
      );
    for (const value of ['1997-02-01 10:00:05.25', '1997-02-01 10:00:00+02', '1.2.1997 9:30'])
      expect(refusedFields(one('purchases', row(value)).command)).toEqual([]);
    // The column named is the one the time was read from.
    expect(rejection('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: '1', date: 'soon' })).toMatch(/^date: "soon" is not a time/);
  });

  it('reads amounts written as plain decimals only, and refuses anything else naming the column and how to write it', () => {
    const amountOf = (value: unknown) => one('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: value }).command.amount;
    expect(amountOf('12')).toBe(12);
    expect(amountOf('-3')).toBe(-3);
    expect(amountOf('12.50')).toBe(12.5);
    expect(amountOf('0.125')).toBe(0.125);
    expect(amountOf('1234567')).toBe(1234567);
    expect(amountOf(7.25)).toBe(7.25);
    for (const text of ['+12', '12.', '.5', '1e3', '0x1A', '12,5', '1 000', '€12.50', 'twelve', '--3', '1.2.3', 'Infinity'])
      expect(rejection('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: text })).toBe(
        `amount: ${JSON.stringify(text)} is not a number; write it as 1234.50 (1234,50 in a file separated by semicolons or tabs), without thousands separators, a currency sign or spaces`,
      );
    // A fifth decimal is counted in the text: read as a number, 899999999999.99995 is 900000000000
    // (imported so until 2026-12-07). Trailing zeros do not count.
    for (const text of ['899999999999.99995', '500000000000.00001', '12.34567', '0.000010'])
      expect(rejection('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: text })).toBe(
        `amount: ${JSON.stringify(text)} is refused: at most 4 decimal places`,
      );
    expect(amountOf('12.500000')).toBe(12.5);
    expect(amountOf('1.00010')).toBe(1.0001);
    // Digits past what a number holds; the text quoted is cut.
    expect(rejection('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: '9'.repeat(400) })).toMatch(/^amount: "9{40}\.\.\." is not a number/);
    // An NDJSON value that is no number is the schema's to refuse, naming the field.
    expect(refusedFields(one('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: true }).command)).toEqual(['amount']);
  });

  it('names the bad field of a purchase', () => {
    expect(refusedFields(one('purchases', { customer_id: CUSTOMER, amount: '1' }).command)).toEqual(['orderId']);
    expect(refusedFields(one('purchases', { customer_id: CUSTOMER, order_id: 'A-1' }).command)).toEqual(['amount']);
    expect(refusedFields(one('purchases', { customer_id: CUSTOMER, order_id: 'A-1', amount: '1', currency: 'euros' }).command)).toEqual(['currency']);
  });

  it('maps a refund with its id, reason and time; the key names the refund', () => {
    const row = { customer_id: CUSTOMER, order_id: 'A-1', refund_id: 'R-1', amount: '5', currency: 'gbp', reason: 'broken', occurred_at: '1997-03-01' };
    expect(one('refunds', row)).toStrictEqual({
      command: {
        type: 'RefundPurchase',
        customerId: CUSTOMER,
        orderId: 'A-1',
        refundId: 'R-1',
        amount: 5,
        currency: 'GBP',
        reason: 'broken',
        occurredAt: '1997-03-01T00:00:00.000Z',
      },
      key: keyFor('refunds', `${CUSTOMER}:A-1:R-1`),
    });
  });

  it('keys a refund without an id by its amount and time, with the defaults of the optional columns', () => {
    expect(one('refunds', { customer_email: ADA, order_id: 'A-1', amount: '5', refund_id: ' ', reason: '' })).toStrictEqual({
      command: { type: 'RefundPurchase', customerId: importedCustomerId(ADA), orderId: 'A-1', amount: 5, currency: 'EUR', reason: null },
      key: keyFor('refunds', `${importedCustomerId(ADA)}:A-1:5@`),
    });
    const timed = one('refunds', { customer_id: CUSTOMER, order_id: 'A-1', amount: '5.5', date: '1997-03-02', refund_reason: 'late' });
    expect(timed.key).toBe(keyFor('refunds', `${CUSTOMER}:A-1:5.5@1997-03-02T00:00:00.000Z`));
    expect(timed.command).toMatchObject({ reason: 'late', occurredAt: '1997-03-02T00:00:00.000Z' });
    expect(one('refunds', { customer_id: CUSTOMER, order_id: 'A-1', amount: '5', refunded_at: '1997-03-03' }).command.occurredAt).toBe(
      '1997-03-03T00:00:00.000Z',
    );
    // The first name of a column wins.
    const first = one('refunds', {
      customer_id: CUSTOMER,
      order_id: 'A-1',
      amount: '5',
      reason: 'a',
      refund_reason: 'b',
      occurred_at: '2001-01-01',
      date: '2002-01-01',
    });
    expect(first.command).toMatchObject({ reason: 'a', occurredAt: '2001-01-01T00:00:00.000Z' });
    expect(rejection('refunds', { customer_id: CUSTOMER, order_id: 'A-1', amount: 'five' })).toMatch(/^amount: "five" is not a number/);
  });
});

describe('deal rows', () => {
  /** A deal row with its required columns; `base` leaves the owner out. */
  const unowned = { customer_id: CUSTOMER, title: 'Engines', amount: '1000', expected_close_date: '1998-01-01' };
  const base = { ...unowned, owner_id: OWNER };

  it('maps an open deal with its optional columns', () => {
    const row = { ...base, deal_id: 'D-1', currency: 'usd', owner_id: 'u-1', stage: 'proposal', probability: '40', opened_at: '1997-05-01', status: 'Open' };
    expect(rowCommands.deals(row)).toStrictEqual([
      {
        command: {
          type: 'OpenDeal',
          dealId: 'D-1',
          customerId: CUSTOMER,
          title: 'Engines',
          amount: 1000,
          currency: 'USD',
          ownerId: 'u-1',
          expectedCloseDate: '1998-01-01',
          stage: 'proposal',
          probabilityOverride: 40,
          occurredAt: '1997-05-01T00:00:00.000Z',
        },
        key: keyFor('deals', 'D-1'),
      },
    ]);
  });

  it('reads a capitalised stage and an expected close date written as a time column may be', () => {
    const command = (row: Record<string, string>) => rowCommands.deals({ ...base, ...row })[0]!.command;
    expect(command({ stage: 'Qualified' })).toMatchObject({ stage: 'qualified' });
    for (const written of ['30.06.2018', '2018/06/30', '2018-06-30 10:00', '2018-06-30'])
      expect(command({ expected_close_date: written })).toMatchObject({ expectedCloseDate: '2018-06-30' });
    expect(() => command({ expected_close_date: '31.06.2018' })).toThrow('expected_close_date: "31.06.2018" is not a date in the calendar');
    expect(() => command({ expected_close_date: '06/30/2018' })).toThrow(
      /a date with slashes is refused, as its order \(month\/day or day\/month\) is ambiguous/,
    );
    // Anything else is left to the command's schema, which names the field.
    expect(command({ expected_close_date: 'soon' })).toMatchObject({ expectedCloseDate: 'soon' });
  });

  it('fills the defaults when the optional columns are absent or blank, and keys the deal by customer, title and opening', () => {
    const expected = [
      {
        command: {
          type: 'OpenDeal',
          customerId: CUSTOMER,
          title: 'Engines',
          amount: 1000,
          currency: 'EUR',
          ownerId: OWNER,
          expectedCloseDate: '1998-01-01',
        },
        key: keyFor('deals', `${CUSTOMER}:Engines:`),
      },
    ];
    expect(rowCommands.deals(base)).toStrictEqual(expected);
    expect(rowCommands.deals({ ...base, deal_id: ' ', id: '', currency: ' ', owner: ' ', stage: ' ', probability: null, status: ' ' })).toStrictEqual(expected);
    // Undated in a file that dates its deals: refused (a deal won years ago was won today).
    expect(() => rowCommands.deals({ ...base, opened_at: '' })).toThrow(/^opened_at: empty in a file that dates its rows/);
    expect(() => rowCommands.deals({ ...base, opened_at: '1997-05-01', status: 'won', closed_at: ' ' })).toThrow(
      /^closed_at: empty in a file that dates its rows/,
    );
    // A closed deal without an opening opens when it closes, as before.
    expect(rowCommands.deals({ ...base, opened_at: '', status: 'lost', closed_at: '1997-06-01' })[0]!.command).toMatchObject({
      occurredAt: '1997-06-01T00:00:00.000Z',
    });
    // Keyed by the instant, however written; importers before keyed it by the text (formerKeys).
    for (const opened_at of ['1997-05-01', '01.05.1997', '1997-05-01T02:00:00+02:00'])
      expect(rowCommands.deals({ ...base, opened_at })[0]!.key).toBe(keyFor('deals', `${CUSTOMER}:Engines:1997-05-01T00:00:00.000Z`));
    expect(rowCommands.deals({ ...base, opened_at: '01.05.1997' }, { formerKeys: 'written' })[0]!.key).toBe(keyFor('deals', `${CUSTOMER}:Engines:01.05.1997`));
    expect(rowCommands.deals({ ...base, opened_at: '01.05.1997' }, { formerKeys: 'dated' })[0]!.key).toBe(keyFor('deals', `${CUSTOMER}:Engines:1997-05-01`));
    expect(rowCommands.deals({ customer_id: CUSTOMER, owner_id: OWNER })[0]!.key).toBe(keyFor('deals', `${CUSTOMER}::`));
  });

  it('refuses a deal without an owner, naming owner_id and how to give a default, and makes none up', () => {
    const reason =
      'owner_id: required: a deal has an owner (a user id); fill the column, or give the import a default owner for the rows without one (--default-owner <userId>)';
    for (const row of [unowned, { ...unowned, owner_id: ' ', owner: '' }, { ...unowned, owner_id: null }])
      expect(() => rowCommands.deals(row, { defaultOwnerHint: '--default-owner <userId>' })).toThrow(new RowRejected(reason));
    // Without a hint the reason still names the column.
    expect(rejection('deals', unowned)).toMatch(/^owner_id: required: a deal has an owner/);
    // A won deal without an owner sends neither command.
    expect(rejection('deals', { ...unowned, status: 'won' })).toMatch(/^owner_id: required/);
  });

  it("gives the run's default owner to a deal whose row has none; the file's owner wins over it", () => {
    const DEFAULT = '33333333-3333-4333-8333-333333333333';
    const [open] = rowCommands.deals(unowned, { defaultOwner: DEFAULT });
    expect(open).toStrictEqual({
      command: { type: 'OpenDeal', customerId: CUSTOMER, title: 'Engines', amount: 1000, currency: 'EUR', ownerId: DEFAULT, expectedCloseDate: '1998-01-01' },
      key: keyFor('deals', `${CUSTOMER}:Engines:`),
    });
    // The key is the row's, whatever the owner: a run with another default owner addresses the same deal.
    expect(rowCommands.deals({ ...unowned, owner_id: ' ' }, { defaultOwner: DEFAULT })[0]!.command.ownerId).toBe(DEFAULT);
    expect(rowCommands.deals(base, { defaultOwner: DEFAULT })[0]!.command.ownerId).toBe(OWNER);
    expect(rowCommands.deals({ ...unowned, owner: 'u-2' }, { defaultOwner: DEFAULT })[0]!.command.ownerId).toBe('u-2');
    expect(takesDefaultOwner('deals', unowned, { defaultOwner: DEFAULT })).toBe(true);
    expect(takesDefaultOwner('deals', base, { defaultOwner: DEFAULT })).toBe(false);
    expect(takesDefaultOwner('deals', unowned, {})).toBe(false);
  });

  it('takes the other names of the deal id, the owner and the opening time', () => {
    const [open] = rowCommands.deals({ ...unowned, id: 'D-2', owner: 'u-2', created_at: '1997-06-01' });
    expect(open).toMatchObject({ command: { dealId: 'D-2', ownerId: 'u-2', occurredAt: '1997-06-01T00:00:00.000Z' }, key: keyFor('deals', 'D-2') });
    const [first] = rowCommands.deals({
      ...unowned,
      deal_id: 'D-1',
      id: 'D-2',
      owner_id: 'u-1',
      owner: 'u-2',
      opened_at: '1997-05-01',
      created_at: '1997-06-01',
    });
    expect(first!.command).toMatchObject({ dealId: 'D-1', ownerId: 'u-1', occurredAt: '1997-05-01T00:00:00.000Z' });
  });

  it('keeps a probability of 0', () => {
    expect(rowCommands.deals({ ...base, probability: '0' })[0]!.command.probabilityOverride).toBe(0);
    expect(rejection('deals', { ...base, probability: 'high' })).toMatch(/^probability: "high" is not a number/);
  });

  it("refuses a spreadsheet's percentage as a probability, saying the fraction to write", () => {
    expect(rejection('deals', { ...base, probability: '25%' })).toBe(
      'probability: "25%" is a percentage; write a probability as a fraction between 0 and 1 (0.25)',
    );
    expect(rejection('deals', { ...base, probability_override: '12,5 %' })).toMatch(/^probability_override: "12,5 %" is a percentage; .* \(0\.125\)$/);
    // An amount keeps the advice about numbers.
    expect(rejection('deals', { ...base, amount: '25%' })).toMatch(/^amount: "25%" is not a number/);
  });

  it('records a won deal as a second command on the deal the first creates, at its closing time', () => {
    const [open, won] = rowCommands.deals({ ...base, status: 'WON', closed_at: '1997-12-01' });
    expect(won).toStrictEqual({
      command: { type: 'WinDeal', dealId: createdIdFor('OpenDeal', open!.key), occurredAt: '1997-12-01T00:00:00.000Z' },
      key: `${open!.key}:won`,
      // No reason given: none recorded (the import's own reason used to show as why the deal was won).
      reason: null,
    });
    const withId = rowCommands.deals({ ...base, deal_id: 'D-1', status: 'won', won_reason: 'Best offer' });
    expect(withId[1]).toStrictEqual({ command: { type: 'WinDeal', dealId: 'D-1' }, key: `${keyFor('deals', 'D-1')}:won`, reason: 'Best offer' });
  });

  it('records a lost deal with its reason under either name, "lost" when none', () => {
    const [open, lost] = rowCommands.deals({ ...base, deal_id: 'D-1', status: 'lost', closed_at: '1997-12-02', lost_reason: 'price', reason: 'other' });
    expect(lost).toStrictEqual({
      command: { type: 'LoseDeal', dealId: 'D-1', reason: 'price', occurredAt: '1997-12-02T00:00:00.000Z' },
      key: `${open!.key}:lost`,
    });
    expect(rowCommands.deals({ ...base, status: 'Lost', reason: 'timing' })[1]!.command).toMatchObject({ reason: 'timing' });
    const [first, bare] = rowCommands.deals({ ...base, status: 'lost', lost_reason: ' ' });
    expect(bare!.command).toStrictEqual({ type: 'LoseDeal', dealId: createdIdFor('OpenDeal', first!.key), reason: 'lost' });
  });

  it('reads an exported deal: a won or lost stage is its outcome, and its override, not its stage probability', () => {
    const exported = { ...base, deal_id: 'D-1', stage: 'won', status: 'won', probability: '0.9', probability_override: '', closed_at: '1997-12-01' };
    const [open, won] = rowCommands.deals(exported);
    expect(open!.command).not.toHaveProperty('stage');
    expect(open!.command).not.toHaveProperty('probabilityOverride');
    expect(won).toStrictEqual({
      command: { type: 'WinDeal', dealId: 'D-1', occurredAt: '1997-12-01T00:00:00.000Z' },
      key: `${keyFor('deals', 'D-1')}:won`,
      reason: null,
    });
    // The export's `wonReason` is read back as the reason.
    expect(rowCommands.deals({ ...exported, won_reason: 'Best offer' })[1]).toMatchObject({ reason: 'Best offer' });
    expect(rowCommands.deals({ ...exported, stage: 'Lost', status: '', lost_reason: 'price' }).map((c) => c.command.type)).toEqual(['OpenDeal', 'LoseDeal']);
    expect(rowCommands.deals({ ...exported, stage: 'proposal', status: 'open', probability_override: '0.35' })).toStrictEqual([
      {
        command: expect.objectContaining({ stage: 'proposal', probabilityOverride: 0.35 }),
        key: keyFor('deals', 'D-1'),
      },
    ]);
    expect(rejection('deals', { ...exported, stage: 'won', status: 'lost' })).toBe('stage: "won" but status "lost"');
  });

  it("reads an open deal's time in its stage, and keeps the same row without it as the deal imported before", () => {
    const exported = { ...base, deal_id: 'D-1', stage: 'proposal', status: 'open', opened_at: '1997-03-01', stage_entered_at: '1997-04-15T10:00:00Z' };
    const [open] = rowCommands.deals(exported);
    expect(open!.command).toMatchObject({ stage: 'proposal', occurredAt: '1997-03-01T00:00:00.000Z', stageEnteredAt: '1997-04-15T10:00:00Z' });
    // The same deal as the row read before this column was: its file, or its export, imported again adds nothing.
    const { stageEnteredAt: _, ...before } = open!.command;
    expect(open!.formerly).toStrictEqual([before]);
    // A stage entered at the opening is the opening: nothing to add, and no former spelling.
    const [atOpening] = rowCommands.deals({ ...exported, stage_entered_at: '1997-03-01' });
    expect(atOpening!.command).not.toHaveProperty('stageEnteredAt');
    expect(atOpening).not.toHaveProperty('formerly');
    // A closed deal entered its stage when it closed: the closing command's time says so.
    const [wonOpen] = rowCommands.deals({ ...exported, stage: 'won', status: 'won', closed_at: '1997-05-01', stage_entered_at: '1997-05-01' });
    expect(wonOpen!.command).not.toHaveProperty('stageEnteredAt');
    expect(rejection('deals', { ...exported, stage_entered_at: 'soon' })).toMatch(/^stage_entered_at: "soon"/);
  });

  it('refuses a status it does not know, naming the column', () => {
    expect(rejection('deals', { ...base, status: 'Pending' })).toBe('status: expected open, won or lost, got "pending"');
  });

  it('names the bad fields of a deal', () => {
    expect(refusedFields(rowCommands.deals({ customer_id: CUSTOMER, amount: '1', expected_close_date: '1998-01-01', owner_id: OWNER })[0]!.command)).toEqual([
      'title',
    ]);
    expect(rejection('deals', { ...base, amount: 'lots' })).toMatch(/^amount: "lots" is not a number/);
  });
});

describe('rows of an export of records imported without ids', () => {
  it('reads an id the import derived from the row as no id of the file: the row keeps the key it was imported by', () => {
    const rows: [ImportKind, Row, CommandType][] = [
      ['deals', { customer_id: CUSTOMER, title: 'Engines', amount: '1', owner_id: OWNER, opened_at: '1997-05-01' }, 'OpenDeal'],
      ['feedback', { customer_id: CUSTOMER, kind: 'complaint', subject: 'Late', body: 'Where', submitted_at: '1997-05-01T10:00:00Z' }, 'SubmitFeedback'],
      ['activities', { customer_id: CUSTOMER, kind: 'note', subject: 'Call back', occurred_at: '1997-05-01' }, 'LogActivity'],
      ['campaigns', { name: 'Spring', channel: 'email', budget: '10', status: 'draft' }, 'CreateCampaign'],
    ];
    const idColumn = { deals: 'deal_id', feedback: 'feedback_id', activities: 'activity_id', campaigns: 'campaign_id' } as Record<ImportKind, string>;
    for (const [kind, row, type] of rows) {
      const [imported] = rowCommands[kind](row);
      const derivedId = createdIdFor(type, imported!.key);
      // Exported with the id it got, spelt as an export writes it (the opening in UTC): the same commands.
      expect(rowCommands[kind]({ ...row, [idColumn[kind]]: derivedId })).toStrictEqual(rowCommands[kind](row));
      // Under the id column's other name too; another id is the file's own.
      expect(rowCommands[kind]({ ...row, id: derivedId })).toStrictEqual(rowCommands[kind](row));
      const other = '33333333-3333-4333-8333-333333333333';
      expect(rowCommands[kind]({ ...row, [idColumn[kind]]: other })[0]!.key).toBe(keyFor(kind, other));
    }
  });

  it("reads an open deal's first stage, which its export writes for a deal opened without a stage, as no stage, and knows the deal stored with it", () => {
    const row = { customer_id: CUSTOMER, title: 'Engines', amount: '1', owner_id: OWNER, opened_at: '1997-05-01' };
    const [open] = rowCommands.deals({ ...row, stage: 'Lead' });
    expect(open!.command).toStrictEqual(rowCommands.deals(row)[0]!.command);
    expect(open!.formerly).toStrictEqual([{ ...open!.command, stage: 'lead' }]);
    expect(rowCommands.deals({ ...row, stage: 'qualified' })[0]!.command).toMatchObject({ stage: 'qualified' });
  });
});

describe('deal rows closed before they opened', () => {
  it('are refused whole before any command is built (the deal was stored open and the row reported refused)', () => {
    const row = { customer_id: CUSTOMER, title: 'Fleet', amount: '100', owner_id: 'sam', expected_close_date: '2024-06-30', status: 'won' };
    expect(() => rowCommands.deals({ ...row, opened_at: '2024-05-01', closed_at: '2024-04-01' })).toThrow(
      'closed_at: before opened_at (2024-04-01T00:00:00.000Z < 2024-05-01T00:00:00.000Z)',
    );
    expect(rowCommands.deals({ ...row, opened_at: '2024-04-01', closed_at: '2024-05-01' })).toHaveLength(2);
  });
});

describe('activity rows', () => {
  const base = { customer_id: CUSTOMER, kind: 'Call', subject: 'Renewal', occurred_at: '1997-03-01 10:00' };

  it('logs an activity on its customer at its business time, keyed by customer, kind, subject and time without an id', () => {
    expect(rowCommands.activities({ ...base, body: 'Wants the blue one', assignee_id: OWNER })).toStrictEqual([
      {
        command: {
          type: 'LogActivity',
          customerId: CUSTOMER,
          kind: 'call',
          subject: 'Renewal',
          body: 'Wants the blue one',
          assigneeId: OWNER,
          occurredAt: '1997-03-01T10:00:00.000Z',
        },
        key: keyFor('activities', `${CUSTOMER}:call:Renewal:1997-03-01T10:00:00.000Z`),
      },
    ]);
  });

  it("logs one on a deal by the deal alone (the deal's customer is its own), and completes a task done at its time", () => {
    const dealId = '44444444-4444-4444-8444-444444444444';
    const [log, completed] = rowCommands.activities({
      ...base,
      activity_id: 'A-1',
      deal_id: dealId,
      kind: 'task',
      due_at: '1997-03-05',
      completed_at: '1997-03-04T12:00:00Z',
    });
    expect(log!.command).toStrictEqual({
      type: 'LogActivity',
      activityId: 'A-1',
      dealId,
      kind: 'task',
      subject: 'Renewal',
      dueAt: '1997-03-05T00:00:00.000Z',
      occurredAt: '1997-03-01T10:00:00.000Z',
    });
    expect(completed).toStrictEqual({
      command: { type: 'CompleteActivity', activityId: 'A-1', occurredAt: '1997-03-04T12:00:00Z' },
      key: `${keyFor('activities', 'A-1')}:completed`,
    });
    // Without an id, the completion addresses the id the first command creates.
    const [first, second] = rowCommands.activities({ ...base, kind: 'task', completed_at: '1997-03-04' });
    expect(second!.command).toMatchObject({ activityId: createdIdFor('LogActivity', first!.key) });
  });

  it('logs a completed task whose file gives no time of its own when it was completed, keeping the former command as its fingerprint', () => {
    const { occurred_at: _none, ...untimed } = base;
    const [log, completed] = rowCommands.activities({ ...untimed, kind: 'task', completed_at: '1997-03-04T12:00:00Z' });
    expect(log!.command).toMatchObject({ occurredAt: '1997-03-04T12:00:00Z' });
    expect(log!.formerly).toHaveLength(1);
    expect(log!.formerly![0]).not.toHaveProperty('occurredAt');
    expect(completed!.command).toMatchObject({ occurredAt: '1997-03-04T12:00:00Z' });
    // With its own time, no former command.
    expect(rowCommands.activities({ ...base, kind: 'task', completed_at: '1997-03-04T12:00:00Z' })[0]!.formerly).toBeUndefined();
    // An empty cell of a dated file: the completion dates it alike; with neither, the row is refused.
    expect(rowCommands.activities({ ...base, occurred_at: ' ', kind: 'task', completed_at: '1997-03-04' })[0]!.command).toMatchObject({
      occurredAt: '1997-03-04T00:00:00.000Z',
    });
    expect(() => rowCommands.activities({ ...base, occurred_at: ' ', kind: 'note' })).toThrow(/^occurred_at: empty in a file that dates its rows/);
  });

  it('refuses a completion the activity cannot take before any command is built: of a note, call or meeting, or before it was logged', () => {
    expect(rejection('activities', { ...base, completed_at: '1997-03-04' })).toBe('completed_at: only a task is completed, not a call; leave it empty');
    // A kind the API does not know is refused as such, completed or not.
    expect(refusedFields(rowCommands.activities({ ...base, kind: 'fax', completed_at: '1997-03-04' })[0]!.command)).toEqual(['kind']);
    expect(rejection('activities', { ...base, kind: 'task', completed_at: '1997-02-28' })).toBe(
      'completed_at: before occurred_at (1997-02-28T00:00:00.000Z < 1997-03-01T10:00:00.000Z)',
    );
  });

  it('names the bad fields of an activity', () => {
    expect(refusedFields(rowCommands.activities({ ...base, kind: 'fax' })[0]!.command)).toEqual(['kind']);
    expect(refusedFields(rowCommands.activities({ ...base, kind: 'note', due_at: '1997-03-05' })[0]!.command)).toEqual(['dueAt']);
    expect(rejection('activities', { kind: 'note', subject: 'x' })).toBe('customer_id: required (or customer_email)');
  });
});

describe('campaign rows', () => {
  const base = { name: 'Spring', channel: 'email', budget: '500' };

  it('creates and launches a campaign by default, with its schedule and times', () => {
    const commands = rowCommands.campaigns({
      ...base,
      campaign_id: 'C-1',
      currency: 'chf',
      starts_at: '1997-04-01',
      ends_at: '1997-05-01',
      created_at: '1997-03-01',
    });
    const key = keyFor('campaigns', 'C-1');
    expect(commands).toStrictEqual([
      {
        command: {
          type: 'CreateCampaign',
          campaignId: 'C-1',
          name: 'Spring',
          channel: 'email',
          budget: 500,
          currency: 'CHF',
          schedule: { startsAt: '1997-04-01T00:00:00.000Z', endsAt: '1997-05-01T00:00:00.000Z' },
          occurredAt: '1997-03-01T00:00:00.000Z',
        },
        key,
      },
      { command: { type: 'LaunchCampaign', campaignId: 'C-1', occurredAt: '1997-04-01T00:00:00.000Z' }, key: `${key}:launched` },
    ]);
  });

  it('has no schedule without a start, an open end without an end, and keys by name without an id', () => {
    const key = keyFor('campaigns', 'Spring');
    const target = { campaignId: createdIdFor('CreateCampaign', key) };
    expect(rowCommands.campaigns({ ...base, campaign_id: ' ', currency: '', starts_at: ' ', ends_at: '1997-05-01', created_at: '' })).toStrictEqual([
      { command: { type: 'CreateCampaign', name: 'Spring', channel: 'email', budget: 500, currency: 'EUR' }, key },
      { command: { type: 'LaunchCampaign', ...target }, key: `${key}:launched` },
    ]);
    expect(rowCommands.campaigns({ ...base, starts_at: '1997-04-01' })[0]!.command.schedule).toStrictEqual({
      startsAt: '1997-04-01T00:00:00.000Z',
      endsAt: null,
    });
    expect(rowCommands.campaigns({ ...base, id: 'C-2' })[0]).toMatchObject({ command: { campaignId: 'C-2' }, key: keyFor('campaigns', 'C-2') });
    expect(rowCommands.campaigns({ ...base, campaign_id: 'C-1', id: 'C-2' })[0]!.command.campaignId).toBe('C-1');
    expect(rowCommands.campaigns({ channel: 'email', budget: '1' })[0]!.key).toBe(keyFor('campaigns', ''));
  });

  it('leaves a draft campaign unlaunched and completes a completed one at its end', () => {
    const draft = rowCommands.campaigns({ ...base, status: 'Draft' });
    expect(draft.map((c) => c.command.type)).toEqual(['CreateCampaign']);
    const [create, launch, complete] = rowCommands.campaigns({ ...base, status: 'COMPLETED', starts_at: '1997-04-01', ends_at: '1997-05-01' });
    const target = { campaignId: createdIdFor('CreateCampaign', create!.key) };
    expect(launch).toStrictEqual({ command: { type: 'LaunchCampaign', ...target, occurredAt: '1997-04-01T00:00:00.000Z' }, key: `${create!.key}:launched` });
    expect(complete).toStrictEqual({
      command: { type: 'CompleteCampaign', ...target, occurredAt: '1997-05-01T00:00:00.000Z' },
      key: `${create!.key}:completed`,
    });
    expect(rowCommands.campaigns({ ...base, status: 'active' }).map((c) => c.command.type)).toEqual(['CreateCampaign', 'LaunchCampaign']);
    expect(rowCommands.campaigns({ ...base, status: ' ' }).map((c) => c.command.type)).toEqual(['CreateCampaign', 'LaunchCampaign']);
    expect(rejection('campaigns', { ...base, status: 'running' })).toBe(
      'status: expected draft, scheduled, active, paused, completed, cancelled, got "running"',
    );
  });

  it('takes every status a campaigns export writes, each step at its own time where the row has it', () => {
    const times = { starts_at: '1997-04-01', ends_at: '1997-05-01', created_at: '1997-03-01' };
    const steps = (row: Record<string, string>) =>
      rowCommands.campaigns({ ...base, campaign_id: 'C-9', ...times, ...row }).map((c) => [c.command.type, c.command.occurredAt ?? c.occurredAt]);
    expect(steps({ status: 'scheduled' })).toEqual([
      ['CreateCampaign', '1997-03-01T00:00:00.000Z'],
      ['ScheduleCampaign', '1997-03-01T00:00:00.000Z'],
    ]);
    expect(rowCommands.campaigns({ ...base, campaign_id: 'C-9', ...times, status: 'scheduled' })[1]!.command).toMatchObject({
      startsAt: '1997-04-01T00:00:00.000Z',
      endsAt: '1997-05-01T00:00:00.000Z',
    });
    expect(rejection('campaigns', { ...base, status: 'scheduled' })).toBe('starts_at: a scheduled campaign needs its start');
    // A pause has no time in an export: recorded when imported (no business time given).
    expect(steps({ status: 'paused', launched_at: '1997-04-02' })).toEqual([
      ['CreateCampaign', '1997-03-01T00:00:00.000Z'],
      ['LaunchCampaign', '1997-04-02T00:00:00.000Z'],
      ['PauseCampaign', undefined],
    ]);
    expect(steps({ status: 'completed', launched_at: '1997-04-02', completed_at: '1997-04-20' }).slice(1)).toEqual([
      ['LaunchCampaign', '1997-04-02T00:00:00.000Z'],
      ['CompleteCampaign', '1997-04-20T00:00:00.000Z'],
    ]);
    // Cancelled before it ran, or after.
    expect(steps({ status: 'cancelled', cancelled_at: '1997-03-15' })).toEqual([
      ['CreateCampaign', '1997-03-01T00:00:00.000Z'],
      ['CancelCampaign', '1997-03-15T00:00:00.000Z'],
    ]);
    expect(steps({ status: 'Cancelled', launched_at: '1997-04-01', cancelled_at: '1997-04-10' }).map(([type]) => type)).toEqual([
      'CreateCampaign',
      'LaunchCampaign',
      'CancelCampaign',
    ]);
    // Each step keyed apart, and the same on every import of the file (its idempotency).
    const key = keyFor('campaigns', 'C-9');
    const keys = (row: Record<string, string>) => rowCommands.campaigns({ ...base, campaign_id: 'C-9', ...times, ...row }).map((c) => c.key);
    expect(keys({ status: 'scheduled' })).toEqual([key, `${key}:scheduled`]);
    expect(keys({ status: 'paused' })).toEqual([key, `${key}:launched`, `${key}:paused`]);
    expect(keys({ status: 'cancelled', launched_at: '1997-04-01' })).toEqual([key, `${key}:launched`, `${key}:cancelled`]);
  });

  it('reads the target segment as a JSON object, from its text or as NDJSON gives it', () => {
    const segment = { minRevenue: 100, tags: ['vip'] };
    expect(rowCommands.campaigns({ ...base, target_segment: JSON.stringify(segment) })[0]!.command.targetSegment).toEqual(segment);
    expect(rowCommands.campaigns({ ...base, target_segment: segment })[0]!.command.targetSegment).toEqual(segment);
    expect(rowCommands.campaigns({ ...base, target_segment: ' ' })[0]!.command).not.toHaveProperty('targetSegment');
    for (const bad of ['vip', '[1]', 'null', [1], ['{}']])
      expect(rejection('campaigns', { ...base, target_segment: bad })).toBe('target_segment: expected a JSON object such as {"minRevenue":100}');
  });

  it('refuses a target segment nested deeper than MAX_JSON_DEPTH, as text or as NDJSON gives it', () => {
    // A refusal of the schema used to print the value with JSON.stringify, which overflowed the stack.
    const deep = `{"tags":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const nested = `target_segment: nested deeper than ${MAX_JSON_DEPTH} levels`;
    expect(rejection('campaigns', { ...base, target_segment: deep })).toBe(nested);
    expect(rejection('campaigns', { ...base, target_segment: JSON.parse(deep) as unknown })).toBe(nested);
  });

  it('dates a step the file gives no time for at the latest when the next one happened, and refuses steps out of order whole', () => {
    const [create, launch, complete] = rowCommands.campaigns({ ...base, campaign_id: 'C-2', status: 'completed', completed_at: '1997-06-01' });
    for (const step of [create, launch, complete]) expect(step!.command.occurredAt).toBe('1997-06-01T00:00:00.000Z');
    // Imported before these defaults, it was created and launched at its import: the same campaign.
    expect(create!.formerly?.[0]).not.toHaveProperty('occurredAt');
    expect(launch!.formerly?.[0]).not.toHaveProperty('occurredAt');
    const [created, launched] = rowCommands.campaigns({ ...base, campaign_id: 'C-3', launched_at: '1997-04-01' });
    expect(created!.command.occurredAt).toBe('1997-04-01T00:00:00.000Z');
    expect(launched!.formerly).toBeUndefined();
    expect(rejection('campaigns', { ...base, created_at: '2020-06-01', launched_at: '2020-01-01' })).toBe(
      'launched_at: before created_at (2020-01-01T00:00:00.000Z < 2020-06-01T00:00:00.000Z)',
    );
    expect(rejection('campaigns', { ...base, status: 'completed', launched_at: '2020-07-01', completed_at: '2019-01-01' })).toMatch(
      /^completed_at: before launched_at/,
    );
    expect(rejection('campaigns', { ...base, status: 'cancelled', created_at: '2021-01-01', cancelled_at: '2000-01-01' })).toMatch(
      /^cancelled_at: before created_at/,
    );
  });

  it('names the bad fields of a campaign', () => {
    expect(rejection('campaigns', { ...base, budget: 'a lot' })).toMatch(/^budget: "a lot" is not a number/);
    expect(refusedFields(rowCommands.campaigns({ ...base, budget: '-5' })[0]!.command)).toEqual(['budget']);
    expect(rejection('campaigns', { ...base, starts_at: 'spring' })).toMatch(/^starts_at: "spring" is not a time/);
    // An active campaign without created_at was created when it started (its launch): 1800 is refused there too.
    expect(refusedFields(rowCommands.campaigns({ ...base, starts_at: '1800-01-01' })[0]!.command)).toEqual(['schedule.startsAt', 'occurredAt']);
  });
});

describe('campaign response rows', () => {
  const CAMPAIGN = '22222222-2222-4222-8222-222222222222';

  it('maps a response with its revenue and currency', () => {
    expect(
      one('responses', { campaign_id: CAMPAIGN, customer_id: CUSTOMER, response: 'converted', revenue: '99.90', currency: 'usd', occurred_at: '1997-04-10' }),
    ).toStrictEqual({
      command: {
        type: 'RecordCampaignResponse',
        campaignId: CAMPAIGN,
        customerId: CUSTOMER,
        kind: 'converted',
        revenue: 99.9,
        currency: 'USD',
        occurredAt: '1997-04-10T00:00:00.000Z',
      },
      key: keyFor('responses', `${CAMPAIGN}:${CUSTOMER}:converted`),
    });
  });

  it('leaves out revenue and currency when absent or blank, and takes the other names of the kind and the time', () => {
    const expected = {
      command: {
        type: 'RecordCampaignResponse',
        campaignId: CAMPAIGN,
        customerId: importedCustomerId(ADA),
        kind: 'opened',
        occurredAt: '1997-04-11T00:00:00.000Z',
      },
      key: keyFor('responses', `${CAMPAIGN}:${importedCustomerId(ADA)}:opened`),
    };
    expect(one('responses', { campaign_id: CAMPAIGN, customer_email: ADA, kind: 'opened', date: '1997-04-11' })).toStrictEqual(expected);
    // A word from a list in any case, as a spreadsheet capitalises it (`Opened` was refused).
    expect(one('responses', { campaign_id: CAMPAIGN, customer_email: ADA, kind: 'Opened', date: '1997-04-11' })).toStrictEqual(expected);
    expect(
      one('responses', { campaign_id: CAMPAIGN, customer_email: ADA, response: ' ', kind: 'opened', revenue: ' ', currency: '', date: '1997-04-11' }),
    ).toStrictEqual(expected);
    expect(one('responses', { campaign_id: CAMPAIGN, customer_id: CUSTOMER, response: 'sent', kind: 'opened', revenue: '0' }).command).toStrictEqual({
      type: 'RecordCampaignResponse',
      campaignId: CAMPAIGN,
      customerId: CUSTOMER,
      kind: 'sent',
      revenue: 0,
    });
    expect(
      one('responses', { campaign_id: CAMPAIGN, customer_id: CUSTOMER, response: 'sent', occurred_at: '2001-01-01', date: '2002-01-01' }).command.occurredAt,
    ).toBe('2001-01-01T00:00:00.000Z');
  });

  it('names the bad fields of a response', () => {
    expect(refusedFields(one('responses', { campaign_id: CAMPAIGN, customer_id: CUSTOMER, response: 'liked' }).command)).toEqual(['kind']);
    expect(rejection('responses', { campaign_id: CAMPAIGN, customer_id: CUSTOMER, response: 'converted', revenue: 'much' })).toMatch(
      /^revenue: "much" is not a number/,
    );
    expect(refusedFields(one('responses', { campaign_id: CAMPAIGN, customer_id: CUSTOMER, response: 'converted', revenue: '-1' }).command)).toEqual([
      'revenue',
    ]);
  });
});

describe('campaign cost rows', () => {
  const CAMPAIGN = '33333333-3333-4333-8333-333333333333';

  it('maps a cost with its invoice number, currency and description, at its business time, taken even beyond the budget', () => {
    expect(
      one('costs', { campaign_id: CAMPAIGN, cost_id: 'INV-7', amount: '1200.50', currency: 'usd', description: 'Print run', occurred_at: '1997-03-01' }),
    ).toStrictEqual({
      command: {
        type: 'RecordCampaignCost',
        campaignId: CAMPAIGN,
        costId: 'INV-7',
        amount: 1200.5,
        currency: 'USD',
        description: 'Print run',
        allowOverBudget: true,
        occurredAt: '1997-03-01T00:00:00.000Z',
      },
      key: keyFor('costs', `${CAMPAIGN}:INV-7`),
    });
  });

  it('knows a cost without an invoice number by its amount, time and description, and defaults the currency', () => {
    const row = { campaign_id: CAMPAIGN, amount: '80', date: '1997-03-02', description: '' };
    expect(one('costs', row)).toStrictEqual({
      command: {
        type: 'RecordCampaignCost',
        campaignId: CAMPAIGN,
        amount: 80,
        currency: 'EUR',
        description: null,
        allowOverBudget: true,
        occurredAt: '1997-03-02T00:00:00.000Z',
      },
      key: keyFor('costs', `${CAMPAIGN}:80:1997-03-02T00:00:00.000Z:`),
    });
    expect(one('costs', { campaign_id: CAMPAIGN, amount: '80' }).key).toBe(keyFor('costs', `${CAMPAIGN}:80::`));
    expect(one('costs', { ...row, description: 'Ads' }).key).not.toBe(one('costs', row).key);
    expect(one('costs', { ...row, amount: '81' }).key).not.toBe(one('costs', row).key);
  });

  it('holds a cost to the budget where the file says allow_over_budget false', () => {
    const row = { campaign_id: CAMPAIGN, cost_id: 'INV-8', amount: '10' };
    expect(one('costs', { ...row, allow_over_budget: 'no' }).command.allowOverBudget).toBe(false);
    expect(one('costs', { ...row, allow_over_budget: 'TRUE' }).command.allowOverBudget).toBe(true);
    expect(one('costs', { ...row, allow_over_budget: false }).command.allowOverBudget).toBe(false);
    expect(one('costs', { ...row, allow_over_budget: ' ' }).command.allowOverBudget).toBe(true);
    expect(one('costs', { ...row, allow_over_budget: 'FALSCH' }).command.allowOverBudget).toBe(false);
    expect(one('costs', { ...row, allow_over_budget: 'vrai' }).command.allowOverBudget).toBe(true);
    expect(rejection('costs', { ...row, allow_over_budget: 'maybe' })).toMatch(/^allow_over_budget: "maybe" is not a yes or no; write true, yes/);
  });

  it('names the bad fields of a cost', () => {
    expect(rejection('costs', { campaign_id: CAMPAIGN, amount: '1.200,50' })).toMatch(/^amount: "1.200,50" is not a number/);
    expect(refusedFields(one('costs', { campaign_id: CAMPAIGN, amount: '10', currency: 'euro' }).command)).toEqual(['currency']);
    expect(refusedFields(one('costs', { campaign_id: 'not-an-id', amount: '10' }).command)).toEqual(['campaignId']);
    expect(refusedFields(one('costs', { campaign_id: CAMPAIGN, amount: '10', cost_id: 'x'.repeat(101) }).command)).toEqual(['costId']);
  });
});

describe('feedback rows', () => {
  const base = { customer_id: CUSTOMER, kind: 'complaint', subject: 'Late', body: 'Where is my order?' };

  it('submits an item whose file gives no submission time at its first step, keeping the commands earlier versions built as its fingerprints', () => {
    // Submitted at the import's own time, its response dated from the file came before it and was refused, the item stored open.
    const row = { ...base, first_responded_at: '2021-03-02', resolved_at: '2021-03-05', resolution_due_at: '2021-03-10' };
    const [submit, ...rest] = rowCommands.feedback(row);
    expect(submit!.command).toMatchObject({ occurredAt: '2021-03-02T00:00:00.000Z', resolutionDueAt: '2021-03-10T00:00:00.000Z' });
    // Before the deadlines were read, and before the submission defaulted to the first step: both without a time.
    expect(submit!.formerly).toHaveLength(2);
    for (const former of submit!.formerly!) expect(former).not.toHaveProperty('occurredAt');
    expect(submit!.formerly![0]).not.toHaveProperty('resolutionDueAt');
    expect(rest.map((c) => c.command.occurredAt)).toEqual(['2021-03-02T00:00:00.000Z', '2021-03-05T00:00:00.000Z']);
    // With its own time, nothing defaults and no deadline means no former command.
    expect(rowCommands.feedback({ ...base, submitted_at: '2021-03-01' })[0]).not.toHaveProperty('formerly');
  });

  it('maps feedback with its optional columns', () => {
    const row = { ...base, feedback_id: 'F-1', channel: 'email', priority: 'high', csat: '2', nps: '-1', submitted_at: '1997-07-01' };
    expect(one('feedback', row)).toStrictEqual({
      command: {
        type: 'SubmitFeedback',
        feedbackId: 'F-1',
        customerId: CUSTOMER,
        kind: 'complaint',
        channel: 'email',
        subject: 'Late',
        body: 'Where is my order?',
        priority: 'high',
        csat: 2,
        nps: -1,
        occurredAt: '1997-07-01T00:00:00.000Z',
      },
      key: keyFor('feedback', 'F-1'),
    });
    // Words from lists in any case (`Complaint`, `Email`, `High`), as a spreadsheet writes them.
    expect(one('feedback', { ...row, kind: 'Complaint', channel: 'Email', priority: 'High' })).toStrictEqual(one('feedback', row));
  });

  it('fills the defaults when the optional columns are absent or blank, and keys by customer, time and subject', () => {
    const expected = {
      command: { type: 'SubmitFeedback', customerId: CUSTOMER, kind: 'complaint', channel: 'web', subject: 'Late', body: 'Where is my order?' },
      key: keyFor('feedback', `${CUSTOMER}::Late`),
    };
    expect(one('feedback', base)).toStrictEqual(expected);
    expect(one('feedback', { ...base, feedback_id: ' ', id: '', channel: ' ', priority: '', csat: null, nps: ' ' })).toStrictEqual(expected);
    // An empty submission time in a file that dates its items: refused (an old ticket was submitted today, with live deadlines).
    expect(() => one('feedback', { ...base, submitted_at: '' })).toThrow(/^submitted_at: empty in a file that dates its rows/);
    expect(one('feedback', { ...base, csat: '0', nps: '0' }).command).toMatchObject({ csat: 0, nps: 0 });
    expect(one('feedback', { customer_id: CUSTOMER, body: 'x' }).key).toBe(keyFor('feedback', `${CUSTOMER}::`));
  });

  it('takes the other names of the id and the time, the first one given winning', () => {
    const timed = one('feedback', { ...base, id: 'F-2', occurred_at: '1997-07-02' });
    expect(timed).toMatchObject({ command: { feedbackId: 'F-2', occurredAt: '1997-07-02T00:00:00.000Z' }, key: keyFor('feedback', 'F-2') });
    expect(one('feedback', { ...base, date: '1997-07-03' })).toMatchObject({
      command: { occurredAt: '1997-07-03T00:00:00.000Z' },
      key: keyFor('feedback', `${CUSTOMER}:1997-07-03T00:00:00.000Z:Late`),
    });
    const first = one('feedback', { ...base, feedback_id: 'F-1', id: 'F-2', submitted_at: '2001-01-01', occurred_at: '2002-01-01', date: '2003-01-01' });
    expect(first.command).toMatchObject({ feedbackId: 'F-1', occurredAt: '2001-01-01T00:00:00.000Z' });
    expect(one('feedback', { ...base, occurred_at: '2002-01-01', date: '2003-01-01' }).command.occurredAt).toBe('2002-01-01T00:00:00.000Z');
  });

  it('brings a resolved, closed and rated item in as it stood: each step the command the API takes, at its time', () => {
    const row = {
      ...base,
      feedback_id: 'F-1',
      submitted_at: '1997-07-01T09:00:00Z',
      assignee_id: 'sue',
      first_responded_at: '1997-07-01T10:00:00Z',
      first_response: 'Looking into it',
      resolved_at: '1997-07-02',
      resolution: 'Sent a new one',
      closed_at: '1997-07-03',
      csat: '4',
      nps: '9',
      rated_at: '1997-07-04',
      rating_comment: 'Quick',
    };
    const key = keyFor('feedback', 'F-1');
    const target = { feedbackId: 'F-1' };
    expect(rowCommands.feedback(row)).toStrictEqual([
      {
        command: expect.objectContaining({ type: 'SubmitFeedback', feedbackId: 'F-1', nps: 9, occurredAt: '1997-07-01T09:00:00Z' }),
        key,
      },
      { command: { type: 'AssignFeedback', ...target, assigneeId: 'sue', occurredAt: '1997-07-01T09:00:00Z' }, key: `${key}:assigned` },
      {
        command: { type: 'RespondToFeedback', ...target, message: 'Looking into it', responderId: 'sue', occurredAt: '1997-07-01T10:00:00Z' },
        key: `${key}:responded`,
      },
      { command: { type: 'ResolveFeedback', ...target, resolution: 'Sent a new one', occurredAt: '1997-07-02T00:00:00.000Z' }, key: `${key}:resolved` },
      { command: { type: 'CloseFeedback', ...target, occurredAt: '1997-07-03T00:00:00.000Z' }, key: `${key}:closed` },
      { command: { type: 'RateFeedback', ...target, csat: 4, comment: 'Quick', occurredAt: '1997-07-04T00:00:00.000Z' }, key: `${key}:rated` },
    ]);
    // Rated after its resolution: the score is the rating's, not the submission's.
    expect(rowCommands.feedback(row)[0]!.command).not.toHaveProperty('csat');
  });

  it('brings the rating of a resolution reopened since (as the export keeps it) in at its own time, before the reopening', () => {
    const row = { ...base, feedback_id: 'F-1', submitted_at: '1997-07-01', first_responded_at: '1997-07-02', csat: '2', rated_at: '1997-08-04' };
    const key = keyFor('feedback', 'F-1');
    const target = { feedbackId: 'F-1' };
    const earlier = (resolution: string, at: string) => [
      { command: { type: 'ResolveFeedback', ...target, resolution, occurredAt: at }, key: `${key}:resolved-before-rating` },
      { command: { type: 'RateFeedback', ...target, csat: 2, occurredAt: at }, key: `${key}:rated` },
      { command: { type: 'ReopenFeedback', ...target, occurredAt: at }, key: `${key}:reopened-after-rating` },
    ];
    // Worked again: the export's resolution is that earlier one's.
    const inProgress = rowCommands.feedback({ ...row, status: 'in_progress', resolution: 'Sent again', reopen_count: '1' });
    expect(inProgress.map((c) => c.command.type)).toEqual(['SubmitFeedback', 'RespondToFeedback', 'ResolveFeedback', 'RateFeedback', 'ReopenFeedback']);
    expect(inProgress.slice(2)).toStrictEqual(earlier('Sent again', '1997-08-04T00:00:00.000Z'));
    // The score is the rating's, not the submission's.
    expect(inProgress[0]!.command).not.toHaveProperty('csat');
    // Resolved again since, and not yet rated again: the file's resolution is the later one.
    const resolvedAgain = rowCommands.feedback({ ...row, resolved_at: '1997-09-01', resolution: 'Refunded', reopen_count: '1' });
    expect(resolvedAgain.slice(2, 5)).toStrictEqual(earlier(IMPORTED_RESOLUTION, '1997-08-04T00:00:00.000Z'));
    expect(resolvedAgain.slice(5).map((c) => c.command)).toStrictEqual([
      { type: 'ResolveFeedback', ...target, resolution: 'Refunded', occurredAt: '1997-09-01T00:00:00.000Z' },
    ]);
    // Rated before its first response (resolved without one): the response comes after the reopening.
    const answeredLater = rowCommands.feedback({ ...row, first_responded_at: '1997-08-10', status: 'in_progress', reopen_count: '2' });
    expect(answeredLater.map((c) => c.command.type)).toEqual(['SubmitFeedback', 'ResolveFeedback', 'RateFeedback', 'ReopenFeedback', 'RespondToFeedback']);
    // Without a reopening the file says nothing of, such a rating contradicts the row, as before.
    expect(rejection('feedback', { ...row, status: 'in_progress' })).toBe('rated_at: feedback is rated once resolved or closed, not in_progress');
    expect(rejection('feedback', { ...row, resolved_at: '1997-09-01' })).toMatch(/^rated_at: before resolved_at/);
    expect(rejection('feedback', { ...row, status: 'in_progress', reopen_count: '1', rated_at: '1997-06-01' })).toMatch(/^rated_at: before submitted_at/);
  });

  it('tells the status from the times when the file gives none, and writes the texts it lacks', () => {
    const types = (row: Row) => rowCommands.feedback({ ...base, submitted_at: '1997-07-01', ...row }).map((c) => c.command.type);
    expect(types({})).toEqual(['SubmitFeedback']);
    expect(types({ assignee: 'sue' })).toEqual(['SubmitFeedback', 'AssignFeedback']);
    expect(types({ responded_at: '1997-07-02' })).toEqual(['SubmitFeedback', 'RespondToFeedback']);
    expect(types({ resolved_at: '1997-07-02' })).toEqual(['SubmitFeedback', 'ResolveFeedback']);
    expect(types({ closed_at: '1997-07-02' })).toEqual(['SubmitFeedback', 'CloseFeedback']);
    expect(types({ status: 'In Progress', assignee_id: 'sue' })).toEqual(['SubmitFeedback', 'AssignFeedback']);
    const [submit, respond, resolve] = rowCommands.feedback({ ...base, first_responded_at: '1997-07-02', resolved_at: '1997-07-03', csat: '5' });
    const target = { feedbackId: createdIdFor('SubmitFeedback', submit!.key) };
    expect(submit!.command).toMatchObject({ csat: 5 });
    expect(respond!.command).toStrictEqual({ type: 'RespondToFeedback', ...target, message: IMPORTED_RESPONSE, occurredAt: '1997-07-02T00:00:00.000Z' });
    expect(resolve!.command).toStrictEqual({ type: 'ResolveFeedback', ...target, resolution: IMPORTED_RESOLUTION, occurredAt: '1997-07-03T00:00:00.000Z' });
    // The submission's key is the one it had before the history columns, so files imported earlier stay idempotent.
    expect(submit!.key).toBe(keyFor('feedback', `${CUSTOMER}::Late`));
  });

  it('refuses a status the other columns contradict, a step without its time, and times that run backwards', () => {
    const refused = (row: Row) => rejection('feedback', { ...base, submitted_at: '1997-07-02', ...row });
    expect(refused({ status: 'pending' })).toBe('status: expected open, in_progress, resolved, closed, got "pending"');
    expect(refused({ status: 'open', assignee_id: 'sue', resolved_at: '1997-07-03' })).toBe('status: open, yet the row gives resolved_at');
    expect(refused({ status: 'in_progress' })).toBe('status: in_progress needs assignee_id or first_responded_at');
    expect(refused({ status: 'in_progress', assignee_id: 'sue', closed_at: '1997-07-03' })).toBe('status: in_progress, yet the row gives closed_at');
    expect(refused({ status: 'resolved' })).toBe('resolved_at: required when status is resolved');
    expect(refused({ status: 'resolved', resolved_at: '1997-07-03', closed_at: '1997-07-04' })).toBe('status: resolved, yet the row gives closed_at');
    expect(refused({ status: 'closed' })).toBe('closed_at: required when status is closed');
    expect(refused({ assignee_id: 'sue', rated_at: '1997-07-03', csat: '3' })).toBe('rated_at: feedback is rated once resolved or closed, not in_progress');
    expect(refused({ resolved_at: '1997-07-01' })).toBe('resolved_at: before submitted_at (1997-07-01T00:00:00.000Z < 1997-07-02T00:00:00.000Z)');
    expect(refused({ first_responded_at: '1997-07-05', resolved_at: '1997-07-04' })).toMatch(/^resolved_at: before first_responded_at/);
    expect(refused({ resolved_at: '1997-07-04', closed_at: '1997-07-03' })).toMatch(/^closed_at: before resolved_at/);
    expect(refused({ closed_at: '1997-07-04', rated_at: '1997-07-03', csat: '3' })).toMatch(/^rated_at: before closed_at/);
    expect(refused({ resolved_at: '1997-07-05', closed_at: '1997-07-06', rated_at: '1997-07-04', csat: '3' })).toMatch(/^rated_at: before resolved_at/);
    // Open with an assignee and a first response: reopened (as an export writes it) or being worked; imported with both.
    expect(rowCommands.feedback({ ...base, status: 'open', assignee_id: 'sue', first_responded_at: '1997-07-03' }).map((c) => c.command.type)).toEqual([
      'SubmitFeedback',
      'AssignFeedback',
      'RespondToFeedback',
    ]);
    expect(refused({ status: 'open', closed_at: '1997-07-03' })).toBe('status: open, yet the row gives closed_at');
    expect(refused({ status: 'in_progress', assignee_id: 'sue', resolved_at: '1997-07-03' })).toBe('status: in_progress, yet the row gives resolved_at');
    expect(refused({ rated_at: '1997-07-03', csat: '3' })).toBe('rated_at: feedback is rated once resolved or closed, not open');
    expect(refused({ first_responded_at: '1997-07-01' })).toMatch(/^first_responded_at: before submitted_at/);
    expect(refused({ closed_at: '1997-07-01' })).toMatch(/^closed_at: before submitted_at/);
    // The same instant is not before it; a time left out is not compared, an unreadable one refused by its column.
    expect(rowCommands.feedback({ ...base, submitted_at: '1997-07-02', resolved_at: '1997-07-02', closed_at: '1997-07-02' })).toHaveLength(3);
    expect(rowCommands.feedback({ ...base, resolved_at: '1997-07-02' })).toHaveLength(2);
    expect(rejection('feedback', { ...base, submitted_at: 'soon', resolved_at: '1997-07-02' })).toMatch(/^submitted_at: "soon" is not a time/);
    expect(rowCommands.feedback({ ...base, status: 'In  -  Progress', assignee_id: 'sue' })).toHaveLength(2);
    // A rating without its score is the schema's to refuse, naming the field.
    expect(refusedFields(rowCommands.feedback({ ...base, resolved_at: '1997-07-03', rated_at: '1997-07-04' }).at(-1)!.command)).toEqual(['csat']);
  });

  it('names the bad fields of feedback', () => {
    expect(rejection('feedback', { ...base, csat: 'good' })).toMatch(/^csat: "good" is not a number/);
    expect(rejection('feedback', { ...base, nps: '5.5.5' })).toMatch(/^nps: "5.5.5" is not a number/);
    expect(refusedFields(one('feedback', { ...base, csat: '9' }).command)).toEqual(['csat']);
    expect(refusedFields(one('feedback', { ...base, kind: 'rant' }).command)).toEqual(['kind']);
  });
});
