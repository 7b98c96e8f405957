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
    // A database index this Redis lacks fails the SELECT, then ioredis carries on in database 0: the
    // counters went there, shared with whatever else uses it, while the log said they were this process's.
    if (/DB index is out of range|invalid DB index/i.test(error.message)) {
      log(
        `Redis at ${loggableUrl(url)}: ${error.message}; rate limits are counted in this process: set REDIS_URL to a database this Redis has (0 to 15 by default) and restart`,
      );
      quiet = true;
      client.disconnect();
      return;
    }
    if (!quiet) log(`Redis at ${loggableUrl(url)}: ${error.message}; rate limits are counted in this process until it answers`);
    quiet = true;
  });
  client.once('ready', () => (quiet = true));
  return client;
};
