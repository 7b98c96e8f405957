import type { FastifyInstance } from 'fastify';
import { contentCodingRefused } from './content-coding.ts';
import { ProblemError, validationProblem } from './problems.ts';
import { keyGivenTwice } from '../shared/json-keys.ts';

/** Refuses bytes that are not UTF-8 instead of replacing them with U+FFFD; keeps a byte order mark as JSON.parse would see it. */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Labels of UTF-8 (WHATWG Encoding), compared in lower case. */
const UTF8_LABELS = new Set(['utf-8', 'utf8', 'unicode-1-1-utf-8', 'unicode11utf8', 'unicode20utf8', 'x-unicode20utf8']);

/** Every `charset` parameter of a Content-Type, unquoted (a header may repeat one). */
const charsetsOf = (contentType: string): string[] =>
  contentType
    .split(';')
    .slice(1)
    .map((parameter) => parameter.split('='))
    .filter(([name]) => name!.trim().toLowerCase() === 'charset')
    .map(([, value = '']) => value.trim().replace(/^"(.*)"$/, '$1'));

/**
 * The JSON body parser, in place of Fastify's own:
 * - JSON is UTF-8 (RFC 8259): a body declared in another charset (`charset=latin1`, `utf-16`) would be
 *   read as UTF-8 and stored garbled, so it is a 415 naming the content-type;
 * - a compressed body is a 415 naming Content-Encoding (it was a 400 "not valid JSON"), as for imports;
 * - an empty body is no body, as with no Content-Type at all: a DELETE sent with
 *   `Content-Type: application/json` is accepted, and a command without fields is validated as `{}`
 *   (its missing fields named) instead of being refused as "no JSON body".
 * - a key given twice in one object is a 400 naming it: `JSON.parse` kept the last one without a word
 *   (as the NDJSON import refuses such a row);
 * - bytes that are not UTF-8 (Latin-1 sent as UTF-8, CESU-8 surrogates) are a 400 naming the body:
 *   read as a string they became U+FFFD, stored without a word ("M\uFFFDller");
 * Everything else is Fastify's parser: `__proto__` and `constructor.prototype` members are refused.
 */
export const registerJsonBody = (app: FastifyInstance): void => {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, bytes, done) => {
    const compressed = contentCodingRefused(request.headers, 'JSON');
    if (compressed) {
      done(compressed, undefined);
      return;
    }
    const contentType = request.headers['content-type'] ?? '';
    const foreign = charsetsOf(contentType).find((charset) => !UTF8_LABELS.has(charset.toLowerCase()));
    if (foreign !== undefined) {
      done(
        new ProblemError('unsupported_media_type', `The body is declared as charset "${foreign}"; send JSON as UTF-8 (charset=utf-8, or no charset).`, {
          errors: [{ field: 'content-type', message: 'JSON is read as UTF-8 only' }],
        }),
        undefined,
      );
      return;
    }
    let body: string;
    try {
      body = utf8.decode(bytes as Buffer);
    } catch {
      done(
        validationProblem([{ field: 'body', in: 'body', message: 'not UTF-8: send JSON encoded as UTF-8' }], 'The body holds bytes that are not UTF-8.'),
        undefined,
      );
      return;
    }
    if (body === '') {
      done(null, undefined);
      return;
    }
    // Fastify's parser answers through `done` (its return value is nothing).
    void parse(request, body, (error, value) => {
      const twice = error ? undefined : keyGivenTwice(body);
      if (twice) done(validationProblem([{ field: twice.join('.'), in: 'body', message: 'given twice; send it once' }]), undefined);
      else done(error, value);
    });
  });
};
