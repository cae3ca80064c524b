/**
 * Writes a backlog through Tally's own producer, feeding the model as it goes. Three ways to send:
 *  - `single`: `sendBatch` with eventsPerEntry 1 — pipelined XADD, one event per stream entry;
 *  - `batch`:  `sendBatch` with eventsPerEntry 100 (the default) — pipelined XADD of batch entries;
 *  - `send`:   `send(event)` per event, up to 256 calls in flight (one XADD each).
 * Only the send calls are timed (event generation and the model are not).
 */
import type { UsageEvent } from '../src/index.js';
import { UsageProducer } from '../src/index.js';
import { EventGenerator, Model, type GeneratorOptions } from './events.js';

export type SendMode = 'single' | 'batch' | 'send';

export interface PreloadOptions {
  readonly url: string;
  readonly prefix: string;
  readonly partitions: number;
  readonly mode: SendMode;
  readonly events: number;
  readonly generator: GeneratorOptions | (() => UsageEvent);
  /** Feed this model (created when absent). */
  readonly model?: Model;
  readonly windowMs?: number;
  readonly keepCells?: boolean;
}

export interface PreloadResult {
  readonly model: Model;
  readonly entries: number;
  readonly events: number;
  readonly sendSeconds: number;
  readonly eventsPerSecond: number;
}

const CHUNK = 10_000;

async function sendEach(producer: UsageProducer, events: readonly UsageEvent[]): Promise<number> {
  let next = 0;
  const lane = async () => {
    while (next < events.length) await producer.send(events[next++] as UsageEvent);
  };
  await Promise.all(Array.from({ length: 256 }, lane));
  return events.length;
}

export async function preload(options: PreloadOptions): Promise<PreloadResult> {
  const model = options.model ?? new Model(options.windowMs ?? 3_600_000, options.keepCells ?? true);
  const producer = new UsageProducer({
    redis: options.url,
    prefix: options.prefix,
    partitions: options.partitions,
    eventsPerEntry: options.mode === 'batch' ? 100 : 1,
  });
  const gen = options.generator;
  const source =
    typeof gen === 'function'
      ? gen
      : (() => {
          const g = new EventGenerator(gen);
          return () => g.next().event;
        })();
  let entries = 0;
  let sendMs = 0;
  try {
    for (let done = 0; done < options.events;) {
      const n = Math.min(CHUNK, options.events - done);
      const chunk: UsageEvent[] = [];
      for (let k = 0; k < n; k++) {
        const event = source();
        chunk.push(event);
        model.add(event);
      }
      const started = performance.now();
      entries +=
        options.mode === 'send' ? await sendEach(producer, chunk) : (await producer.sendBatch(chunk)).length;
      sendMs += performance.now() - started;
      done += n;
    }
  } finally {
    await producer.close();
  }
  const sendSeconds = sendMs / 1000;
  return {
    model,
    entries,
    events: options.events,
    sendSeconds,
    eventsPerSecond: options.events / sendSeconds,
  };
}
