#!/usr/bin/env node
// The `crm` command. The project has no build step: the TypeScript sources are compiled on first
// use and again whenever one changes (cli/compiled.js), then run as plain modules. Where they cannot
// be compiled (a read-only install), tsx's loader runs them directly, at about 66 MB more memory.
import { compiledEntry, keepInUse } from './compiled.js';
import { OPEN_FILE_LIMIT_ADVICE, OPEN_FILE_LIMIT_CODES } from './open-files.js';

try {
  const entry = await compiledEntry().catch(() => undefined);
  if (entry) {
    // Stack traces name the TypeScript sources, as they do through tsx.
    process.setSourceMapsEnabled(true);
    keepInUse(entry);
    await import(entry);
  } else {
    const { register } = await import('tsx/esm/api');
    register();
    await import('./main.ts');
  }
} catch (error) {
  // Under a low limit of open files (`ulimit -n 128`) the modules fail to load, before main.ts can say why.
  if (!OPEN_FILE_LIMIT_CODES.includes(error?.code)) throw error;
  process.stderr.write(`crm: ${error.code} ${error.syscall ?? ''} ${error.path ?? ''}`.replace(/ +/g, ' ').trim() + `: ${OPEN_FILE_LIMIT_ADVICE}.\n`);
  process.exitCode = 71; // EX_OSERR
}
