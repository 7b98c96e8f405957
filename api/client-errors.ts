import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { owedAnswers } from './owed-answers.ts';
import { PROBLEM_CONTENT_TYPE, ProblemError, REPEATED_PARAMETER, validationProblem } from './problems.ts';

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (a control character in a header,
 * both Transfer-Encoding and Content-Length, a raw NUL or non-ASCII byte in the path, a broken
 * chunked body, headers or a URL over the 16 KB header limit, a request that stopped arriving):
 * answered as problems like every other refusal, naming the part of the request at fault, and the
 * connection closed (what follows on it cannot be read).
 */
const problemFor = (code: string | undefined): ProblemError => {
  const part = (field: 'headers' | 'url' | 'method' | 'body', detail: string) =>
    new ProblemError('malformed', `${detail} (${code ?? 'unreadable'}).`, { errors: [{ field, message: detail }] });
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new ProblemError('headers_too_large', 'The request line and headers are larger than 16 KB: send a shorter URL or fewer, shorter headers.', {
        errors: [{ field: 'headers', message: 'larger than 16 KB with the request line' }],
      });
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return new ProblemError('request_timeout', 'The request did not arrive in time.');
    case 'HPE_INVALID_URL':
      return part('url', 'The URL holds a character HTTP does not allow (percent-encode it)');
    case 'HPE_INVALID_METHOD':
      return part('method', 'The method is not one HTTP knows');
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      return part('headers', 'The request has both Transfer-Encoding and Content-Length');
    case 'HPE_INVALID_CONTENT_LENGTH':
      return part('headers', 'The Content-Length header is not a single number');
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return part('headers', 'The Transfer-Encoding header is not one this server reads');
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
    case 'HPE_INVALID_EOF_STATE':
    case 'HPE_STRICT':
      return part('body', 'The chunked body cannot be read');
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_VERSION':
    case 'HPE_LF_EXPECTED':
    case 'HPE_CR_EXPECTED':
    case 'HPE_UNEXPECTED_SPACE':
      return part('headers', 'A header (or the request line) holds a character HTTP does not allow');
    default:
      return new ProblemError('malformed', `The request cannot be read as HTTP/1.1 (${code ?? 'unreadable'}).`);
  }
};

/** Headers of an answer written below Fastify: as the API's other answers (helmet in api/app.ts), JSON that nothing may run or frame. */
const rawHeaders = (problem: ProblemError, body: string): Record<string, string> => ({
  'Content-Type': PROBLEM_CONTENT_TYPE,
  'Content-Length': String(Buffer.byteLength(body)),
  'Content-Security-Policy': "default-src 'none';frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  ...problem.headers,
  Connection: 'close',
});

/** Writes `problem` as the whole answer on a socket Node's HTTP server no longer reads, then closes it. */
const answerOnSocket = (socket: Duplex, problem: ProblemError, cause?: Error): void => {
  if (socket.writable && !socket.destroyed) {
    const body = JSON.stringify(problem.body());
    const headers = Object.entries(rawHeaders(problem, body))
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
    socket.write(`HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}\r\n${headers}\r\n${body}`);
  }
  socket.destroy(cause);
};

/** Connections whose refusal is written or waiting: the parser reports each later byte on them again. */
const refusing = new WeakSet<Duplex>();

/**
 * Fastify's `clientErrorHandler`: the answer written to the socket, as the raw refusals of
 * api/back-pressure.ts are. Behind requests read earlier on the connection (a command and, in the same
 * write, bytes that are no request), it waits for their answers: written at once, the refusal was
 * the only answer on the wire, and the client took it for its command's, which was carried out, and
 * sent the command again.
 */
export function clientErrorHandler(this: FastifyInstance, error: Error & { code?: string }, socket: Duplex): void {
  // A reset connection has nobody to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed || refusing.has(socket)) return;
  refusing.add(socket);
  // The requests read whole; the one being read when the bytes went wrong gets the refusal as its answer.
  owedAnswers(this.server).whenAnswered(
    socket,
    () => answerOnSocket(socket, problemFor(error.code), error),
    (request) => request.complete,
  );
}

/**
 * A header that must come once, refused as a 400 naming it when sent twice. Node keeps the first copy
 * of some headers (Host, Authorization) and joins others into one value (`abc, def`): either way the
 * request was read as naming one of them (two Authorization headers acted as the first key, which a
 * proxy reading the other would not), so only the raw headers tell.
 */
export const assertSentOnce = (request: FastifyRequest, name: string): void => {
  const raw = request.raw.rawHeaders;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) count += 1;
  if (count > 1) throw validationProblem([{ field: name, message: REPEATED_PARAMETER }]);
};

/**
 * onRequest hook: an HTTP/1.1 request without a Host header, or with two, is a 400 naming the header
 * (RFC 9112, 3.2). Node's own check answers a bare 400 with no body, so the server is made without it
 * (`requireHostHeader: false`, api/back-pressure.ts) and the refusal is a problem like the others.
 * A request target holding a fragment (`#...`, which a client keeps to itself) is a 400 naming `url`:
 * it was read as part of the query, and refused as an unknown field or a bad value of the one before.
 */
export const refuseMalformedTarget = async (request: FastifyRequest): Promise<void> => {
  if (request.raw.httpVersion === '1.1' && request.headers.host === undefined) {
    throw new ProblemError('malformed', 'An HTTP/1.1 request must carry a Host header.', { errors: [{ field: 'host', message: 'required' }] });
  }
  assertSentOnce(request, 'host');
  if (request.raw.url?.includes('#'))
    throw validationProblem([{ field: 'url', message: 'holds a fragment (#...): a request target carries none; leave it out, or send a # in a value as %23' }]);
};

/**
 * Requests Node's HTTP server answers by itself when nobody listens, with no problem body: a CONNECT
 * (the connection closed without a word) and an `Expect` other than `100-continue` (a bare 417).
 * Answered as problems, naming the method or the header.
 */
export function registerServerRefusals(server: Server): void {
  // Counted from the first request on: a refusal of what follows a request waits for its answer.
  owedAnswers(server);
  server.on('connect', (_request: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => undefined);
    answerOnSocket(
      socket,
      new ProblemError(
        'method_not_allowed',
        'CONNECT is not served: this is an API, not a proxy.',
        { errors: [{ field: 'method', message: 'CONNECT is not served' }] },
        { allow: 'GET, HEAD, POST, PATCH, DELETE, OPTIONS' },
      ),
    );
  });
  server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    const problem = new ProblemError('expectation_failed', `The server meets no expectation but 100-continue (Expect: ${String(request.headers.expect)}).`, {
      errors: [{ field: 'expect', message: 'only 100-continue' }],
    });
    const body = JSON.stringify(problem.body(request.url?.split('?')[0]));
    response.writeHead(problem.status, rawHeaders(problem, body)).end(body);
  });
}
