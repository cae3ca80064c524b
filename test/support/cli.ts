/**
 * The built `tally` command (dist/) as a child process: one-shot runs with their exit code and output,
 * and long-running ones (a worker) whose output is kept, awaited and which are stopped after the test.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { onTestFinished } from 'vitest';
import { waitFor } from './redis.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CLI = resolve(ROOT, 'dist/src/cli/main.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
}

export interface RunOptions {
  /** The command before `args`. @defaultValue `node dist/src/cli/main.js` */
  command?: readonly string[];
  /** Written to its stdin (then closed). @defaultValue nothing */
  input?: string;
}

/** Runs a command to its end in the repository root (default: the tally CLI), at most 3 minutes. */
export function run(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  options: RunOptions = {},
): Promise<RunResult> {
  assertBuilt();
  const [file, ...pre] = options.command ?? [process.execPath, CLI];
  return new Promise((done) => {
    const child = execFile(
      file as string,
      [...pre, ...args],
      { cwd: ROOT, env: { ...process.env, ...env }, timeout: 180_000 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : 1
          : 0;
        done({ code, stdout, stderr });
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}

export interface Running {
  readonly child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  /** Waits until the output matches. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then SIGKILL after 15 s; resolves to the exit code once it exited. Idempotent. */
  stop(): Promise<number | null>;
}

/** Starts a long-running command (default: the tally CLI); it is stopped when the current test ends. */
export function start(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  command: readonly string[] = [process.execPath, CLI],
): Running {
  assertBuilt();
  const [file, ...pre] = command;
  const child = spawn(file as string, [...pre, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout?.on('data', (b: Buffer) => (text += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (text += b.toString()));
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  let stopping: Promise<number | null> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        const code = await exited;
        clearTimeout(timer);
        return code;
      }
      return child.exitCode;
    })();
    return stopping;
  };
  onTestFinished(async () => {
    await stop();
  });
  return {
    child,
    output: () => text,
    waitForOutput: async (pattern, timeoutMs = 20_000) => {
      await waitFor(
        () =>
          pattern.test(text) ||
          (child.exitCode !== null ? Promise.reject(new Error(`exited ${child.exitCode}:\n${text}`)) : false),
        {
          timeoutMs,
          intervalMs: 100,
          message: `${pattern} in the output of ${args.join(' ')}; so far:\n${text}`,
        },
      );
    },
    stop,
  };
}
