/**
 * The characters that change the direction text is shown in (Arabic letter mark, left-to-right and
 * right-to-left marks, embeddings and overrides, isolates), as the inside of a bracket expression: one
 * U+202E in a stored text turns around what follows it on a screen or a terminal.
 */
export const DIRECTION_CONTROL_CHARACTERS = '\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069';

const DIRECTION_CONTROLS = new RegExp(`[${DIRECTION_CONTROL_CHARACTERS}]`, 'g');

/** The text without its direction controls. */
export const withoutDirectionControls = (text: string): string => text.replace(DIRECTION_CONTROLS, '');
