/**
 * The web console: its bundle size (raw and gzip, as served) and its page load in Debian's Chromium
 * against a real `crm serve` on PostgreSQL with demo data. Baseline in the same run: Swagger UI at
 * /docs, the other page the same process serves.
 *
 * Each load is a fresh browser context (empty cache, nothing shared), timed from navigation to:
 * - console sign-in: the sign-in form is visible;
 * - console customers: signed in (the session put in sessionStorage before the page runs), the
 *   first page of customers is in the table (so it includes the API call and its rendering);
 * - docs: Swagger UI has rendered its operations.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium, type Browser } from 'playwright-core';
import { CONSOLE_DIST } from '../../api/console.ts';
import { poll, Server } from '../../test/cli/support.ts';
import { CHROMIUM, CHROMIUM_FLAGS, hasChromium } from '../../test/console/support.ts';
import { percentile, ratio, round, type BenchContext } from '../report.ts';

const LOADS = 15;
const ADMIN_KEY = 'crm_bench_console_admin_key_0123456789';

const bundle = () => {
  const assets = readdirSync(join(CONSOLE_DIST, 'assets'));
  const sized = assets.map((name) => {
    const bytes = readFileSync(join(CONSOLE_DIST, 'assets', name));
    return { name, bytes: bytes.length, gzipBytes: gzipSync(bytes).length };
  });
  return {
    assets: sized,
    totalBytes: sized.reduce((s, a) => s + a.bytes, 0),
    totalGzipBytes: sized.reduce((s, a) => s + a.gzipBytes, 0),
  };
};

const timeLoads = async (browser: Browser, url: string, ready: string, session?: string) => {
  const ms: number[] = [];
  for (let i = 0; i < LOADS; i++) {
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    if (session) await context.addInitScript(`sessionStorage.setItem('crm.console.session', ${JSON.stringify(session)})`);
    const page = await context.newPage();
    const started = performance.now();
    await page.goto(url);
    await page.locator(ready).first().waitFor({ timeout: 60_000 });
    ms.push(performance.now() - started);
    await context.close();
  }
  return { loads: LOADS, medianMs: percentile(ms, 50), p90Ms: percentile(ms, 90), minMs: round(Math.min(...ms)) };
};

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const size = bundle();
  if (!hasChromium()) return { bundle: size, pageLoad: { skipped: `${CHROMIUM} is missing (apt-get install chromium)` } };
  const [events, read, reporting] = [
    await ctx.freshSchema('console_events'),
    await ctx.freshSchema('console_read'),
    await ctx.freshSchema('console_reporting'),
  ];
  const customers = Math.round(200 * ctx.scale);
  const server = new Server(process.cwd(), {
    DATABASE_URL: ctx.databaseUrl,
    CRM_EVENTS_SCHEMA: events,
    CRM_READ_SCHEMA: read,
    CRM_REPORTING_SCHEMA: reporting,
    CRM_DEMO: '1',
    CRM_DEMO_CUSTOMERS: String(customers),
    CRM_ADMIN_KEY: ADMIN_KEY,
    PORT: '0',
    LOG_LEVEL: 'warn',
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
  try {
    const [, url] = await server.waitFor(/API:\s+(http:\/\/\S+)/, 120_000);
    ctx.log(`console: loading ${customers} demo customers`);
    await server.waitFor(/Demo data loaded/, 600_000);
    await poll('the read models', async () => ((await (await fetch(`${url}/ready`)).json()) as { status: string }).status === 'ready' || undefined, 600_000);
    const session = JSON.stringify({ key: ADMIN_KEY, role: 'admin' });
    ctx.log('console: timing page loads');
    const signIn = await timeLoads(browser, `${url}/`, '#api-key');
    const customersPage = await timeLoads(browser, `${url}/#/customers`, 'table.grid tbody tr', session);
    const docs = await timeLoads(browser, `${url}/docs`, '.swagger-ui .opblock');
    return {
      bundle: size,
      demoCustomers: customers,
      pageLoad: {
        signIn,
        customers: customersPage,
        docsBaseline: docs,
        ratioSignInToDocs: ratio(signIn.medianMs, docs.medianMs),
        ratioCustomersToDocs: ratio(customersPage.medianMs, docs.medianMs),
      },
    };
  } finally {
    await browser.close();
    await Promise.race([server.stop(), new Promise((r) => setTimeout(r, 20_000))]);
    server.kill();
  }
}

export function summarize(result: Record<string, unknown>): string[] {
  const b = result.bundle as { totalBytes: number; totalGzipBytes: number };
  const p = result.pageLoad as { skipped?: string; signIn: { medianMs: number }; customers: { medianMs: number }; docsBaseline: { medianMs: number } };
  const size = `console bundle: ${(b.totalBytes / 1024).toFixed(1)} KiB, ${(b.totalGzipBytes / 1024).toFixed(1)} KiB gzip`;
  if (p.skipped) return [size, `page load skipped: ${p.skipped}`];
  return [
    size,
    `page load (median, cold cache): sign-in ${p.signIn.medianMs} ms, customers list ${p.customers.medianMs} ms, Swagger UI ${p.docsBaseline.medianMs} ms`,
  ];
}
