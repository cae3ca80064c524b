/** The machine, versions and source revision a benchmark ran on. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, release, totalmem, type } from 'node:os';
import type { Redis } from 'ioredis';
import { info } from './redis-stats.js';

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly os: string;
  readonly loadAverageAtStart: number[];
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  let model = list[0]?.model ?? 'unknown';
  try {
    // /proc/cpuinfo can be more specific than os.cpus() in VMs.
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'));
    if (line) model = line.split(':')[1]?.trim() ?? model;
  } catch {
    // not Linux
  }
  return {
    cpuModel: model,
    cores: list.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${type()} ${release()}`,
    loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

function packageVersion(name: string): string {
  try {
    const require = createRequire(import.meta.url);
    const main = require.resolve(name);
    const root = main.slice(0, main.lastIndexOf(`node_modules/${name}/`) + `node_modules/${name}/`.length);
    return (JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

export async function versions(redis: Redis): Promise<Record<string, string>> {
  const server = await info(redis, 'server');
  const dirty = git(['status', '--porcelain', '--', 'src']);
  return {
    node: process.version,
    redis: server.get('redis_version') ?? 'unknown',
    ioredis: packageVersion('ioredis'),
    bullmq: packageVersion('bullmq'),
    tallyCommit: git(['rev-parse', '--short', 'HEAD']),
    srcUncommittedChanges: dirty
      ? dirty
          .split('\n')
          .map((l) => l.trim())
          .join(', ')
      : 'none',
  };
}
