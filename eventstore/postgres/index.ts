export { connectPostgres, holdSessionLock, openPglite, type SqlDatabase } from './database.ts';
export { createPostgresEventStore, type PostgresEventStoreOptions } from './store.ts';
export { verifyStreamChains, type ChainVerification } from './chain.ts';
export { assertStoreNotNewer, migrateEventStore, ORDINAL_BITS } from './migrations.ts';
