import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { PROBLEM_CONTENT_TYPE, ProblemError } from './problems.ts';

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

/** Fastify's `clientErrorHandler`: the answer written to the socket, as the raw refusals of api/back-pressure.ts are. */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  // A reset connection has nobody to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  if (socket.writable) {
    const problem = problemFor(error.code);
    const body = JSON.stringify(problem.body());
    socket.write(
      `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}\r\n` +
        `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        // As the API's other answers (helmet in api/app.ts): JSON that nothing may run or frame.
        "Content-Security-Policy: default-src 'none';frame-ancestors 'none'\r\n" +
        'X-Content-Type-Options: nosniff\r\n' +
        'Connection: close\r\n\r\n' +
        body,
    );
  }
  socket.destroy(error);
}
