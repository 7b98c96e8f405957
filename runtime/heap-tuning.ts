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
 * An import sent with `POST /imports` runs here, so without it; `crm import` keeps pretenuring on and
 * sets the growth step of `tuneHeapForImport` instead.
 */
export const tuneHeapForServing = (): void => {
  v8.setFlagsFromString('--no-allocation-site-pretenuring');
};

/**
 * V8 settings for `crm import`, applied when it starts: the old generation may grow to 1.35 times what
 * the last full collection kept before the next one, where V8 otherwise lets it grow up to 4 times
 * while memory is plentiful. An import turns over old-generation garbage all the time (rows of the
 * batches in flight outlive young collections), so its resident memory followed the machine's free
 * memory rather than what it holds: 1,000,000 purchases peaked at 501 MB (9,260 rows/s); at 295-306 MB
 * with a step of 1.5 (bench/reference/2026-12-02T00-*-import-1m-*, and four runs on 2026-12-04); at
 * 284 and 289 MB with this one, alternating with 1.5 in one hour (9,154 and 9,276 rows/s against
 * 8,481 and 8,771). A step, not a ceiling: a file whose customers' states need more memory still gets
 * it, where a capped heap would stop the import. 1.2 times held 200,000 purchases about 10 MB lower
 * than 1.5 but imported them 10-45% slower.
 */
export const tuneHeapForImport = (): void => {
  v8.setFlagsFromString('--heap-growing-percent=35');
};
