import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCrm, schemaEnv } from '../cli/support.ts';
import { customerRegistered, forgeChains, openAuditHarness, sealAll, type AuditHarness } from './support.ts';

/**
 * `crm verify --chain` with anchors: the global chain's head kept outside the database, the way an
 * auditor runs it (a file on another machine, checked and extended on every run).
 */
vi.setConfig({ testTimeout: 120_000 });
const folder = mkdtempSync(join(tmpdir(), 'crm-anchors-'));
let h: AuditHarness;
const ada = `customer-${randomUUID()}`;
const crm = (args: string[]) => runCrm(args, { cwd: folder, env: schemaEnv(h.schemas), timeoutMs: 120_000 });
const anchorLines = () => readFileSync(join(folder, 'anchors.txt'), 'utf8').trim().split('\n');

beforeAll(async () => {
  h = await openAuditHarness('cli_anchors');
  const customerId = ada.slice('customer-'.length);
  await h.record(ada, 'CustomerRegistered', customerRegistered(customerId));
  await h.record(ada, 'PurchaseRecorded', { customerId, orderId: 'o-1', amount: 10, currency: 'EUR' });
  await h.record(ada, 'PurchaseRecorded', { customerId, orderId: 'o-2', amount: 20, currency: 'EUR' });
  expect(await sealAll(h)).toBe(3);
}, 120_000);

afterAll(async () => {
  await h?.close();
  rmSync(folder, { recursive: true, force: true });
});

describe('crm verify --chain with anchors', () => {
  it('prints the head, starts and extends an anchors file, and checks every anchor in it', async () => {
    const first = await crm(['verify', '--chain', '--anchors-file', 'anchors.txt']);
    expect(first.code, first.stderr).toBe(0);
    const head = /Global chain head: (\d+:[0-9a-f]{64})/.exec(first.stdout)?.[1];
    expect(head).toBeDefined();
    expect(anchorLines()).toEqual([expect.stringMatching(new RegExp(`^${head} \\d{4}-`))]);
    const second = await crm(['verify', '--chain', '--anchors-file', 'anchors.txt', '--anchor', head!]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('Anchors: 2 of 2 match the chain as it stands.');
    expect(anchorLines()).toHaveLength(2);
  });

  it('catches an event altered with both chains re-hashed, and adds no anchor to the file', async () => {
    await forgeChains(h.database.db, h.schemas.events, ada, 1);
    // Without an anchor the forgery verifies: exactly the gap anchors close.
    expect((await crm(['verify', '--chain'])).code).toBe(0);
    const caught = await crm(['verify', '--chain', '--anchors-file', 'anchors.txt']);
    expect(caught.code).toBe(1);
    expect(caught.stdout).toContain('differs from the anchor kept outside the database');
    expect(caught.stdout).toContain('Next steps:');
    // The progress line does not call a walk that stopped at a broken link done.
    expect(caught.stderr).toMatch(/^verify --chain stopped: .* at the first broken link$/m);
    expect(caught.stderr).not.toMatch(/^verify --chain done:/m);
    expect(anchorLines()).toHaveLength(2);
  });

  it('refuses an anchors file it cannot write before the walk (exit 2), not after it with a stack (exit 1, the code of a broken chain)', async () => {
    const unwritable = await crm(['verify', '--chain', '--anchors-file', join('missing-folder', 'anchors.txt')]);
    expect(unwritable.code).toBe(2);
    expect(unwritable.stderr).toContain('cannot write missing-folder/anchors.txt');
    expect(unwritable.stdout).not.toContain('Hash chains intact');
    expect(unwritable.stderr).not.toContain('unexpected error');
  });

  it('refuses a malformed anchor, and anchors without --chain, before opening anything', async () => {
    const malformed = await crm(['verify', '--chain', '--anchor', '12:abc']);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('"12:abc" is not an anchor');
    const withoutChain = await crm(['verify', '--anchor', `1:${'a'.repeat(64)}`]);
    expect(withoutChain.code).toBe(2);
    expect(withoutChain.stderr).toContain('--anchor and --anchors-file go with --chain');
  });
});
