const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;
const isJsonSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

type Frame = { keys: Set<string>; key?: string } | { index: number };

/**
 * The path (`["targetSegment", "tags"]`, array items by index) of the first key a JSON text gives twice
 * in one object, at any depth, if any. `JSON.parse` keeps the last one without a word: a command body
 * or an import row naming a field twice was taken with its second value. The text must be valid JSON
 * (parsed already): strings end at an unescaped quote, and brackets outside strings nest.
 */
export const keyGivenTwice = (text: string): (string | number)[] | undefined => {
  const stack: Frame[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const start = i;
      for (i++; text.charCodeAt(i) !== QUOTE; i++) if (text.charCodeAt(i) === BACKSLASH) i++;
      const top = stack.at(-1);
      if (!top || !('keys' in top)) continue;
      let next = i + 1;
      while (isJsonSpace(text.charCodeAt(next))) next++;
      if (text.charCodeAt(next) !== COLON) continue;
      const key = JSON.parse(text.slice(start, i + 1)) as string;
      if (top.keys.has(key)) return [...stack.slice(0, -1).map((f) => ('keys' in f ? f.key! : f.index)), key];
      top.keys.add(key);
      top.key = key;
    } else if (c === OPEN_OBJECT) stack.push({ keys: new Set() });
    else if (c === OPEN_ARRAY) stack.push({ index: 0 });
    else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) stack.pop();
    else if (c === COMMA) {
      const top = stack.at(-1);
      if (top && 'index' in top) top.index++;
    }
  }
  return undefined;
};
