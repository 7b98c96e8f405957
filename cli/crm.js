#!/usr/bin/env node
// The `crm` command. The project runs its TypeScript sources directly (no build step): register
// tsx's ESM loader in this process, then load the real entry point.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
