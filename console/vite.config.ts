import { defineConfig } from 'vite';
import { BUILD_STAMP, CONSOLE_ROOT, consoleSourcesHash } from './sources.ts';

/** `npm run build:console`: the console's assets, committed under console/dist and served by `crm serve`. */
export default defineConfig({
  root: CONSOLE_ROOT,
  // Assets live under /console/ so that no file name can shadow an API route; the page is served at /.
  base: '/console/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // Deterministic names and no source maps keep the committed build small and reviewable.
    sourcemap: false,
    reportCompressedSize: true,
  },
  plugins: [
    {
      name: 'crm-console-build-stamp',
      generateBundle() {
        this.emitFile({ type: 'asset', fileName: BUILD_STAMP, source: `${JSON.stringify({ sources: consoleSourcesHash() }, null, 2)}\n` });
      },
    },
  ],
});
