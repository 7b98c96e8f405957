export { createEventStoreDbStore, type EventStoreDbOptions } from './store.ts';
export { parseConnectionString } from './connection.ts';
