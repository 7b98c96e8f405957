import type { IncomingHttpHeaders } from 'node:http';
import { ProblemError } from './problems.ts';

/** The codings a header names, in lower case, leaving out those that change nothing of the bytes read. */
const codingsIn = (value: string | undefined, transparent: readonly string[]): string[] =>
  (value ?? '')
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '' && !transparent.includes(coding));

/**
 * A body compressed by the client (`Content-Encoding: gzip`, ...) is not inflated here: its bytes
 * would be read as the JSON or the file. Refused with 415 naming the header (RFC 7694), before anything
 * parses the body; `identity` is no coding. The same for a transfer coding beside `chunked`
 * (`Transfer-Encoding: gzip, chunked`): Node takes the chunks apart but leaves the gzip in them.
 */
export const contentCodingRefused = (headers: IncomingHttpHeaders, what: string, responseHeaders: Record<string, string> = {}): ProblemError | undefined => {
  for (const [header, transparent] of [
    ['content-encoding', ['identity']],
    ['transfer-encoding', ['identity', 'chunked']],
  ] as const) {
    const value = headers[header];
    const codings = codingsIn(typeof value === 'string' ? value : undefined, transparent);
    if (codings.length === 0) continue;
    const name = header === 'content-encoding' ? 'Content-Encoding' : 'a transfer coding but chunked';
    return new ProblemError(
      'unsupported_media_type',
      `The body is encoded as ${codings.join(', ')}; send ${what} uncompressed (no ${name}).`,
      { errors: [{ field: header, message: `not read: send ${what} uncompressed` }] },
      responseHeaders,
    );
  }
  return undefined;
};
