import { isUtf8 } from 'node:buffer';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { TextDecoder } from 'node:util';

/**
 * The character encoding an import file is in: a WHATWG name (`utf-8`, `windows-1254`, `shift_jis`,
 * ...), as Node's TextDecoder names it. Spreadsheets on Windows save "CSV" in the code page of their
 * locale: Windows-1252 in Western Europe, 1254 in Turkey, 1255 in Israel, Shift-JIS in Japan. Read as
 * UTF-8, every accented letter of such a file became U+FFFD and was stored so ("M�ller"), silently;
 * read as Windows-1252, a Turkish file was stored `Ðül Þahin` for `Ğül Şahin`.
 */
export type ImportEncoding = string;

/** Encodings named in messages, with where their files come from. */
export const encodingExamples =
  'windows-1252 for Western Europe, windows-1254 for Turkish, windows-1255 for Hebrew, shift_jis for Japanese, utf-16le for Unicode text';

/**
 * The encoding a name (a `--encoding` value, a `charset` parameter) stands for, if it is one we read:
 * any label TextDecoder knows (`latin1` and `iso-8859-1` are `windows-1252`, `utf-16` is `utf-16le`).
 */
export const importEncodingNamed = (name: string): ImportEncoding | undefined => {
  try {
    return new TextDecoder(name.trim()).encoding;
  } catch {
    return undefined;
  }
};

/**
 * The encodings of one byte a character. Almost no text in one of them that holds a letter outside
 * ASCII is also valid UTF-8 of several bytes a character: a file that is has been saved as UTF-8, and
 * read as told it was stored as mojibake (`FranÃ§ois`).
 */
const SINGLE_BYTE = /^(windows-\d+|iso-8859-\d+(-i)?|koi8-[ru]|ibm866|macintosh|x-mac-cyrillic)$/;
export const isSingleByte = (encoding: ImportEncoding): boolean => SINGLE_BYTE.test(encoding);

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
 * What a file is read as: the encoding it is said to be in, unless it starts with a byte order mark,
 * which says what it is (as browsers read a page): a UTF-8 file with one, read as Windows-1252 because
 * told so, stored `FranÃ§ois` and a first column `ï»¿id` that named nothing. A file that starts with
 * a UTF-16 mark is what spreadsheets call "Unicode text".
 */
export type TextReadAs = ImportEncoding;

/**
 * The first bytes looked at before reading: enough for the longest byte order mark (UTF-8's, three)
 * and to tell UTF-16 without one.
 */
const FIRST_BYTES = 64;

/**
 * The UTF-16 that `bytes`, the start of a file without a byte order mark, looks like: NUL bytes at
 * odd offsets only (the high bytes of ASCII in little-endian) or even ones only. Text in any other
 * encoding holds no NUL; read as one, such a file was said to be Windows-1252.
 */
const unmarkedUtf16 = (bytes: Buffer): 'utf-16le' | 'utf-16be' | undefined => {
  const units = Math.min(bytes.length, FIRST_BYTES) >> 1;
  let evenNuls = 0;
  let oddNuls = 0;
  for (let unit = 0; unit < units; unit += 1) {
    if (bytes[2 * unit] === 0) evenNuls += 1;
    if (bytes[2 * unit + 1] === 0) oddNuls += 1;
  }
  if (units < 2) return undefined;
  if (evenNuls === 0 && oddNuls * 4 >= units) return 'utf-16le';
  if (oddNuls === 0 && evenNuls * 4 >= units) return 'utf-16be';
  return undefined;
};

const isUtf16 = (encoding: TextReadAs | undefined): boolean => encoding === 'utf-16le' || encoding === 'utf-16be';

/** The UTF-16 code unit at `at`. */
const unitAt = (bytes: Buffer, at: number, bigEndian: boolean): number => (bigEndian ? bytes.readUInt16BE(at) : bytes.readUInt16LE(at));
const isLineEnd = (unit: number): boolean => unit === LF || unit === CR;

/** Past the last line end in UTF-16 `bytes` (none before `from`, an even offset), or 0 when there is none. */
const lastUtf16LineEnd = (bytes: Buffer, from: number, bigEndian: boolean): number => {
  for (let at = (bytes.length & ~1) - 2; at >= from; at -= 2) if (isLineEnd(unitAt(bytes, at, bigEndian))) return at + 2;
  return 0;
};

/** Where the UTF-16 line starting at `from` ends (past its line end), or -1 when it has none. */
const nextUtf16LineStart = (bytes: Buffer, from: number, bigEndian: boolean): number => {
  for (let at = from; at + 1 < bytes.length; at += 2) {
    const unit = unitAt(bytes, at, bigEndian);
    if (unit === LF) return at + 2;
    if (unit === CR) return at + 3 < bytes.length && unitAt(bytes, at + 2, bigEndian) === LF ? at + 4 : at + 2;
  }
  return -1;
};

/** The length of UTF-16 `bytes` without a code unit, or a surrogate pair, cut short at its end. */
const wholeUtf16 = (bytes: Buffer, bigEndian: boolean): number => {
  const even = bytes.length & ~1;
  const last = even >= 2 ? unitAt(bytes, even - 2, bigEndian) : 0;
  return last >= 0xd800 && last <= 0xdbff ? even - 2 : even;
};

/**
 * A file's bytes passed on as UTF-8, whole lines at a time, until a line that is not text in the
 * encoding read: the lines before it are passed on, then the text ends, and `invalidLine` says where.
 * Nothing of the bad line is passed on (a part of it would read as a shorter row). UTF-16 is checked
 * as UTF-8 is: its decoder made every unpaired surrogate U+FFFD, stored so, silently.
 */
class TextLines extends Transform {
  /** The line of the first byte that is not text in the encoding read, once one is found. */
  invalidLine: number | undefined;
  /** What the file is read as, once its first bytes are in. */
  readAs: TextReadAs | undefined;
  /** The encoding the text that stopped the reading is in after all (UTF-8 given as a single-byte one, UTF-16 without a mark). */
  looksLike: ImportEncoding | undefined;
  /** The line the next byte passed on is on. */
  private line = 1;
  /** The bytes after the last line end seen (and, at first, those too few to tell a byte order mark by). */
  private held: Buffer | undefined;
  /** The last byte passed on was a CR (an LF first in the next bytes ends the same line). */
  private afterCr = false;
  /** The decoder of an encoding other than UTF-8 and UTF-16, once the file is read as one. */
  private decoder: TextDecoder | undefined;
  /** A single-byte encoding was given and no letter outside ASCII was read yet: it may be UTF-8 after all. */
  private mayBeUtf8 = false;

  constructor(private readonly declared: ImportEncoding) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.invalidLine !== undefined) return callback();
    // The held bytes have no line end, but those held to tell the mark by were not looked at.
    const heldBefore = this.readAs === undefined ? 0 : (this.held?.length ?? 0);
    let bytes = this.held ? Buffer.concat([this.held, chunk]) : chunk;
    this.held = undefined;
    if (this.readAs === undefined) {
      // The mark is told from the first bytes, however few the first chunk holds.
      if (bytes.length < FIRST_BYTES) {
        this.held = Buffer.from(bytes);
        return callback();
      }
      bytes = this.tell(bytes);
      if (this.invalidLine !== undefined) return callback();
    }
    this.decode(bytes, heldBefore, false);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.invalidLine === undefined) {
      let bytes = this.held ?? Buffer.alloc(0);
      this.held = undefined;
      if (this.readAs === undefined) bytes = this.tell(bytes);
      if (this.invalidLine === undefined) this.decode(bytes, 0, true);
    }
    callback();
  }

  /** Decides what the file is read as; `bytes` without a UTF-16 mark (UTF-8's is left for the parsers, which skip it). */
  private tell(bytes: Buffer): Buffer {
    if (bytes[0] === 0xff && bytes[1] === 0xfe) this.readAs = 'utf-16le';
    else if (bytes[0] === 0xfe && bytes[1] === 0xff) this.readAs = 'utf-16be';
    else if (isUtf16(this.declared)) {
      this.readAs = this.declared;
      return bytes;
    } else if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) this.readAs = 'utf-8';
    else {
      this.readAs = this.declared;
      const utf16 = unmarkedUtf16(bytes);
      if (utf16 !== undefined) {
        this.looksLike = utf16;
        this.stop();
        return bytes;
      }
      this.mayBeUtf8 = isSingleByte(this.declared);
    }
    if (this.readAs !== 'utf-8' && !isUtf16(this.readAs)) this.decoder = new TextDecoder(this.readAs, { fatal: true });
    return isUtf16(this.readAs) ? bytes.subarray(2) : bytes;
  }

  /** `bytes` (the held ones first, `held` of them, with no line end) passed on up to their last line end; all of them when `last`. */
  private decode(bytes: Buffer, held: number, last: boolean): void {
    const utf16 = isUtf16(this.readAs);
    const bigEndian = this.readAs === 'utf-16be';
    // A line end is never inside a character: whole lines hold whole characters (no encoding read has
    // a character of several bytes with a CR or LF byte in it, but UTF-16).
    let end = last ? bytes.length : utf16 ? lastUtf16LineEnd(bytes, held & ~1, bigEndian) : Math.max(bytes.lastIndexOf(LF), bytes.lastIndexOf(CR)) + 1;
    // The decoder of another encoding keeps a character cut at the end for the next bytes.
    if (end === 0 && bytes.length > MAX_HELD_BYTES) end = utf16 ? wholeUtf16(bytes, bigEndian) : this.decoder ? bytes.length : wholeCharacters(bytes);
    this.held = end < bytes.length ? Buffer.from(bytes.subarray(end)) : undefined;
    if (utf16)
      this.passDecoded(bytes.subarray(0, end), new TextDecoder(this.readAs, { fatal: true, ignoreBOM: true }), (part, from) =>
        nextUtf16LineStart(part, from, bigEndian),
      );
    else if (this.decoder) this.passLegacy(bytes.subarray(0, end), this.decoder, last);
    else this.passUtf8(bytes.subarray(0, end));
  }

  private passUtf8(bytes: Buffer): void {
    if (isUtf8(bytes)) return this.passLines(bytes);
    // The first line that is not UTF-8 on its own is the bad one.
    let from = 0;
    for (let next = nextLineStart(bytes, 0); next >= 0 && isUtf8(bytes.subarray(from, next)); next = nextLineStart(bytes, from)) from = next;
    if (from > 0) this.passLines(bytes.subarray(0, from));
    this.stop();
  }

  /** `bytes` in a legacy encoding (Windows-1254, Shift-JIS, ...), `last` of the file or not. */
  private passLegacy(bytes: Buffer, decoder: TextDecoder, last: boolean): void {
    if (this.mayBeUtf8) {
      // The first line with a byte outside ASCII tells: UTF-8 of several bytes a letter, or the encoding given.
      const outside = bytes.findIndex((byte) => byte >= 0x80);
      if (outside >= 0) {
        this.mayBeUtf8 = false;
        const start = Math.max(bytes.lastIndexOf(LF, outside), bytes.lastIndexOf(CR, outside)) + 1;
        const end = nextLineStart(bytes, outside);
        if (isUtf8(bytes.subarray(start, end < 0 ? bytes.length : end))) {
          this.passLegacy(bytes.subarray(0, start), decoder, last);
          this.looksLike = 'utf-8';
          return this.stop();
        }
      }
    }
    this.passDecoded(bytes, decoder, nextLineStart, !last);
  }

  /**
   * `bytes` decoded, when the whole of them is text in their encoding; else the lines before the
   * first that is not on its own (a line end is never inside a character), then the end of the text.
   */
  private passDecoded(bytes: Buffer, decoder: TextDecoder, lineStart: (bytes: Buffer, from: number) => number, more = false): void {
    const decoded = (part: Buffer, stream: boolean): string | undefined => {
      try {
        const text = decoder.decode(part, { stream });
        // Node's TextDecoder reads Windows-1252 as Latin-1: 0x80 came out as U+0080, not the euro sign.
        return decoder.encoding === 'windows-1252' ? text.replace(/[\u0080-\u009f]/g, fromCp1252) : text;
      } catch {
        return undefined;
      }
    };
    const whole = decoded(bytes, more);
    if (whole !== undefined) return this.passLines(Buffer.from(whole, 'utf8'));
    let from = 0;
    let good = '';
    for (let next = lineStart(bytes, 0); next >= 0; next = lineStart(bytes, from)) {
      const line = decoded(bytes.subarray(from, next), false);
      if (line === undefined) break;
      good += line;
      from = next;
    }
    this.passLines(Buffer.from(good, 'utf8'));
    this.stop();
  }

  private stop(): void {
    this.invalidLine = this.line;
    this.held = undefined;
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
 * bytes it leaves undefined kept as their code points, as WHATWG's decoder does.
 */
const CP1252_HIGH = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ';
const fromCp1252 = (c: string): string => CP1252_HIGH[c.charCodeAt(0) - 0x80]!;

export interface Utf8Text {
  /** The file's text as UTF-8 bytes. */
  stream: Readable;
  /** The line where the text stopped being readable in its encoding, once the stream has ended. */
  invalidLine(): number | undefined;
  /** The encoding that text is in after all, when it looks like another one (TextLines.looksLike). */
  looksLike(): ImportEncoding | undefined;
  /** What the file was read as (TextReadAs), once its first bytes are in. */
  readAs(): TextReadAs | undefined;
}

/** The bytes of `input` as UTF-8 text, read in `encoding` (unless a byte order mark says otherwise); an error of `input` ends the text with it. */
export const utf8Text = (input: Readable, encoding: ImportEncoding): Utf8Text => {
  const decode = new TextLines(encoding);
  input.once('error', (error) => decode.destroy(error));
  input.pipe(decode);
  return { stream: decode, invalidLine: () => decode.invalidLine, looksLike: () => decode.looksLike, readAs: () => decode.readAs };
};
