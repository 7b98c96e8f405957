import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { eventSchemas, personalFields, schemaVersionOf, type CrmEventType } from '../../domain/catalogue.ts';
import { latestStoreMigration } from '../../eventstore/postgres/migrations.ts';

/**
 * What each event type stores, paired with the newest store migration. An older version refuses a
 * store only by its migrations (eventstore/postgres/migrations.ts): a change of what an event holds
 * that comes without one lets an older version start on events it misreads, or write personal data
 * in clear that a forget then leaves readable. domain/README.md, "Changing what an event stores".
 */
const RECORDED = new URL('./event-formats.json', import.meta.url);
const RECORD = 'RECORD_EVENT_FORMATS=1 npx vitest run test/domain/event-formats.test.ts';

interface EventFormat {
  version: number;
  personal: { subject: string; fields: string[] } | null;
  required: string[];
  optional: string[];
  /** Of the JSON schema of the data: the fields' types and bounds (refinements in code are not seen). */
  schema: string;
}
interface Recorded {
  storeMigration: string;
  formats: Record<string, EventFormat>;
}

const formatOf = (type: CrmEventType, schema: z.ZodType): EventFormat => {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, unknown>; required?: string[] };
  const fields = Object.keys(json.properties ?? {}).sort();
  const required = [...(json.required ?? [])].sort();
  const personal = personalFields[type];
  return {
    version: schemaVersionOf(type),
    personal: personal ? { subject: personal.subject, fields: [...personal.fields].sort() } : null,
    required,
    optional: fields.filter((field) => !required.includes(field)),
    schema: createHash('sha256').update(JSON.stringify(json)).digest('hex').slice(0, 16),
  };
};

const current = (): Recorded => ({
  storeMigration: latestStoreMigration(),
  formats: Object.fromEntries(
    (Object.entries(eventSchemas) as [CrmEventType, z.ZodType][])
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([type, schema]) => [type, formatOf(type, schema)]),
  ),
});

const recorded = (): Recorded => JSON.parse(readFileSync(RECORDED, 'utf8')) as Recorded;

/** The event types whose stored format differs, with what differs. */
const changes = (before: Recorded['formats'], now: Recorded['formats']): string[] =>
  [...new Set([...Object.keys(before), ...Object.keys(now)])].sort().flatMap((type) => {
    const [was, is] = [before[type], now[type]];
    if (!was) return [`${type} (a new event type)`];
    if (!is) return [`${type} (no longer in the catalogue)`];
    const parts = (['version', 'personal', 'required', 'optional', 'schema'] as const).filter((part) => JSON.stringify(was[part]) !== JSON.stringify(is[part]));
    return parts.length > 0 ? [`${type} (${parts.join(', ')})`] : [];
  });

describe('the stored format of every event type', () => {
  it('changes only with a new store migration, so that older versions refuse the store', () => {
    const before = recorded();
    const now = current();
    const changed = changes(before.formats, now.formats);
    if (now.storeMigration === before.storeMigration) {
      expect(
        changed,
        `What these events store changed without a store migration: ${changed.join('; ')}. An older version would start on this ` +
          'store and misread the events, or store personal data in clear that a forget leaves readable. Add a store migration ' +
          '(a no-op recording the change will do) to besideEventsMigrationsFor in eventstore/postgres/migrations.ts, then record the ' +
          `formats with it: ${RECORD}. domain/README.md, "Changing what an event stores".`,
      ).toEqual([]);
      return;
    }
    // A new store migration: the formats are recorded with it (on request), or the test says how.
    if (process.env.RECORD_EVENT_FORMATS === '1') writeFileSync(RECORDED, `${JSON.stringify(now, null, 2)}\n`);
    else
      expect.fail(
        `The newest store migration is ${now.storeMigration}, the event formats were recorded with ${before.storeMigration}: record them with it ` +
          `(${changed.length > 0 ? `changed: ${changed.join('; ')}` : 'none changed'}): ${RECORD}.`,
      );
  });
});
