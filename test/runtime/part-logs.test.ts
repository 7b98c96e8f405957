import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createProcessLogger } from '../../api/logger.ts';
import { openCrm } from '../../runtime/crm.ts';
import { testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';

const schemas = testSchemas('part_logs');
afterAll(() => schemas.dropSchemas());

interface Line {
  level: number;
  time: number;
  msg: string;
  part?: string;
  [field: string]: unknown;
}

/**
 * The parts of `crm serve` and `crm project` (projections, publishers, chain sealer) log through the
 * process's one logger: JSON lines with level, time, msg and the part's name, under LOG_LEVEL. They
 * wrote plain text to stderr, at every level but silent.
 */
const startedWith = async (level: string): Promise<Line[]> => {
  const lines: Line[] = [];
  const stream = new Writable({
    write: (chunk: Buffer, _encoding, done) => (
      lines.push(
        ...chunk
          .toString()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Line),
      ),
      done()
    ),
  });
  const config = testConfig(schemas, { LOG_LEVEL: level });
  const crm = await openCrm(config, { logger: createProcessLogger(config.logLevel, stream), overrides: { publishers: false, chainSealer: false } });
  try {
    await crm.startProjections();
    await new Promise((resolve) => setTimeout(resolve, 100));
  } finally {
    await crm.close();
  }
  return lines;
};

describe('the runtime parts logging through the process logger', () => {
  it("writes a part's line as one JSON object with level, time, msg, part and its fields", async () => {
    const lines = await startedWith('info');
    const changed = lines.find((l) => l.msg === 'projection leases changed');
    expect(changed).toMatchObject({ level: 30, part: 'projections', time: expect.any(Number), acquired: expect.arrayContaining(['customers']) });
  });

  it('honours LOG_LEVEL: at error, no info line of the parts, on the logger or on stderr', async () => {
    const stderr: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = (chunk: string | Uint8Array, ...rest: never[]) => (stderr.push(String(chunk)), write(chunk, ...rest));
    let lines: Line[];
    try {
      lines = await startedWith('error');
    } finally {
      process.stderr.write = write;
    }
    expect(lines.filter((l) => l.level < 50)).toEqual([]);
    expect(stderr.join('')).not.toContain('projection leases changed');
  });
});
