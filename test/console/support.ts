import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { poll, Server } from '../cli/support.ts';

/** Debian's Chromium (`apt-get install chromium`; `.ci/run` installs it where it is missing). */
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export const launchChromium = (): Promise<Browser> => chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS, timeout: 120_000 });
export const hasChromium = (): boolean => existsSync(CHROMIUM);

/** A real `crm serve` on PostgreSQL (its own schemas) with a small demo data set, ready to browse. */
export interface ConsoleServer {
  url: string;
  adminKey: string;
  schemas: TestSchemas;
  /** A key of the given role, created through the API as an admin would. */
  createKey(role: string): Promise<string>;
  api<T = Record<string, any>>(path: string, key?: string, init?: RequestInit): Promise<{ status: number; body: T }>;
  stop(): Promise<void>;
}

export const startConsoleServer = async (label: string, customers = 60): Promise<ConsoleServer> => {
  const schemas = testSchemas(label);
  const adminKey = `crm_${label}_admin_key_0123456789`;
  const server = new Server(tmpdir(), {
    DATABASE_URL: schemas.url,
    CRM_EVENTS_SCHEMA: schemas.events,
    CRM_READ_SCHEMA: schemas.read,
    CRM_REPORTING_SCHEMA: schemas.reporting,
    CRM_DEMO: '1',
    CRM_DEMO_CUSTOMERS: String(customers),
    CRM_ADMIN_KEY: adminKey,
    // The browser and the server share a loaded CI machine: commands are not refused for a slow event loop here (test/api/back-pressure.test.ts tests that bound).
    CRM_MAX_EVENT_LOOP_DELAY_MS: '0',
    PORT: '0',
    LOG_LEVEL: 'warn',
  });
  try {
    const [, url] = await server.waitFor(/API:\s+(http:\/\/\S+)/, 120_000, 'stderr');
    await server.waitFor(/Demo data loaded/, 240_000, 'stderr');
    const api = async <T>(path: string, key = adminKey, init: RequestInit = {}) => {
      const response = await fetch(`${url}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${key}`, ...(init.body ? { 'content-type': 'application/json' } : {}), ...(init.headers ?? {}) },
      });
      const text = await response.text();
      return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
    };
    // Caught up means every projection at the head: /ready alone also says ready while the read
    // models are behind by less than its lag bound (seconds), which on a loaded machine can be nothing applied yet.
    await poll(
      'the read models to catch up with the demo',
      async () => {
        const { body } = await api<{ status: string; head: string; projections: { position: string }[] }>('/ready');
        const atHead = body.projections.length > 0 && body.projections.every((p) => BigInt(p.position) >= BigInt(body.head));
        return body.status === 'ready' && atHead ? true : undefined;
      },
      240_000,
    );
    return {
      url: url!,
      adminKey,
      schemas,
      api,
      createKey: async (role) => {
        const created = await api<{ key: string }>('/admin/api-keys', adminKey, {
          method: 'POST',
          body: JSON.stringify({ name: `${role} in the browser`, role }),
        });
        if (created.status !== 201) throw new Error(`creating a ${role} key: ${created.status} ${JSON.stringify(created.body)}`);
        return created.body.key;
      },
      stop: async () => {
        await Promise.race([server.stop(), new Promise((r) => setTimeout(r, 20_000))]);
        server.kill();
        await schemas.dropSchemas();
      },
    };
  } catch (error) {
    server.kill();
    await schemas.dropSchemas();
    throw error;
  }
};

/**
 * Screenshots of the main screens: into `CONSOLE_SCREENSHOTS` when set (the README's are made with
 * `CONSOLE_SCREENSHOTS=docs/screenshots`), else into a temporary folder, so the code path always runs.
 */
const screenshotDir = process.env.CONSOLE_SCREENSHOTS ?? join(tmpdir(), 'crm-console-screenshots');
export const screenshot = async (page: Page, name: string): Promise<void> => {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage: false });
};

export const signIn = async (page: Page, url: string, key: string): Promise<void> => {
  await page.goto(`${url}/`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('role').waitFor();
};
