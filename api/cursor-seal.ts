import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { validationProblem } from './problems.ts';

/**
 * List cursors as clients see them: opaque and tamper-proof. The read-model queries page by a keyset
 * position (the last row's sort value and key, e.g. a lower-cased name); the API seals it with
 * AES-256-GCM under a key derived from the server secret (shared by every replica of one database,
 * api/auth/server-secret.ts), bound to the list and sort it was issued for. So a client can neither
 * read a masked name out of a cursor nor forge or edit one (any change fails authentication: a 400),
 * and a cursor of one sort cannot be replayed on another whose sort value has a different SQL type.
 *
 * Token: base64url(version 1 byte | IV 12 bytes | GCM tag 16 bytes | ciphertext).
 */
export interface CursorSeal {
  /** The opaque `nextCursor` for a keyset position of `scope` (list and sort). */
  seal(position: string, scope: string): string;
  /** The keyset position back; a 400 problem naming `cursor` for anything this server did not issue for `scope`. */
  open(token: string, scope: string): string;
}

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + IV_BYTES + TAG_BYTES;
/** A sealed cursor is at most this long (a 200-character name in 4-byte UTF-8 seals to ~1.1k). */
export const MAX_CURSOR_LENGTH = 2048;

const notOurs = () =>
  validationProblem(
    [{ field: 'cursor', message: 'not a cursor this list returned for this sort; start again without a cursor' }],
    'The cursor is not one this list returned (it was edited, belongs to another list or sort, or the server secret changed).',
  );

export const createCursorSeal = (secret: Buffer): CursorSeal => {
  if (secret.length < 32) throw new Error('The cursor secret must be at least 32 bytes.');
  const key = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'crm list cursor v1', 32));
  return {
    seal(position, scope) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(scope, 'utf8'));
      const body = Buffer.concat([cipher.update(position, 'utf8'), cipher.final()]);
      return Buffer.concat([Buffer.of(VERSION), iv, cipher.getAuthTag(), body]).toString('base64url');
    },
    open(token, scope) {
      if (token.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(token)) throw notOurs();
      const bytes = Buffer.from(token, 'base64url');
      // Canonical encoding only: base64 ignores the spare bits of the last character, an edit all the same.
      if (bytes.length <= HEADER_BYTES || bytes[0] !== VERSION || bytes.toString('base64url') !== token) throw notOurs();
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(1, 1 + IV_BYTES));
        decipher.setAuthTag(bytes.subarray(1 + IV_BYTES, HEADER_BYTES));
        decipher.setAAD(Buffer.from(scope, 'utf8'));
        return Buffer.concat([decipher.update(bytes.subarray(HEADER_BYTES)), decipher.final()]).toString('utf8');
      } catch {
        throw notOurs();
      }
    },
  };
};
