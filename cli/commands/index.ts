import type { CliCommand } from '../command.ts';
import { apiKeyCommand } from './api-key.ts';
import { claimEmailsCommand } from './claim-emails.ts';
import { demoCommand } from './demo.ts';
import { exportCommand } from './export.ts';
import { fitCommand } from './fit.ts';
import { importCommand } from './import.ts';
import { importRatesCommand } from './import-rates.ts';
import { masterKeyCommand } from './master-key.ts';
import { moveStoreCommand } from './move-store.ts';
import { projectCommand } from './project.ts';
import { purgeErasedCommand } from './purge-erased.ts';
import { publishCommand } from './publish.ts';
import { projectionsCommand } from './projections.ts';
import { rebuildCommand } from './rebuild.ts';
import { reportingRoleCommand } from './reporting-role.ts';
import { replayCommand } from './replay.ts';
import { serveCommand } from './serve.ts';
import { verifyCommand } from './verify.ts';
import { webhooksCommand } from './webhooks.ts';

/** Every `crm` subcommand, in the order `crm --help` lists them. */
export const commands: readonly CliCommand[] = [
  serveCommand,
  projectCommand,
  projectionsCommand,
  rebuildCommand,
  replayCommand,
  verifyCommand,
  importCommand,
  importRatesCommand,
  exportCommand,
  moveStoreCommand,
  claimEmailsCommand,
  purgeErasedCommand,
  demoCommand,
  fitCommand,
  apiKeyCommand,
  masterKeyCommand,
  webhooksCommand,
  publishCommand,
  reportingRoleCommand,
];
