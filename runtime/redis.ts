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
  // At start only, once: from its first answer on, the rate limiter's RedisHealth (api/shared-counters.ts)
  // follows the connection and logs each switch and its end. The listener stays (the client keeps
  // reconnecting by itself, and ioredis prints every unhandled error).
  let quiet = false;
  client.on('error', (error: Error) => {
    if (!quiet) log(`Redis at ${loggableUrl(url)}: ${error.message}; rate limits are counted in this process until it answers`);
    quiet = true;
  });
  client.once('ready', () => (quiet = true));
  return client;
};
