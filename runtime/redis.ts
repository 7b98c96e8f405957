import { Redis } from 'ioredis';
import { loggableUrl } from '../shared/loggable-url.ts';

/**
 * The Redis client of the shared rate-limit counters. Built so that Redis trouble never stalls a
 * request: no offline queue (a command while disconnected fails at once and the limiter counts in
 * this process instead), a short command timeout (a Redis that stops answering costs the requests in
 * flight at most that, then none: api/shared-counters.ts), and reconnection with a capped back-off.
 */
export const connectRedis = (url: string, log: (message: string) => void = () => undefined): Redis => {
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 250,
    connectTimeout: 2_000,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(200 * attempt, 5_000),
  });
  let reported = false;
  client.on('error', (error: Error) => {
    // Once per outage: the client keeps reconnecting by itself.
    if (!reported) log(`Redis at ${loggableUrl(url)}: ${error.message}; rate limits are counted in this process until it is back`);
    reported = true;
  });
  client.on('ready', () => {
    reported = false;
  });
  return client;
};
