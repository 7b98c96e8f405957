import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { commandSchemas } from '../../commands/schemas.ts';
import { eventSchemas } from '../../domain/catalogue.ts';
import { CustomerRegisteredV1 } from '../../domain/customer/events.ts';
import { EventMetadata } from '../../domain/metadata.ts';
import { isBusinessDate, isBusinessInstant, isStorableText, IsoDate, IsoDateTime, IsoMonth, ONE_LINE, SafeText, SEVERAL_LINES } from '../../domain/shared.ts';

describe('a safe text', () => {
  it('is any Unicode PostgreSQL can store: no NUL, no unpaired surrogate', () => {
    for (const text of ['', 'Zoë', 'محمد', 'e\u0301', '👩‍👩‍👧‍👦', '\ud83d\ude00', '𠜎', '\u202e', '\ufffd', '\u0001'])
      expect(isStorableText(text), JSON.stringify(text)).toBe(true);
    for (const text of ['\u0000', 'a\u0000', '\ud800', '\udc00', 'a\ud83d', '\ude00a', '\udc00\ud800', '\ud800\ud800\udc00\udc00']) {
      expect(isStorableText(text), JSON.stringify(text)).toBe(false);
      expect(SafeText.safeParse(text).success).toBe(false);
    }
  });
});

describe('a business time', () => {
  it('is an instant of the years 1900-2200 in UTC, or a day of those years', () => {
    for (const ok of ['1900-01-01T00:00:00Z', '2200-12-31T23:59:59.999Z', '1900-01-01T01:00:00+01:00', '2026-06-01T12:00:00-05:00']) {
      expect(IsoDateTime.safeParse(ok).success, ok).toBe(true);
    }
    for (const bad of [
      '0000-01-01T00:00:00Z',
      '1899-12-31T23:59:59Z',
      '1900-01-01T00:59:59+01:00',
      '2201-01-01T00:00:00Z',
      '2200-12-31T23:00:00-01:00',
      'yesterday',
    ]) {
      expect(IsoDateTime.safeParse(bad).success, bad).toBe(false);
    }
    expect(['1900-01-01', '2200-12-31'].every((d) => IsoDate.safeParse(d).success)).toBe(true);
    expect(['0000-01-01', '1899-12-31', '2201-01-01'].some((d) => IsoDate.safeParse(d).success)).toBe(false);
  });

  it('that is no time, day or month at all gets the one message saying so, not also the rule of the years', () => {
    const messages = (schema: z.ZodType, text: string) => schema.safeParse(text).error?.issues.map((i) => i.message);
    // A leap second: zod refuses it, and the years' rule, reading it as no instant, refused it too.
    for (const text of ['2016-12-31T23:59:60Z', 'yesterday', '2026-02-30T10:00:00Z'])
      expect(messages(IsoDateTime, text), text).toEqual(['Invalid ISO datetime']);
    for (const text of ['soon', '2026-02-30']) expect(messages(IsoDate, text), text).toEqual(['Invalid ISO date']);
    expect(messages(IsoMonth, 'March')).toEqual(['a month YYYY-MM']);
    // A real time, day or month outside the years gets the years' rule alone.
    expect(messages(IsoDateTime, '1899-12-31T23:59:59Z')).toEqual(['a time in the years 1900-2200']);
    expect(messages(IsoDate, '2201-01-01')).toEqual(['a time in the years 1900-2200']);
    expect(messages(IsoMonth, '2201-01')).toEqual(['a time in the years 1900-2200']);
  });
});

/**
 * Walks a schema to each string leaf, at any depth, and hands it to `visit`; a type the walk does not
 * know is listed in `out`, so that a new kind of schema is looked at rather than skipped.
 */
type Def = { type: string; format?: string; checks?: { _zod: { def: { fn?: unknown; format?: string } } }[]; [k: string]: unknown };
type Visit = (def: Def, path: string, out: string[]) => void;
const walk = (schema: z.core.$ZodType, path: string, visit: Visit, out: string[]): string[] => {
  const def = (schema as unknown as { _zod: { def: Def } })._zod.def;
  const inner = (key: string) => def[key] as z.core.$ZodType;
  switch (def.type) {
    case 'string':
      visit(def, path, out);
      break;
    case 'object':
      for (const [key, value] of Object.entries(def.shape as Record<string, z.core.$ZodType>)) walk(value, `${path}.${key}`, visit, out);
      break;
    case 'array':
      walk(inner('element'), `${path}[]`, visit, out);
      break;
    case 'optional':
    case 'nullable':
    case 'default':
    case 'readonly':
      walk(inner('innerType'), path, visit, out);
      break;
    case 'pipe':
      walk(inner('in'), path, visit, out);
      break;
    case 'union':
      for (const option of def.options as z.core.$ZodType[]) walk(option, path, visit, out);
      break;
    case 'record':
      walk(inner('keyType'), `${path}{key}`, visit, out);
      walk(inner('valueType'), `${path}{}`, visit, out);
      break;
    case 'enum':
    case 'literal':
    case 'number':
    case 'boolean':
      break;
    default:
      out.push(`${path} (type ${def.type}: teach this walk about it)`);
  }
  return out;
};

/**
 * Every string leaf that is not built on the shared definitions: a text without the storable check, a
 * time without the business-years check. Formats whose grammar is ASCII (uuid, email) are safe by construction.
 */
const unsafeLeaves = (schema: z.core.$ZodType, path: string, out: string[]): string[] =>
  walk(
    schema,
    path,
    (def, at, found) => {
      const fns = (def.checks ?? []).map((c) => c._zod.def.fn);
      if (def.format === 'uuid' || def.format === 'email') return;
      if (def.format === 'datetime') {
        if (!fns.includes(isBusinessInstant)) found.push(`${at} (an instant without the business-years rule)`);
      } else if (def.format === 'date') {
        if (!fns.includes(isBusinessDate)) found.push(`${at} (a date without the business-years rule)`);
      } else if (def.format !== undefined) {
        found.push(`${at} (format ${def.format}: decide whether it is storable)`);
      } else if (!fns.includes(isStorableText)) {
        found.push(`${at} (a text not built on SafeText)`);
      }
    },
    out,
  );

/**
 * Each free text leaf with the control-character rule it keeps: `one line`, `several lines` or `none`.
 * Formats (uuid, email, times) and texts held to a pattern of their own (a currency, a rate, a tag
 * being removed) take no control character by their grammar.
 */
const controlRules = (schema: z.core.$ZodType, path: string, out: string[]): string[] =>
  walk(
    schema,
    path,
    (def, at, found) => {
      const checks = (def.checks ?? []) as unknown[];
      if (def.format !== undefined || (def.checks ?? []).some((c) => c._zod.def.format === 'regex')) return;
      found.push(`${at}: ${checks.includes(ONE_LINE) ? 'one line' : checks.includes(SEVERAL_LINES) ? 'several lines' : 'none'}`);
    },
    out,
  );

describe('every command and event schema', () => {
  it('builds each text on SafeText and each time on the business-time rule, at any depth', () => {
    // The walk sees a plain text and a plain instant however deep they sit.
    const planted = z.object({ a: z.array(z.object({ b: z.string().nullable().optional() })), c: z.iso.datetime() });
    expect(unsafeLeaves(planted, 'planted', [])).toEqual([
      'planted.a[].b (a text not built on SafeText)',
      'planted.c (an instant without the business-years rule)',
    ]);
    const unsafe: string[] = [];
    for (const [name, schema] of Object.entries(commandSchemas)) unsafeLeaves(schema, `command ${name}`, unsafe);
    for (const [name, schema] of Object.entries(eventSchemas)) unsafeLeaves(schema, `event ${name}`, unsafe);
    unsafeLeaves(CustomerRegisteredV1, 'event CustomerRegistered v1', unsafe);
    unsafeLeaves(EventMetadata, 'metadata', unsafe);
    expect(unsafe).toEqual([]);
  });
});

describe('control characters', () => {
  it('every command text refuses them, on one line or on several; no event schema does, so events recorded before still read', () => {
    const commands = Object.entries(commandSchemas).flatMap(([name, schema]) => controlRules(schema, name, []));
    expect(commands.filter((leaf) => leaf.endsWith(': none'))).toEqual([]);
    const severalLines = commands.filter((leaf) => leaf.endsWith(': several lines')).map((leaf) => leaf.slice(0, leaf.indexOf(':')));
    // The free texts of several lines: notes, bodies, messages, reasons, comments, descriptions.
    expect(severalLines.filter((path) => !/\.(body|message|reason|resolution|comment|description)$/.test(path))).toEqual([]);
    expect(severalLines.length).toBeGreaterThanOrEqual(16);
    const events = Object.entries(eventSchemas).flatMap(([name, schema]) => controlRules(schema, name, []));
    expect(events.filter((leaf) => !leaf.endsWith(': none'))).toEqual([]);
    const recorded = { customerId: '6f1c0a4e-8b7d-4c1e-9f00-000000000001', name: 'Ana\u0007Lima\u001b[31m', email: 'a@example.com' };
    expect(
      eventSchemas.CustomerRegistered.safeParse({ ...recorded, phone: null, company: 'x\u0085y', tags: [], source: 'a\nb', marketingConsent: false }).success,
    ).toBe(true);
  });
});
