/**
 * Child processes of the benchmark. Every child is registered and SIGKILLed when the bench process
 * exits (normally, by an uncaught error, or by a signal), and each child exits by itself when its IPC
 * channel to the parent closes, so nothing outlives a crashed or killed run.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const children = new Set<ChildProcess>();
let installed = false;

function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
}

/** Installs the exit/signal handlers once; `onSignal` runs async cleanup (redis-server) before exiting. */
export function installCleanup(onSignal: () => Promise<void>): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      console.error(`\nbench: ${signal}, stopping children and redis-server`);
      killAll();
      void onSignal().finally(() => process.exit(130));
    });
  }
}

/** A message a bench child sends to the parent: `{ type, ...payload }`. */
export interface ChildMessage {
  readonly type: string;
  readonly [key: string]: unknown;
}

/** A forked bench child (a compiled bench/*.js module) with request/response over IPC. */
export class Child {
  readonly process: ChildProcess;
  private readonly inbox: ChildMessage[] = [];
  private readonly waiters: {
    type: string;
    resolve: (m: ChildMessage) => void;
    reject: (e: Error) => void;
  }[] = [];
  private exited = false;
  readonly exit: Promise<number | null>;
  private stderr = '';

  constructor(
    module: string,
    args: readonly string[],
    options: { execArgv?: string[]; env?: NodeJS.ProcessEnv } = {},
  ) {
    const path = fileURLToPath(new URL(`./${module}.js`, import.meta.url));
    this.process = fork(path, [...args], {
      execArgv: options.execArgv ?? [],
      env: { ...process.env, LOG_LEVEL: 'warn', ...options.env },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    children.add(this.process);
    this.process.stderr?.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
    this.process.on('message', (m: ChildMessage) => {
      const i = this.waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]?.resolve(m);
      else this.inbox.push(m);
    });
    this.exit = new Promise((resolve) => {
      this.process.once('exit', (code) => {
        this.exited = true;
        children.delete(this.process);
        for (const w of this.waiters.splice(0)) {
          w.reject(
            new Error(
              `${module} exited (code ${code}) before sending '${w.type}'. stderr: ${this.stderr.trim()}`,
            ),
          );
        }
        resolve(code);
      });
    });
  }

  get pid(): number {
    return this.process.pid ?? -1;
  }

  /** The next message of this type (already received or still to come). */
  receive<T extends ChildMessage = ChildMessage>(type: string, timeoutMs = 600_000): Promise<T> {
    const i = this.inbox.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0] as T);
    if (this.exited)
      return Promise.reject(new Error(`child exited before sending '${type}': ${this.stderr.trim()}`));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for '${type}' from child ${this.pid}`)),
        timeoutMs,
      );
      this.waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  send(message: ChildMessage): void {
    if (!this.exited && this.process.connected) this.process.send(message);
  }

  /** Sends `request` and waits for the reply of type `replyType`. */
  request<T extends ChildMessage = ChildMessage>(
    request: ChildMessage,
    replyType: string,
    timeoutMs?: number,
  ): Promise<T> {
    const reply = this.receive<T>(replyType, timeoutMs);
    this.send(request);
    return reply;
  }

  /** Kills the child (SIGKILL) if it still runs and waits for its exit. */
  async kill(): Promise<void> {
    if (!this.exited) this.process.kill('SIGKILL');
    await this.exit;
  }
}

/**
 * Child side: exit when the parent goes away (its IPC channel closes), and a typed `send`.
 * Call once at the top of every child module.
 */
export function childSide(): { send: (m: ChildMessage) => void } {
  process.on('disconnect', () => process.exit(1));
  return {
    send: (m) => {
      if (process.connected) process.send?.(m);
    },
  };
}
