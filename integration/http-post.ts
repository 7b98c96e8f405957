import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { DestinationGuard } from './destinations.ts';

/** What one delivery attempt got back. */
export interface Answer {
  ok: boolean;
  status: number | null;
  error: string | null;
  /** The receiver's `Retry-After` (429, 503), in ms from now; null when absent or unreadable. */
  retryAfterMs: number | null;
}

/** `Retry-After` as delay-seconds or an HTTP date (RFC 9110 10.2.3). */
export const retryAfterMs = (value: string | undefined, now = Date.now()): number | null => {
  if (value === undefined) return null;
  const text = value.trim();
  // Any number of digits: a value too long for a 32-bit count was read as no Retry-After at all, so the
  // usual 1 s back-off applied where the receiver asked for the most (the loop caps the wait).
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
};

/** Bytes of an answer's body read (and dropped) before the connection is cut instead of reused. */
const MAX_ANSWER_BYTES = 64 * 1024;
/**
 * How long an answer's body may take once its status line came: the status decides, so a body that
 * stalls or never ends cuts the connection after this instead of holding each delivery for the whole
 * attempt bound (a 200 with a stalled body took 6-10 s a delivery, the subscription falling behind).
 */
const ANSWER_BODY_MS = 1_000;

/** Network failures as an operator reads them: the code, and what it usually means. */
const NETWORK_ERRORS: Record<string, string> = {
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name could not be resolved now (DNS)',
  ECONNREFUSED: 'nothing listens at that address and port',
  ECONNRESET: 'the receiver (or a proxy before it) reset the connection',
  EHOSTUNREACH: 'no route to the host',
  ENETUNREACH: 'no route to the network',
  EPROTO: 'the TLS handshake failed (an https URL to a port that speaks plain HTTP?)',
  CERT_HAS_EXPIRED: "the receiver's TLS certificate has expired",
  DEPTH_ZERO_SELF_SIGNED_CERT: "the receiver's TLS certificate is self-signed",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "the receiver's TLS certificate cannot be verified",
  ERR_TLS_CERT_ALTNAME_INVALID: "the receiver's TLS certificate does not name this host",
};

/** An attempt's error as recorded: a network code with its meaning, or the message. */
const describeFailure = (error: Error & { code?: string }): string =>
  error.code ? (NETWORK_ERRORS[error.code] ? `${error.code}: ${NETWORK_ERRORS[error.code]}` : error.code) : error.message;

/** A status that is not a delivery, as recorded: a redirect says where it pointed, as deliveries never follow one. */
const describeStatus = (status: number, location: string | undefined): string | null =>
  status >= 300 && status < 400
    ? `HTTP ${status}: a redirect${location ? ` to ${location.slice(0, 200)}` : ''}, which deliveries do not follow: give the subscription the URL it points to`
    : null;

/**
 * POSTs for one subscription over a kept-alive connection (node:http: about 3-4x the request rate of
 * `fetch` on these machines for small bodies, measured 571/s against 145-212/s, one at a time, loaded).
 * Every attempt is bounded by `timeoutMs` from start to the end of the answer; redirects are not
 * followed (a 3xx is a failure). The status decides: a body that is huge, never ends or breaks off
 * after a 2xx does not turn an acknowledged delivery into a failure (it would be sent again and again).
 * Only addresses the destination guard lets through are connected to (an IP literal is checked before,
 * a name as it resolves). A user and password in the URL go as `Authorization: Basic` (node:http does
 * that from the URL's userinfo, percent-decoded; `fetch` would refuse such a URL).
 */
export class WebhookClient {
  private readonly http = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  private readonly https = new HttpsAgent({ keepAlive: true, maxSockets: 1 });

  constructor(private readonly destinations: DestinationGuard) {}

  post(url: string, body: string, headers: Record<string, string>, timeoutMs: number, stop: AbortSignal): Promise<Answer> {
    const target = new URL(url);
    const refused = this.destinations.hostRefusal(target.hostname);
    if (refused) return Promise.resolve({ ok: false, status: null, error: refused, retryAfterMs: null });
    return new Promise<Answer>((resolve) => {
      const secure = target.protocol === 'https:';
      let timedOut = false;
      /** Set once the status line and headers arrived: from then on that is the answer. */
      let answered: Answer | undefined;
      // A plain timer and one listener, removed when settled: AbortSignal.any/timeout per request
      // leave work behind on the long-lived stop signal.
      let bodyTimer: NodeJS.Timeout | undefined;
      const finish = (answer: Answer) => {
        clearTimeout(timer);
        clearTimeout(bodyTimer);
        stop.removeEventListener('abort', onStop);
        resolve(answer);
      };
      const fail = (error: Error & { code?: string }) =>
        finish(answered ?? { ok: false, status: null, error: timedOut ? `no answer within ${timeoutMs} ms` : describeFailure(error), retryAfterMs: null });
      const onAnswer = (res: IncomingMessage) => {
        const status = res.statusCode ?? 0;
        const retryAfter = res.headers['retry-after'];
        const answer: Answer = {
          ok: status >= 200 && status < 300,
          status,
          error: describeStatus(status, res.headers.location),
          retryAfterMs: retryAfterMs(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter),
        };
        answered = answer;
        bodyTimer = setTimeout(() => {
          res.destroy();
          finish(answer);
        }, ANSWER_BODY_MS);
        // The body is not ours to read: drained so the connection is reused, or the connection cut when
        // the body is large (a slow one is cut by the timer).
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received <= MAX_ANSWER_BYTES) return;
          res.destroy();
          finish(answer);
        });
        res.on('error', fail);
        res.on('end', () => finish(answer));
      };
      const options = {
        method: 'POST',
        agent: secure ? this.https : this.http,
        lookup: this.destinations.lookup,
        headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': 'crm-webhooks/1' },
      };
      let req: ClientRequest;
      try {
        req = secure ? httpsRequest(target, options, onAnswer) : httpRequest(target, options, onAnswer);
      } catch (error) {
        // Thrown before anything is sent: node:http percent-decodes the URL's user and password for Basic
        // authentication and throws on a malformed escape (URIError). A failed attempt, not a loop error.
        resolve({ ok: false, status: null, error: `the request could not be made: ${(error as Error).message}`, retryAfterMs: null });
        return;
      }
      const timer = setTimeout(() => {
        timedOut = true;
        req.destroy(new Error('timeout'));
      }, timeoutMs);
      const onStop = () => req.destroy(new Error('stopped'));
      if (stop.aborted) onStop();
      else stop.addEventListener('abort', onStop, { once: true });
      req.on('error', fail);
      req.end(body);
    });
  }

  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}
