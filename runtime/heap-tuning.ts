import v8 from 'node:v8';

/**
 * V8 settings for a process that serves HTTP (`crm serve`), applied when it starts.
 *
 * Allocation-site pretenuring is off. V8 allocates objects directly in the old generation once
 * objects from the same allocation site have mostly survived a young-generation collection. In a
 * server that happens under a burst (requests in flight during a collection), and the decision
 * sticks: from then on every request's objects (the request, the reply, their header strings) were
 * created in the old generation and freed only by full collections, and young objects they pointed
 * to survived with them. Measured on `GET /bench/noop` at 500 requests/s: 3.4 MB promoted a second
 * and 12-20 ms scavenges with it on; nothing promoted and 2 ms scavenges with it off. At the purchase
 * maximum the API process spent 11% and 26% less CPU per purchase (two alternating bench pairs).
 *
 * Batch work keeps V8's default: a bulk import holds each batch's rows across collections, which is
 * what pretenuring is for (the in-process import bench ran slower with the flag, docs/TOOLCHAIN-NOTES.md).
 * An import sent with `POST /imports` runs here, so without it; `crm import` keeps the default.
 */
export const tuneHeapForServing = (): void => {
  v8.setFlagsFromString('--no-allocation-site-pretenuring');
};
