import { isUtf8 } from 'node:buffer';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { TextDecoder } from 'node:util';

/**
 * The character encodings an import file may be in. Spreadsheets on Windows save "CSV" as
 * Windows-1252 (ISO-8859-1 is read as it too, as browsers do); read as UTF-8, every accented letter
 * of such a file became U+FFFD and was stored so ("M�ller"), silently.
 */
export const importEncodings = ['utf-8', 'windows-1252'] as const;
export type ImportEncoding = (typeof importEncodings)[number];

const ALIASES: Record<string, ImportEncoding> = {
  'utf-8': 'utf-8',
  utf8: 'utf-8',
  'windows-1252': 'windows-1252',
  cp1252: 'windows-1252',
  'iso-8859-1': 'windows-1252',
  latin1: 'windows-1252',
};

/** The encoding a name (a `--encoding` value, a `charset` parameter) stands for, if it is one we read. */
export const importEncodingNamed = (name: string): ImportEncoding | undefined => ALIASES[name.trim().toLowerCase()];

export const CR = 0x0d;
export const LF = 0x0a;

/**
 * The line ends in `bytes`: every lone CR, LF and CR LF (a file edited on Windows, Linux and an old
 * Mac has all three). `afterCr`: the byte before `bytes` was a CR, so an LF first is the end of its pair.
 */
export const lineEndsIn = (bytes: Buffer, afterCr: boolean): number => {
  let count = 0;
  for (let at = bytes.indexOf(CR); at >= 0; at = bytes.indexOf(CR, at + 1)) count += 1;
  for (let at = bytes.indexOf(LF); at >= 0; at = bytes.indexOf(LF, at + 1)) if (at === 0 ? !afterCr : bytes[at - 1] !== CR) count += 1;
  return count;
};

/**
 * Most of a line held back waiting for its end; past it the line is passed on in parts (the CSV
 * parser refuses a row over MAX_ROW_CHARS characters anyway), so memory stays bounded.
 */
const MAX_HELD_BYTES = 4 * 1024 * 1024;

/** Where the line starting at `from` ends (past its line end), or -1 when it has none yet. */
const nextLineStart = (bytes: Buffer, from: number): number => {
  const lf = bytes.indexOf(LF, from);
  const cr = bytes.indexOf(CR, from);
  if (cr < 0 || (lf >= 0 && lf < cr)) return lf < 0 ? -1 : lf + 1;
  return bytes[cr + 1] === LF ? cr + 2 : cr + 1;
};

/**
 * UTF-8 bytes passed on whole lines at a time, until a line that is not UTF-8: the lines before it
 * are passed on, then the text ends, and `invalidLine` says where. Nothing of the bad line is passed
 * on (a part of it would read as a shorter row). A file that starts with a UTF-16 byte order mark
 * (what spreadsheets call "Unicode text") is read as UTF-16 and passed on as UTF-8.
 */
class Utf8Lines extends Transform {
  /** The line of the first byte that is not UTF-8, once one is found. */
  invalidLine: number | undefined;
  /** The line the next byte passed on is on. */
  private line = 1;
  /** The bytes after the last line end seen. */
  private held: Buffer | undefined;
  /** The last byte passed on was a CR (an LF first in the next bytes ends the same line). */
  private afterCr = false;
  private first = true;
  private utf16: TextDecoder | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.invalidLine !== undefined) return callback();
    if (this.first) {
      this.first = false;
      if (chunk[0] === 0xff && chunk[1] === 0xfe) this.utf16 = new TextDecoder('utf-16le');
      else if (chunk[0] === 0xfe && chunk[1] === 0xff) this.utf16 = new TextDecoder('utf-16be');
    }
    // The decoder drops the mark and holds a code unit cut by the chunk's end for the next one.
    if (this.utf16) return callback(null, Buffer.from(this.utf16.decode(chunk, { stream: true }), 'utf8'));
    const bytes = this.held ? Buffer.concat([this.held, chunk]) : chunk;
    // A line end is never inside a UTF-8 sequence: whole lines hold whole characters.
    let end = Math.max(bytes.lastIndexOf(LF), bytes.lastIndexOf(CR)) + 1;
    if (end === 0 && bytes.length > MAX_HELD_BYTES) end = wholeCharacters(bytes);
    this.held = end < bytes.length ? Buffer.from(bytes.subarray(end)) : undefined;
    this.pass(bytes.subarray(0, end));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.utf16) return callback(null, Buffer.from(this.utf16.decode(), 'utf8'));
    if (this.held && this.invalidLine === undefined) this.pass(this.held);
    callback();
  }

  private pass(bytes: Buffer): void {
    if (isUtf8(bytes)) return this.passLines(bytes);
    // The first line that is not UTF-8 on its own is the bad one.
    let from = 0;
    for (let next = nextLineStart(bytes, 0); next >= 0 && isUtf8(bytes.subarray(from, next)); next = nextLineStart(bytes, from)) from = next;
    if (from > 0) this.passLines(bytes.subarray(0, from));
    this.invalidLine = this.line;
    this.push(null);
  }

  private passLines(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.line += lineEndsIn(bytes, this.afterCr);
    this.afterCr = bytes[bytes.length - 1] === CR;
    this.push(bytes);
  }
}

/** The length of `bytes` without a UTF-8 sequence cut short at its end. */
const wholeCharacters = (bytes: Buffer): number => {
  let start = bytes.length - 1;
  // Continuation bytes (10xxxxxx) of a sequence of at most four.
  while (start > 0 && start > bytes.length - 4 && (bytes[start]! & 0xc0) === 0x80) start -= 1;
  const lead = bytes[start]!;
  const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return start + length > bytes.length ? start : bytes.length;
};

/**
 * Windows-1252's characters for 0x80-0x9F (the rest is Latin-1, byte for code point), with the five
 * bytes it leaves undefined kept as their code points, as WHATWG's decoder does. Node's TextDecoder
 * reads this encoding as Latin-1 (0x80 came out as U+0080, not the euro sign).
 */
const CP1252_HIGH = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ';
const fromCp1252 = (c: string): string => CP1252_HIGH[c.charCodeAt(0) - 0x80]!;

/** Windows-1252 bytes as UTF-8 (a single-byte encoding: no character is cut by a chunk's end). */
const fromWindows1252 = (): Transform =>
  new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      callback(null, Buffer.from(chunk.toString('latin1').replace(/[\u0080-\u009f]/g, fromCp1252), 'utf8'));
    },
  });

export interface Utf8Text {
  /** The file's text as UTF-8 bytes. */
  stream: Readable;
  /** The line where the text stopped being readable in its encoding, once the stream has ended. */
  invalidLine(): number | undefined;
}

/** The bytes of `input` as UTF-8 text, read in `encoding`; an error of `input` ends the text with it. */
export const utf8Text = (input: Readable, encoding: ImportEncoding): Utf8Text => {
  const decode = encoding === 'windows-1252' ? fromWindows1252() : new Utf8Lines();
  input.once('error', (error) => decode.destroy(error));
  input.pipe(decode);
  return { stream: decode, invalidLine: () => (decode instanceof Utf8Lines ? decode.invalidLine : undefined) };
};
