/**
 * A Tally worker replica in its own process, as `tally worker --config FILE [--partitions ...]` runs it,
 * driven over IPC: `go` → start (so several replicas start together), `stats` → its counters, `stop` → close (drains the batch in hand), reply with the
 * counters and the process's CPU time, then exit (so `--cpu-prof` writes its profile).
 *
 * argv: configPath partitions(comma list or '-') consumerName
 */
import { pino } from 'pino';
import { loadConfigFile, TallyWorker } from '../src/index.js';
import { childSide } from './procs.js';

const { send } = childSide();
const [configPath = '', partitionsArg = '-', consumerName = `bench-${process.pid}`] = process.argv.slice(2);
// An empty env: the config file's redis.url is the ephemeral server; a REDIS_URL must not override it.
const config = await loadConfigFile(configPath, {});
const partitions = partitionsArg === '-' ? undefined : partitionsArg.split(',').map(Number);
const worker = new TallyWorker({
  config,
  logger: pino({ level: process.env.LOG_LEVEL ?? 'warn' }),
  consumerName,
  ...(partitions ? { partitions } : {}),
});
let cpuAtStart = process.cpuUsage();
// CLOCK_MONOTONIC µs, the clock of V8's profile timestamps: lets the profile summary keep only the drain.
const hrMicros = () => Number(process.hrtime.bigint() / 1000n);
let goMicros = 0;
send({ type: 'loaded', pid: process.pid });

process.on('message', (m: { type: string }) => {
  if (m.type === 'go') {
    cpuAtStart = process.cpuUsage();
    goMicros = hrMicros();
    void worker.start().then(() => send({ type: 'ready', pid: process.pid }));
  }
  if (m.type === 'stats') send({ type: 'stats', stats: worker.getStats(), at: Date.now() });
  if (m.type === 'stop') {
    const stopMicros = hrMicros();
    void worker.close().then(() => {
      const cpu = process.cpuUsage(cpuAtStart);
      send({
        type: 'stopped',
        stats: worker.getStats(),
        cpuMs: (cpu.user + cpu.system) / 1000,
        goMicros,
        stopMicros,
      });
      process.exit(0);
    });
  }
});
