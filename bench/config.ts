/**
 * Tally configs for the bench, written as YAML files the worker children load like `tally worker
 * --config FILE` does. Everything not set here keeps Tally's default (config/tally.yaml), except:
 * one rollup queue instead of two, and applied entries kept for an hour (so a backlog is never trimmed
 * while the bench still reads it).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { meterConfig } from './events.js';

export interface BenchConfigOptions {
  readonly url: string;
  readonly prefix: string;
  readonly partitions: number;
  readonly batchSize: number;
  readonly windowSize: string;
  readonly grace?: string;
  readonly idleTimeout?: string;
  readonly closeInterval?: string;
  readonly bucketBits?: number;
  /** rollups.batchJobs: one job per outbox page. */
  readonly batchJobs?: boolean;
}

export function benchConfig(o: BenchConfigOptions): Record<string, unknown> {
  return {
    redis: { url: o.url },
    streams: { prefix: o.prefix, partitions: o.partitions, retainAcked: '1h' },
    dedup: o.bucketBits === undefined ? {} : { bucketBits: o.bucketBits },
    windows: {
      ...(o.grace ? { grace: o.grace } : {}),
      ...(o.idleTimeout ? { idleTimeout: o.idleTimeout } : {}),
    },
    worker: { batchSize: o.batchSize, ...(o.closeInterval ? { closeInterval: o.closeInterval } : {}) },
    rollups: { queues: [`${o.prefix}-rollups`], ...(o.batchJobs ? { batchJobs: true } : {}) },
    meters: meterConfig(o.windowSize),
  };
}

/** Writes the config (`raw`, or the one built from `o`) to `<dir>/<prefix>.yaml` and returns the path. */
export function writeBenchConfig(
  dir: string,
  o: BenchConfigOptions,
  raw: Record<string, unknown> = benchConfig(o),
): string {
  const path = join(dir, `${o.prefix}.yaml`);
  writeFileSync(path, stringify(raw));
  return path;
}
