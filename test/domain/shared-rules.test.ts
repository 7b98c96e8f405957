import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import {
  BUSINESS_TIME_SKEW_MS,
  DisplayText,
  EmailAddress,
  hasBegun,
  isBeyondNow,
  IsoDateTime,
  MultiLineText,
  NewTag,
  PersonRef,
  SingleLineText,
  storableForm,
} from '../../domain/shared.ts';

/**
 * The shared rules of command texts, times and addresses, as a caller reads a refusal: each issue's
 * message (the problem's `detail` per field), one per field. The API tests send them through HTTP;
 * these name every edge of the rules themselves.
 */
const messages = (schema: z.ZodType, value: unknown): string[] => {
  const result = schema.safeParse(value);
  return result.success ? [] : result.error.issues.map((issue) => issue.message);
};

describe('a text a command takes on one line', () => {
  it('is refused for a control character, naming its code point in four digits and its position in the text sent', () => {
    expect(messages(SingleLineText, 'Ana\u0007Lima')).toEqual(['contains the control character U+0007 at position 4']);
    expect(messages(SingleLineText, 'Ana\u001b[31m')).toEqual(['contains the control character U+001B at position 4']);
    // Positions count characters as the user sees them: an emoji before it is one.
    expect(messages(SingleLineText, '👩\u0085x')).toEqual(['contains the control character U+0085 at position 2 (a line break: this field takes one line)']);
  });

  it('counts the blanks the trim drops before it, and finds it before blanks at the end', () => {
    expect(messages(SingleLineText, '  Ana\u0007')).toEqual(['contains the control character U+0007 at position 6']);
    expect(messages(SingleLineText, 'Ana\u0007  ')).toEqual(['contains the control character U+0007 at position 4']);
    expect(messages(SingleLineText, ' \tAna\u0001Lima\n')).toEqual(['contains the control character U+0001 at position 6']);
    // What the trim drops at its ends is left to it.
    expect(SingleLineText.parse('\tAna Lima\r\n')).toBe('Ana Lima');
  });

  it('says a line break takes one line, and names the line and paragraph separators', () => {
    expect(messages(SingleLineText, 'Ana\nLima')).toEqual(['contains the control character U+000A at position 4 (a line break: this field takes one line)']);
    expect(messages(SingleLineText, 'Ana\u2028Lima')).toEqual(['contains the line separator U+2028 at position 4 (a line break: this field takes one line)']);
    expect(messages(SingleLineText, 'Ana\u2029Lima')).toEqual([
      'contains the paragraph separator U+2029 at position 4 (a line break: this field takes one line)',
    ]);
  });

  it('gives one refusal a field: the control character, not the rules after it', () => {
    expect(messages(PersonRef, `\u0007${'x'.repeat(300)}`)).toEqual(['contains the control character U+0007 at position 1']);
  });

  it('reads a user id spelled in capitals in lower case, and any other text as given', () => {
    expect(PersonRef.parse('DE66B6E4-1C2B-4D4A-9E8F-0A1B2C3D4E5F')).toBe('de66b6e4-1c2b-4d4a-9e8f-0a1b2c3d4e5f');
    expect(PersonRef.parse('Import')).toBe('Import');
  });
});

describe('a text a command takes on several lines', () => {
  it('keeps tabs and line breaks, and refuses a lone CR or another control character without calling it a line break', () => {
    expect(MultiLineText.parse('Call back\r\n\tThursday\nor\u2028Friday')).toBe('Call back\r\n\tThursday\nor\u2028Friday');
    expect(messages(MultiLineText, 'Call back\rThursday')).toEqual(['contains the control character U+000D at position 10']);
    expect(messages(MultiLineText, '  x\u001b')).toEqual(['contains the control character U+001B at position 4']);
  });
});

describe('a name people pick from a list', () => {
  it('needs a visible character, and an empty one is refused once, for its length', () => {
    const invisible = 'must contain a visible character (not only spaces or zero-width characters)';
    expect(messages(DisplayText, '\u200b\u2060')).toEqual([invisible]);
    expect(messages(DisplayText, '\u3164')).toEqual([invisible]);
    expect(messages(DisplayText, '')).toHaveLength(1);
    expect(messages(DisplayText, '')).not.toContain(invisible);
    expect(DisplayText.parse(' Zoë ')).toBe('Zoë');
  });

  it('is a tag too: one that shows, an empty one refused for its length and form, not as invisible', () => {
    const invisible = 'must contain a visible character (not only fillers or spaces)';
    expect(messages(NewTag, '\u3164')).toEqual([invisible]);
    expect(messages(NewTag, '')).not.toEqual([]);
    expect(messages(NewTag, '')).not.toContain(invisible);
    expect(NewTag.parse('vip')).toBe('vip');
  });
});

describe('an e-mail address', () => {
  const smtp = 'a local part of at most 64 characters and domain labels of at most 63 (RFC 5321)';

  it('takes a local part of 64 characters and domain labels of 63, and refuses one more of either', () => {
    const label = 'd'.repeat(63);
    for (const email of [`${'a'.repeat(64)}@example.com`, `a@${label}.com`, `a.b@x.${label}`]) expect(messages(EmailAddress, email), email).toEqual([]);
    expect(messages(EmailAddress, `${'a'.repeat(65)}@example.com`)).toEqual([smtp]);
    expect(messages(EmailAddress, `a@${label}d.com`)).toEqual([smtp]);
    expect(messages(EmailAddress, `a@example.${label}d`)).toEqual([smtp]);
  });

  it('asks for punycode only for a domain outside ASCII', () => {
    expect(messages(EmailAddress, 'info@münchen.de')).toEqual(['write the domain in punycode (xn--...): info@xn--mnchen-3ya.de for info@münchen.de']);
    const local = messages(EmailAddress, 'zoë@example.com');
    expect(local).toHaveLength(1);
    expect(local[0]).not.toContain('punycode');
  });

  it('names an invisible character in it by its code point', () => {
    expect(messages(EmailAddress, 'ana\u200b@example.com')).toEqual(['the address contains an invisible character (U+200B): type it again without it']);
  });
});

describe('a business time', () => {
  it('takes time zone offsets up to ±15:59, as PostgreSQL does, and refuses later ones', () => {
    for (const ok of ['2026-06-01T12:00:00+15:59', '2026-06-01T12:00:00-15:59', '2026-06-01T12:00:00+14:00', '2026-06-01T12:00:00Z'])
      expect(IsoDateTime.safeParse(ok).success, ok).toBe(true);
    for (const bad of ['2026-06-01T12:00:00+16:00', '2026-06-01T12:00:00-16:30', '2026-06-01T12:00:00+23:59'])
      expect(messages(IsoDateTime, bad), bad).toEqual(['a time zone offset within ±15:59 (real zones span -12:00 to +14:00)']);
  });

  it('refuses a day without a time for its form, not its offset (the day of the month is no offset)', () => {
    const refused = messages(IsoDateTime, '2026-06-16');
    expect(refused).toHaveLength(1);
    expect(refused[0]).not.toContain('offset within');
  });

  it('is cut to milliseconds, not rounded, whatever the digits after them', () => {
    expect(IsoDateTime.parse('2026-06-01T10:00:00.123456Z')).toBe('2026-06-01T10:00:00.123Z');
    expect(IsoDateTime.parse('2026-12-31T23:59:59.9999999Z')).toBe('2026-12-31T23:59:59.999Z');
    expect(IsoDateTime.parse('2026-06-01T10:00:00.1234+02:00')).toBe('2026-06-01T10:00:00.123+02:00');
    expect(IsoDateTime.parse('2026-06-01T10:00:00.12Z')).toBe('2026-06-01T10:00:00.12Z');
  });

  it('lies beyond now only past the clock skew allowed; a day has begun from its midnight less that skew', () => {
    const now = Date.parse('2026-12-06T23:55:00Z');
    expect(isBeyondNow(now + BUSINESS_TIME_SKEW_MS, now)).toBe(false);
    expect(isBeyondNow(now + BUSINESS_TIME_SKEW_MS + 1, now)).toBe(true);
    expect(isBeyondNow(now - 1, now)).toBe(false);
    expect(hasBegun('2026-12-07', now)).toBe(true);
    expect(hasBegun('2026-12-07', now - 1)).toBe(false);
    expect(hasBegun('2026-12-06', now)).toBe(true);
  });
});

describe('a column name reported back', () => {
  it('shows what PostgreSQL cannot store as U+FFFD, and any other text as given', () => {
    expect(storableForm('na\u0000me\ud800')).toBe('na\ufffdme\ufffd');
    expect(storableForm('\udc00x')).toBe('\ufffdx');
    expect(storableForm('Zoë 👩')).toBe('Zoë 👩');
  });
});
