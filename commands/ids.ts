import { createHash } from 'node:crypto';

/** Namespace of the CRM's name-based ids (a fixed random UUID). */
const NAMESPACE = Buffer.from('6f1c2a5e8b3d4f7a9c0e1b2d3f4a5b6c', 'hex');

/**
 * RFC 4122 version-5 UUID of `name`: the same name always gives the same id. Event ids derived from
 * (stream, idempotency key, index) make a retried command find its first result.
 */
export const uuidV5 = (name: string): string => {
  const hash = createHash('sha1').update(NAMESPACE).update(name, 'utf8').digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
};

export const eventIdFor = (stream: string, idempotencyKey: string, index: number): string => uuidV5(`event\n${stream}\n${idempotencyKey}\n${index}`);

/** Id of an aggregate created by a command that carried no id: stable across retries of the same key. */
export const createdIdFor = (commandType: string, idempotencyKey: string): string => uuidV5(`create\n${commandType}\n${idempotencyKey}`);

const canonical = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  return value;
};

/** SHA-256 of the command's canonical JSON (keys sorted): equal for a retry, different for another request. */
export const commandHash = (command: unknown): string =>
  createHash('sha256')
    .update(JSON.stringify(canonical(command)))
    .digest('base64url');
