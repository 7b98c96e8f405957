import { Redis } from 'ioredis';

/**
 * The Redis client of the shared rate-limit counters. Built so that Redis trouble never stalls a
 * request: no offline queue (a command while disconnected fails at once and the limiter lets the
 * request through uncounted), a short command timeout, and reconnection with a capped back-off.
 */
export const connectRedis = (url: string, log: (message: string) => void = () => undefined): Redis => {
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 500,
    connectTimeout: 2_000,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(200 * attempt, 5_000),
  });
  let reported = false;
  client.on('error', (error: Error) => {
    // Once per outage: the client keeps reconnecting by itself.
    if (!reported) log(`Redis at ${describeRedis(url)}: ${error.message}; requests pass the rate limit uncounted until it is back`);
    reported = true;
  });
  client.on('ready', () => {
    reported = false;
  });
  return client;
};

/** host:port of a Redis URL, never its password. */
export const describeRedis = (url: string): string => {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || '6379'}`;
  } catch {
    return 'REDIS_URL';
  }
};
