/**
 * Throwaway `redis-server` processes for tests: each on its own free port, bound to 127.0.0.1, in its own
 * temp dir, no RDB snapshots, `maxmemory-policy noeviction` (BullMQ needs it).
 *
 * Every process is tracked in a module-level registry. `stopAllRedisServers()` stops them all; as a last
 * resort they are SIGKILLed on process 'exit' and on SIGINT/SIGTERM/SIGHUP (vitest ends its fork workers
 * with SIGTERM, which skips 'exit'). A process that is itself SIGKILLed cannot clean up: its servers stay.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface RedisServerOptions {
  /** Enable the append-only file, so data survives `kill()` + `restart()`. @defaultValue false */
  appendonly?: boolean;
  /** AOF fsync policy (only with `appendonly`). @defaultValue 'everysec' (Redis' default) */
  appendfsync?: 'always' | 'everysec';
  /** Start as a cluster node (`cluster-enabled yes`); the cluster bus port (port + 10000) must be free too. @defaultValue false */
  clusterEnabled?: boolean;
  /** Fixed port; no retry on another port if it is taken. @defaultValue a free port */
  port?: number;
  /** Data dir (kept on stop). @defaultValue a fresh temp dir, removed on stop */
  dir?: string;
  /** More `redis-server` arguments, e.g. `['--enable-debug-command', 'local']`. @defaultValue [] */
  extraArgs?: string[];
  /** How long to wait for the server to answer PING, per start. @defaultValue 15000 */
  startTimeoutMs?: number;
}

export interface RedisServerHandle {
  readonly host: string;
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Pid of the current (or, once it exited, the last) process; changes on `restart()`. */
  readonly pid: number;
  readonly dir: string;
  /** Graceful stop (SIGTERM, SIGKILL after 5 s), waits for exit, removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Sends a signal (default SIGKILL) and waits for exit (not for SIGSTOP/SIGTSTP/SIGCONT). Keeps the dir. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the process if it still runs, then starts it again on the same port and dir (AOF data survives). */
  restart(): Promise<void>;
}

const HOST = '127.0.0.1';
const CLUSTER_BUS_OFFSET = 10_000;
const GRACEFUL_STOP_MS = 5_000;
const LOG_TAIL_CHARS = 8_000;

interface ServerState {
  child: ChildProcess | undefined;
  /** Pid of the latest process, kept after it exits (never -1/0: process.kill(-1) would signal everything). */
  pid: number;
  exited: Promise<void> | undefined;
  readonly dir: string;
  readonly ownsDir: boolean;
  stopped: boolean;
}

const registry = new Set<ServerState>();
let exitHooksInstalled = false;

function killAllSync(): void {
  for (const state of registry) {
    const child = state.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    if (state.ownsDir) rmSync(state.dir, { recursive: true, force: true });
  }
  registry.clear();
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.once('exit', killAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Prepended so we run before others (whose `once` wrappers are still registered at that point): if
    // somebody else handles the signal, leave the exit to them; if not, re-raise it for the default exit.
    const onSignal = (): void => {
      killAllSync();
      if (process.listenerCount(signal) === 1) {
        process.off(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.prependListener(signal, onSignal);
  }
}

function findExecutable(name: string, envVar: string): string | undefined {
  const fromEnv = process.env[envVar];
  const candidates = fromEnv
    ? [fromEnv]
    : (process.env.PATH ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

/** Path of `redis-server` (`REDIS_SERVER_BIN` or PATH), if any. */
export function redisServerBinary(): string | undefined {
  return findExecutable('redis-server', 'REDIS_SERVER_BIN');
}

/** Path of `redis-cli` (`REDIS_CLI_BIN` or PATH), if any. */
export function redisCliBinary(): string | undefined {
  return findExecutable('redis-cli', 'REDIS_CLI_BIN');
}

export function hasRedisServerBinary(): boolean {
  return redisServerBinary() !== undefined;
}

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ port, host: HOST, exclusive: true }, () => {
      const address = srv.address();
      const bound = typeof address === 'object' && address ? address.port : port;
      srv.close(() => resolve(bound));
    });
  });
}

/** A port free on 127.0.0.1 right now (and port + 10000 too if `withBusPort`). Racy by nature: callers retry. */
export async function findFreePort(withBusPort = false): Promise<number> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const port = await listenOnce(0);
      if (!withBusPort) return port;
      if (port + CLUSTER_BUS_OFFSET > 65_535) continue;
      await listenOnce(port + CLUSTER_BUS_OFFSET);
      return port;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      lastError = err;
    }
  }
  throw new Error('findFreePort: no free port found after 100 attempts', { cause: lastError });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One probe: PING must answer +PONG (not -LOADING) and INFO's process_id must be `pid`, so a foreign
 * process on the same port is never mistaken for ours. Resolves false on any failure.
 */
function probe(port: number, pid: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let buf = '';
    let done = false;
    const socket = createConnection({ host: HOST, port });
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('close', () => finish(false));
    socket.once('connect', () => socket.write('PING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n'));
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buf += chunk;
      const firstEnd = buf.indexOf('\r\n');
      if (firstEnd < 0) return;
      if (buf.slice(0, firstEnd) !== '+PONG') return finish(false);
      const rest = buf.slice(firstEnd + 2);
      const headerEnd = rest.indexOf('\r\n');
      if (headerEnd < 0) return;
      if (!rest.startsWith('$')) return finish(false);
      const len = Number(rest.slice(1, headerEnd));
      const body = rest.slice(headerEnd + 2);
      if (body.length < len) return;
      finish(new RegExp(`^process_id:${pid}\\r?$`, 'm').test(body.slice(0, len)));
    });
  });
}

class AddressInUse extends Error {}

interface StartedProcess {
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
}

async function spawnAndWait(
  bin: string,
  args: string[],
  port: number,
  timeoutMs: number,
): Promise<StartedProcess> {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const onOutput = (chunk: Buffer): void => {
    log = (log + chunk.toString('utf8')).slice(-LOG_TAIL_CHARS);
  };
  child.stdout?.on('data', onOutput);
  child.stderr?.on('data', onOutput);
  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = `code=${code} signal=${signal}`;
      resolve();
    });
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const spawned = await Promise.race([
    new Promise<true>((resolve) => child.once('spawn', () => resolve(true))),
    spawnError,
  ]);
  if (spawned !== true) throw new Error(`cannot spawn ${bin}: ${spawned.message}`, { cause: spawned });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot spawn ${bin}: no pid`);

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exitInfo !== undefined) {
      if (/address already in use/i.test(log)) throw new AddressInUse(`port ${port} in use`);
      throw new Error(`redis-server on port ${port} exited during start-up (${exitInfo}):\n${log}`);
    }
    if (await probe(port, pid, 1_000)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms:\n${log}`);
    }
    await sleep(25);
  }
  // Do not keep the event loop alive for a forgotten server: the exit hooks kill it.
  child.unref();
  for (const stream of [child.stdout, child.stderr])
    (stream as unknown as { unref?: () => void } | null)?.unref?.();
  return { child, pid, exited };
}

function buildArgs(port: number, dir: string, opts: RedisServerOptions): string[] {
  // prettier-ignore
  const args = [
    '--port', String(port),
    '--bind', HOST,
    '--dir', dir,
    '--save', '',
    '--daemonize', 'no',
    '--maxmemory-policy', 'noeviction',
    '--appendonly', opts.appendonly ? 'yes' : 'no',
    '--appendfsync', opts.appendfsync ?? 'everysec',
  ];
  if (opts.clusterEnabled) {
    // nodes.conf lives in `dir`, so a restarted node keeps its id and slots.
    args.push(
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      'nodes.conf',
      '--cluster-node-timeout',
      '5000',
    );
  }
  args.push(...(opts.extraArgs ?? []));
  return args;
}

async function waitExit(
  state: ServerState,
  child: ChildProcess,
  exited: Promise<void>,
  ms: number,
): Promise<boolean> {
  child.ref(); // keep the loop alive while we wait for the exit event
  try {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const ok = await Promise.race([exited.then(() => true as const), timedOut]);
    clearTimeout(timer);
    return ok;
  } finally {
    child.unref();
    if (state.child === child && (child.exitCode !== null || child.signalCode !== null))
      state.child = undefined;
  }
}

/** Starts a `redis-server` and resolves once it answers PING. */
export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServerHandle> {
  const bin = redisServerBinary();
  if (!bin) throw new Error('startRedisServer: no redis-server binary on PATH (or REDIS_SERVER_BIN)');
  const timeoutMs = opts.startTimeoutMs ?? 15_000;
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'tally-redis-')));
  const state: ServerState = { child: undefined, pid: 0, exited: undefined, dir, ownsDir, stopped: false };
  registry.add(state);
  installExitHooks();

  let port = opts.port ?? 0;
  try {
    for (let attempt = 0; ; attempt++) {
      if (opts.port === undefined) port = await findFreePort(opts.clusterEnabled === true);
      try {
        const started = await spawnAndWait(bin, buildArgs(port, dir, opts), port, timeoutMs);
        state.child = started.child;
        state.pid = started.pid;
        state.exited = started.exited;
        break;
      } catch (err) {
        // Someone took the port between our probe and redis' bind: try another one.
        if (!(err instanceof AddressInUse) || opts.port !== undefined || attempt >= 20) throw err;
      }
    }
  } catch (err) {
    registry.delete(state);
    if (ownsDir) await rm(dir, { recursive: true, force: true });
    throw err;
  }

  let stopping: Promise<void> | undefined;

  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const { child, exited } = state;
    if (!child || !exited || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    if (signal === 'SIGSTOP' || signal === 'SIGTSTP' || signal === 'SIGCONT') return;
    await waitExit(state, child, exited, 30_000);
  };

  const terminate = async (): Promise<void> => {
    const { child, exited } = state;
    if (!child || !exited || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGCONT'); // in case a test froze it
    child.kill('SIGTERM'); // Redis shuts down gracefully on SIGTERM (flushes the AOF, no RDB since save '')
    if (!(await waitExit(state, child, exited, GRACEFUL_STOP_MS))) {
      child.kill('SIGKILL');
      await waitExit(state, child, exited, 30_000);
    }
  };

  const handle: RedisServerHandle = {
    host: HOST,
    port,
    url: `redis://${HOST}:${port}`,
    get pid(): number {
      return state.pid;
    },
    dir,
    kill,
    stop(): Promise<void> {
      stopping ??= (async () => {
        state.stopped = true;
        await terminate();
        registry.delete(state);
        if (ownsDir) await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
    async restart(): Promise<void> {
      if (state.stopped)
        throw new Error(`restart: redis-server on port ${port} was stopped (its dir is gone)`);
      await terminate();
      // The port was ours a moment ago; if a stranger grabbed it in between, wait a little for it.
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        try {
          const started = await spawnAndWait(bin, buildArgs(port, dir, opts), port, timeoutMs);
          state.child = started.child;
          state.pid = started.pid;
          state.exited = started.exited;
          return;
        } catch (err) {
          if (!(err instanceof AddressInUse) || Date.now() > deadline) throw err;
          await sleep(100);
        }
      }
    },
  };
  return handle;
}

/** Stops every server this process started (and removes their temp dirs). */
export async function stopAllRedisServers(): Promise<void> {
  // Handles are not kept in the registry, only their state: stop through the same path as SIGKILL + rm.
  const states = [...registry];
  registry.clear();
  await Promise.all(
    states.map(async (state) => {
      state.stopped = true;
      const { child, exited } = state;
      if (child && exited && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await waitExit(state, child, exited, 30_000);
      }
      if (state.ownsDir) await rm(state.dir, { recursive: true, force: true });
    }),
  );
}
