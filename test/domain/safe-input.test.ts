import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { commandSchemas } from '../../commands/schemas.ts';
import { eventSchemas } from '../../domain/catalogue.ts';
import { CustomerRegisteredV1 } from '../../domain/customer/events.ts';
import { EventMetadata } from '../../domain/metadata.ts';
import { isBusinessDate, isBusinessInstant, isStorableText, IsoDate, IsoDateTime, SafeText } from '../../domain/shared.ts';

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
});

/**
 * Walks a schema and lists every string leaf that is not built on the shared definitions: a text
 * without the storable check, a time without the business-years check. Formats whose grammar is
 * ASCII (uuid, email) are safe by construction.
 */
type Def = { type: string; format?: string; checks?: { _zod: { def: { fn?: unknown } } }[]; [k: string]: unknown };
const unsafeLeaves = (schema: z.core.$ZodType, path: string, out: string[]): string[] => {
  const def = (schema as unknown as { _zod: { def: Def } })._zod.def;
  const fns = (def.checks ?? []).map((c) => c._zod.def.fn);
  const inner = (key: string) => def[key] as z.core.$ZodType;
  switch (def.type) {
    case 'string':
      if (def.format === 'uuid' || def.format === 'email') break;
      if (def.format === 'datetime') {
        if (!fns.includes(isBusinessInstant)) out.push(`${path} (an instant without the business-years rule)`);
      } else if (def.format === 'date') {
        if (!fns.includes(isBusinessDate)) out.push(`${path} (a date without the business-years rule)`);
      } else if (def.format !== undefined) {
        out.push(`${path} (format ${def.format}: decide whether it is storable)`);
      } else if (!fns.includes(isStorableText)) {
        out.push(`${path} (a text not built on SafeText)`);
      }
      break;
    case 'object':
      for (const [key, value] of Object.entries(def.shape as Record<string, z.core.$ZodType>)) unsafeLeaves(value, `${path}.${key}`, out);
      break;
    case 'array':
      unsafeLeaves(inner('element'), `${path}[]`, out);
      break;
    case 'optional':
    case 'nullable':
    case 'default':
    case 'readonly':
      unsafeLeaves(inner('innerType'), path, out);
      break;
    case 'pipe':
      unsafeLeaves(inner('in'), path, out);
      break;
    case 'union':
      for (const option of def.options as z.core.$ZodType[]) unsafeLeaves(option, path, out);
      break;
    case 'record':
      unsafeLeaves(inner('keyType'), `${path}{key}`, out);
      unsafeLeaves(inner('valueType'), `${path}{}`, out);
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
