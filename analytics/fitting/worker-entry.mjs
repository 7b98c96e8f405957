// The fitting thread's entry: plain JavaScript, so that it starts in any process, then the
// TypeScript worker through tsx's loader, registered in this thread.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
