import type { CliCommand } from '../command.ts';

export const projectCommand: CliCommand = {
  name: 'project',
  summary: 'Run only the projections (a worker beside API processes started with CRM_PROJECTIONS=off)',
  usage: 'project',
  details: `
Follows the event store's global feed from each projection's checkpoint and keeps the read models
in PostgreSQL current. Each batch commits with its checkpoint, so stopping it (Ctrl-C) or a crash
at any point loses nothing and applies nothing twice: start it again and it resumes.`,
  options: {},
  async run(run) {
    const { openCrm } = await import('../app.ts');
    const runtime = await openCrm(run.config, { holdSetUpLock: true });
    try {
      await runtime.startProjections();
      await runtime.setUpDone();
      run.err('Projections are running. Press Ctrl-C to stop.');
      await new Promise<void>((resolve) => run.signal.addEventListener('abort', () => resolve(), { once: true }));
      return 0;
    } finally {
      await runtime.close();
    }
  },
};
