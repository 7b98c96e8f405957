export { createEventStoreDbStore, type EventStoreDbOptions } from './store.ts';
