import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { toUnavailable } from '../../eventstore/postgres/database.ts';
import { startApi } from './support.ts';

/** A pino stream keeping each JSON line. */
const linesOf = () => {
  const lines: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(...chunk.toString().split('\n').filter(Boolean)), done()) });
  return { lines, stream };
};

/** What a read meets while PostgreSQL refuses connections: the driver's error, wrapped as the pool wraps it. */
const refused = () => {
  const driver = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  return toUnavailable(driver, 'postgres://crm:secret@db.internal:5432/crm');
};

describe('requests refused while the database is away', () => {
  it('log one short line each at warn, with no stack trace (the stack at debug only)', async () => {
    const { lines, stream } = linesOf();
    const h = await startApi('refusal_log_warn', { logger: { level: 'warn', stream } });
    try {
      h.deps.queries.listCustomers = async () => {
        throw refused();
      };
      const requests = 20;
      for (let i = 0; i < requests; i++) {
        const read = await h.app.inject({ method: 'GET', url: '/customers', headers: h.auth('admin') });
        expect(read.statusCode).toBe(503);
      }
      // N refusals, no stack trace among them (each wrote two: the error's and its cause's).
      expect(lines.join('\n')).not.toContain('"stack"');
      const refusals = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.problem === 'unavailable');
      expect(refusals).toHaveLength(requests);
      for (const entry of refusals) {
        expect(entry.level).toBe(40);
        expect(entry).not.toHaveProperty('err');
        // What to check is still there: the server (without its password) and the driver's reason.
        expect(entry.error).toMatch(/Cannot reach PostgreSQL at postgres:\/\/db\.internal:5432\/crm \(ECONNREFUSED/);
      }
      expect(lines.join('\n')).not.toContain('secret');
      // 20 refusals wrote about 60 KB with two stacks each.
      for (const line of lines) expect(line.length).toBeLessThan(1_000);
    } finally {
      await h.close();
    }
  });

  it('keep the stack at debug, for whoever turns it on', async () => {
    const { lines, stream } = linesOf();
    const h = await startApi('refusal_log_debug', { logger: { level: 'debug', stream } });
    try {
      h.deps.queries.listCustomers = async () => {
        throw refused();
      };
      const read = await h.app.inject({ method: 'GET', url: '/customers', headers: h.auth('admin') });
      expect(read.statusCode).toBe(503);
      const withStack = lines.map((line) => JSON.parse(line) as { level: number; err?: { stack?: string } }).filter((entry) => entry.err?.stack);
      expect(withStack).toHaveLength(1);
      expect(withStack[0]!.level).toBe(20);
    } finally {
      await h.close();
    }
  });
});
