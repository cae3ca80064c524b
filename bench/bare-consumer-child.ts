/**
 * The ceiling: a bare consumer that does nothing but XREADGROUP (same COUNT as the Tally worker) and
 * XACK the ids it got, one batch at a time, on its own connection. Nothing is decoded.
 *
 * argv: redisUrl stream group batchSize
 */
import { Redis } from 'ioredis';
import { childSide } from './procs.js';

type Reply = [string, [string, string[]][]][] | null;

const { send } = childSide();
const [url = '', stream = '', group = '', batch = '1000'] = process.argv.slice(2);
const redis = new Redis(url, { maxRetriesPerRequest: null });
let stopping = false;
let entries = 0;
let go: () => void = () => undefined;
const started = new Promise<void>((resolve) => (go = resolve));

process.on('message', (m: { type: string }) => {
  if (m.type === 'go') go();
  if (m.type === 'stop') stopping = true;
});
await redis.ping();
send({ type: 'loaded', pid: process.pid });
await started;
const cpuAtStart = process.cpuUsage();

while (!stopping) {
  const reply = (await redis.xreadgroup(
    'GROUP',
    group,
    'bare',
    'COUNT',
    Number(batch),
    'BLOCK',
    100,
    'STREAMS',
    stream,
    '>',
  )) as Reply;
  const got = reply?.[0]?.[1];
  if (!got || got.length === 0) continue;
  await redis.xack(stream, group, ...got.map((e) => e[0]));
  entries += got.length;
}
const cpu = process.cpuUsage(cpuAtStart);
send({ type: 'stopped', entries, cpuMs: (cpu.user + cpu.system) / 1000 });
redis.disconnect();
process.exit(0);
