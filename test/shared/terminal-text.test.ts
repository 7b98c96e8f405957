import { describe, expect, it } from 'vitest';
import { terminalLines, terminalText } from '../../shared/terminal-text.ts';

describe('text printed on a terminal', () => {
  it('shows control and direction characters as escapes, and keeps everything else', () => {
    expect(terminalText('key\u001b[31mRED\u001b[0m\r\nFAKE')).toBe('key\\u001b[31mRED\\u001b[0m\\u000d\\u000aFAKE');
    expect(terminalText('bell\u0007 c1\u009b rlo\u202e del\u007f')).toBe('bell\\u0007 c1\\u009b rlo\\u202e del\\u007f');
    expect(terminalText('Zoë Ångström, 東京 café — ok')).toBe('Zoë Ångström, 東京 café — ok');
  });

  it('keeps line feeds and tabs of several lines', () => {
    expect(terminalLines('a\tb\nc\u001b[2Jd\r\n')).toBe('a\tb\nc\\u001b[2Jd\\u000d\n');
  });
});
