import { intValue, type CliCommand, type OptionWithHelp } from '../command.ts';
import { demoPlan, demoState, loadDemo } from '../demo.ts';
import { summarizePlan } from '../demo-data.ts';
import { createProgress } from '../progress.ts';

const options: Record<string, OptionWithHelp> = {
  seed: { type: 'string', description: 'seed of the data set (default CRM_DEMO_SEED or 42)' },
  customers: { type: 'string', description: 'number of customers (default CRM_DEMO_CUSTOMERS or 1000)' },
  'dry-run': { type: 'boolean', description: 'print what the plan holds, record nothing' },
};

export const demoCommand: CliCommand = {
  name: 'demo',
  maxArguments: 0,
  summary: 'Load a realistic, deterministic demo data set through the command handlers',
  usage: 'demo [--seed <n>] [--customers <n>] [--dry-run]',
  details: `
About 1,000 customers with two years of purchases (busier in November and December), refunds,
deals moving through the pipeline, campaigns with responses and feedback tickets, some answered
after their SLA deadline. Every command goes through the same handlers as the API, with business
times in the past. The same seed always gives the same data, and every command carries a stable
idempotency key: running it again (for example after Ctrl-C) appends nothing twice.`,
  database: { kind: 'rerunnable', note: 'every demo command has a stable idempotency key, so nothing is recorded twice' },
  options,
  async run(run) {
    const seed = intValue(run, 'seed', run.config.demo.seed, 0, 2 ** 31 - 1);
    const customers = intValue(run, 'customers', run.config.demo.customers, 1, 1_000_000);
    const plan = demoPlan({ seed, customers, until: run.config.demo.until });
    if (run.values['dry-run']) {
      run.out(`Demo plan for seed ${seed}: ${plan.length} commands`);
      for (const [type, count] of Object.entries(summarizePlan(plan)).sort((a, b) => b[1] - a[1])) run.out(`  ${type.padEnd(24)} ${count}`);
      return 0;
    }
    const { openCrm } = await import('../../runtime/crm.ts');
    const runtime = await openCrm(run.config);
    try {
      if ((await demoState(runtime.store, plan, { seed, customers })) === 'another') {
        run.err(
          `crm demo: the store already holds the demo data set of seed ${seed} for another number of customers; ` +
            'the two share ids, so this one would collide with it. Load it into an empty store (another CRM_DATA_DIR or database), or choose another --seed.',
        );
        return 1;
      }
      const progress = createProgress({ label: 'demo', total: plan.length, unit: 'commands' });
      const result = await loadDemo(runtime.commands, plan, { progress, signal: run.signal });
      const refused = Object.entries(result.refused);
      progress.done(
        refused.length ? `refused by the rules: ${refused.map(([c, n]) => `${c} x${n}`).join(', ')}` : undefined,
        result.interrupted ? 'stopped' : 'done',
      );
      if (result.interrupted) {
        run.err('Interrupted: run the same command again to finish (nothing is recorded twice).');
        return 130;
      }
      run.out(`Demo data for seed ${seed} is in (${result.executed} commands).`);
      return 0;
    } finally {
      await runtime.close();
    }
  },
};
