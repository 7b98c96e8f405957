import type { IncomingHttpHeaders } from 'node:http';
import { ProblemError } from './problems.ts';

/**
 * A body compressed by the client (`Content-Encoding: gzip`, ...) is not inflated here: its bytes
 * would be read as the JSON or the file. Refused with 415 naming the header (RFC 7694), before anything
 * parses the body; `identity` is no coding.
 */
export const contentCodingRefused = (headers: IncomingHttpHeaders, what: string, responseHeaders: Record<string, string> = {}): ProblemError | undefined => {
  const codings = (headers['content-encoding'] ?? '')
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '' && coding !== 'identity');
  if (codings.length === 0) return undefined;
  return new ProblemError(
    'unsupported_media_type',
    `The body is encoded as ${codings.join(', ')}; send ${what} uncompressed (no Content-Encoding).`,
    { errors: [{ field: 'content-encoding', message: `not read: send ${what} uncompressed` }] },
    responseHeaders,
  );
};
