import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { eventually } from './support.ts';

/**
 * A NATS server of a test's own, on a free port: the publisher's stream takes every `crm.>` subject,
 * which only one stream per server may take, so tests that run the publisher cannot share a server.
 */

/** Debian's package path, or the first on PATH (.ci/run installs the package where it is missing). */
export const NATS_BIN = ['/usr/sbin/nats-server', ...(process.env.PATH ?? '').split(':').map((dir) => join(dir, 'nats-server'))].find((path) =>
  existsSync(path),
);

/** A port nothing listens on right now. */
export const freePort = async (): Promise<number> => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
};

export interface NatsServer {
  port: number;
  url: string;
  stop(): Promise<void>;
}

/** Starts `nats-server` with JetStream (storage in a folder of its own, removed on stop) and waits until it listens. */
export const startNatsServer = async (port?: number): Promise<NatsServer> => {
  if (!NATS_BIN) throw new Error('no nats-server binary');
  const listenOn = port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'crm-nats-'));
  const child: ChildProcess = spawn(NATS_BIN, ['-a', '127.0.0.1', '-p', String(listenOn), '-js', '-sd', dir], { stdio: 'ignore' });
  const url = `nats://127.0.0.1:${listenOn}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await eventually(
      async () => {
        const nc = await connect({ servers: url, timeout: 500 }).catch(() => undefined);
        await nc?.close();
        return nc !== undefined;
      },
      10_000,
      () => `nats-server on ${listenOn} did not start`,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { port: listenOn, url, stop };
};
