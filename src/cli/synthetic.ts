import { randomBytes } from 'node:crypto';
import type { UsageEvent } from '../events/index.js';

const MODELS = ['gpt-5', 'claude-4', 'llama-4'] as const;
const ROUTES = ['/v1/chat', '/v1/embed', '/v1/images'] as const;
const GPUS = ['h100', 'a100'] as const;

export interface SyntheticOptions {
  subjects: number;
  source?: string;
  /** Event time; defaults to now. */
  time?: () => number;
  /** Prefix of event ids, unique per run so runs never dedup each other. @defaultValue random */
  idPrefix?: string;
}

/** An endless supply of realistic usage events for the meters of config/tally.yaml and demo.yaml. */
export function syntheticEvents(options: SyntheticOptions): () => UsageEvent {
  const rnd = Math.random;
  const source = options.source ?? 'tally-demo';
  const time = options.time ?? Date.now;
  const idPrefix = options.idPrefix ?? randomBytes(4).toString('hex');
  let n = 0;
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)] as T;
  return () => {
    const subject = `customer-${Math.floor(rnd() * options.subjects)}`;
    const kind = rnd();
    const base = {
      specversion: '1.0' as const,
      id: `evt-${idPrefix}-${n++}`,
      source,
      subject,
      time: new Date(time()).toISOString(),
    };
    if (kind < 0.6) {
      return {
        ...base,
        type: 'llm.completion',
        data: {
          tokens: 1 + Math.floor(rnd() * 4000),
          model: pick(MODELS),
          direction: rnd() < 0.5 ? 'input' : 'output',
        },
      };
    }
    if (kind < 0.9) {
      return {
        ...base,
        type: 'api.request',
        data: { route: pick(ROUTES), user: `user-${Math.floor(rnd() * 50)}` },
      };
    }
    return {
      ...base,
      type: 'gpu.job',
      data: { seconds: Math.round(rnd() * 3_600_000) / 1000, gpu: pick(GPUS) },
    };
  };
}

export interface SyntheticLoopOptions {
  /** Sends a batch of events (e.g. `producer.sendBatch`). */
  send: (events: UsageEvent[]) => Promise<unknown>;
  /** Events per second to aim for. */
  rate: number;
  signal: AbortSignal;
  subjects?: number;
  /** Share of events that re-send an earlier event (duplicates). @defaultValue 0.03 */
  duplicateRate?: number;
  /** Share of events with a non-numeric value (dead-lettered by the worker). @defaultValue 0.005 */
  invalidRate?: number;
}

/** Produces synthetic events at a steady rate in 100 ms ticks until `signal` aborts; returns the count sent. */
export async function produceSynthetic(options: SyntheticLoopOptions): Promise<{ sent: number }> {
  const next = syntheticEvents({ subjects: options.subjects ?? 5 });
  const rnd = Math.random;
  const dupRate = options.duplicateRate ?? 0.03;
  const invalidRate = options.invalidRate ?? 0.005;
  const recent: UsageEvent[] = [];
  const counter = { sent: 0 };
  const tickMs = 100;
  while (!options.signal.aborted) {
    const tickStart = Date.now();
    const batch: UsageEvent[] = [];
    for (let i = 0; i < (options.rate * tickMs) / 1000; i++) {
      const roll = rnd();
      if (roll < dupRate && recent.length > 0) {
        batch.push(recent[Math.floor(rnd() * recent.length)]!);
      } else if (roll < dupRate + invalidRate) {
        batch.push({ ...next(), type: 'llm.completion', data: { tokens: 'lots', model: 'gpt-5' } });
      } else {
        const e = next();
        batch.push(e);
        if (recent.length < 1000) recent.push(e);
        else recent[Math.floor(rnd() * 1000)] = e;
      }
    }
    await options.send(batch);
    counter.sent += batch.length;
    await new Promise((r) => setTimeout(r, Math.max(0, tickMs - (Date.now() - tickStart))));
  }
  return counter;
}
