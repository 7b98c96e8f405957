import {
  EventStoreDBClient,
  type AllStreamResolvedEvent,
  type AppendExpectedRevision,
  type AppendResult as ClientAppendResult,
  type Credentials,
  type EventData,
  type Filter,
  type Position,
  type ReadRevision,
  type ResolvedEvent,
} from '@eventstore/db-client';
import { EventStoreUnavailable } from '../errors.ts';

/**
 * The part of `@eventstore/db-client` the engine uses, as a port: the store is written against it,
 * production wraps the real client (`connectEventStoreDbClient`), and the adapter's own logic is
 * tested against a recorded double of the client's behaviour (test/eventstore/eventstoredb-double.ts).
 */

type Direction = 'forwards' | 'backwards';

export interface ClientReadStreamOptions {
  direction: Direction;
  fromRevision: ReadRevision;
  maxCount?: number;
}

export interface ClientReadAllOptions {
  direction: Direction;
  fromPosition: Position | 'start' | 'end';
  maxCount?: number;
}

export interface ClientSubscribeOptions {
  fromPosition: Position | 'start';
  filter: Filter;
}

/** A finite read: iterate it, cancel it when done early. */
export interface ClientRead<E> extends AsyncIterable<E> {
  cancel(): Promise<void>;
}

/**
 * A catch-up subscription as the client hands it out: a Node readable in object mode. The engine
 * pulls from it (`read()` on `'readable'`) instead of listening to `'data'`, so a slow consumer
 * leaves events in the client's bounded buffer and gRPC flow control holds the server back.
 */
export interface ClientSubscription {
  on(event: 'readable' | 'end' | 'close' | 'caughtUp' | 'fellBehind', listener: () => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  read(): AllStreamResolvedEvent | null;
  unsubscribe(): Promise<void>;
}

export interface ClientAppendOptions {
  expectedRevision: AppendExpectedRevision;
  /** Passed on every append: the client then uses the classic append RPC (see `connectEventStoreDbClient`). */
  credentials: Credentials;
}

export interface EventStoreDbClientPort {
  appendToStream(stream: string, events: EventData[], options: ClientAppendOptions): Promise<ClientAppendResult>;
  readStream(stream: string, options: ClientReadStreamOptions): ClientRead<ResolvedEvent>;
  readAll(options: ClientReadAllOptions): ClientRead<AllStreamResolvedEvent>;
  subscribeToAll(options: ClientSubscribeOptions): ClientSubscription;
  /** The server's version as it reports it (`"24.10.0.0"`), or `"unknown"` when it cannot say. */
  serverVersion(): Promise<string>;
  dispose(): Promise<void>;
}

/**
 * The real client behind the port, given the connection string as `parseConnectionString` (connection.ts) rewrote
 * it. The client's parse error keeps the whole string in a property (`connectionString`): it is
 * reported without it.
 */
export function connectEventStoreDbClient(connectionString: string): EventStoreDBClient & EventStoreDbClientPort {
  let client: EventStoreDBClient & EventStoreDbClientPort;
  try {
    client = EventStoreDBClient.connectionString(connectionString) as EventStoreDBClient & EventStoreDbClientPort;
  } catch (error) {
    // No cause: the client's parse error holds the whole connection string, password included.
    throw new EventStoreUnavailable(`EVENTSTORE_URL is not a valid connection string for the EventStoreDB client: ${(error as Error).message}`);
  }
  // The version comes from the client's own server-features call (made once per connection);
  // the accessor is protected in its typings, so it is reached through a narrow cast here only.
  client.serverVersion = async () => (await (client as unknown as { capabilities: Promise<{ serverVersion: string }> }).capabilities).serverVersion;
  return client;
}
