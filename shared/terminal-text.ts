import { DIRECTION_CONTROL_CHARACTERS } from './direction-controls.ts';

/**
 * Text from the store or a file, made safe to print on an operator's terminal: control characters
 * (C0 but for line feeds and tabs where lines are kept, DEL, C1) and direction controls become `\uXXXX`.
 * A customer name or an import header holding ESC sequences recoloured the terminal, set its title or
 * hid the warning itself; a carriage return forged a line of `crm api-key list`.
 */
// DEL and the C1 controls, then the direction controls; the C0 ones differ by what is kept.
const OTHER_CONTROLS = `\\u007f-\\u009f${DIRECTION_CONTROL_CHARACTERS}`;
const CONTROLS = new RegExp(`[\\u0000-\\u001f${OTHER_CONTROLS}]`, 'g');
const CONTROLS_BUT_LINES = new RegExp(`[\\u0000-\\u0008\\u000b-\\u001f${OTHER_CONTROLS}]`, 'g');

const escaped = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** One line of a message: every control character shown as its escape. */
export const terminalText = (text: string): string => text.replace(CONTROLS, escaped);

/** Several lines of output (an export to a terminal): line feeds and tabs kept, the rest escaped. */
export const terminalLines = (text: string): string => text.replace(CONTROLS_BUT_LINES, escaped);
