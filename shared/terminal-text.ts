/**
 * Text from the store or a file, made safe to print on an operator's terminal: control characters
 * (C0 but for line feeds and tabs where lines are kept, DEL, C1) and direction controls become `\uXXXX`.
 * A customer name or an import header holding ESC sequences recoloured the terminal, set its title or
 * hid the warning itself; a carriage return forged a line of `crm api-key list`.
 */
// eslint-disable-next-line no-control-regex -- control characters are what is escaped
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
// eslint-disable-next-line no-control-regex -- control characters are what is escaped
const CONTROLS_BUT_LINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const escaped = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** One line of a message: every control character shown as its escape. */
export const terminalText = (text: string): string => text.replace(CONTROLS, escaped);

/** Several lines of output (an export to a terminal): line feeds and tabs kept, the rest escaped. */
export const terminalLines = (text: string): string => text.replace(CONTROLS_BUT_LINES, escaped);
