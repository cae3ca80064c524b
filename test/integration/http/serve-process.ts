/** `tally serve` (the built CLI) as a child process on a free port, for the HTTP integration tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { findFreePort } from '../../support/redis-server.js';
import { waitFor } from '../../support/redis.js';

export const CLI = resolve(import.meta.dirname, '../../../dist/src/cli/main.js');

export interface ChildServer {
  readonly url: string;
  readonly child: ChildProcess;
  readonly output: () => string;
  stop(): Promise<void>;
}

/** Starts `tally <args> --config <raw as YAML>` and waits until `probe` (a URL path on `port`) answers. */
export async function startCli(
  raw: Record<string, unknown>,
  args: (port: number) => string[],
  env: NodeJS.ProcessEnv = {},
): Promise<ChildServer> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
  const dir = mkdtempSync(join(tmpdir(), 'tally-http-'));
  const file = join(dir, 'tally.yaml');
  writeFileSync(file, stringify(raw));
  const port = await findFreePort();
  const child = spawn(process.execPath, [CLI, ...args(port), '--config', file], {
    env: { ...process.env, LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(kill, 5_000);
      await exited;
      clearTimeout(timer);
    }
    process.off('exit', kill);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}: ${out}`);
        return (await fetch(`${url}/healthz`).catch(() => undefined))?.ok;
      },
      { timeoutMs: 20_000, intervalMs: 100, message: `tally ${args(port).join(' ')} to listen` },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, child, output: () => out, stop };
}
