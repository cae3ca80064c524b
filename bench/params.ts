/**
 * Benchmark parameters: every size is a flag (`--events 1000000`) or an environment variable
 * (`BENCH_EVENTS=1000000`); flags win. Defaults are chosen so the whole suite finishes in under
 * 5 minutes on the 2-core reference machine.
 */
import { parseArgs } from 'node:util';

export const SCENARIOS = [
  'drain',
  'apply',
  'scaling',
  'bullmq',
  'live',
  'relay',
  'memory',
  'checks',
  'http',
] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface BenchParams {
  /** Backlog size of the drain (scenario 1); the issue asks for 1,000,000. */
  events: number;
  /** Tally runs on the single-event backlog, interleaved with bare-consumer runs. */
  drainRounds: number;
  /** Backlog size for each replica count of the scaling scenario. */
  scalingEvents: number;
  replicas: number[];
  /** Passes over the replica counts (alternating order), averaged. */
  scalingRounds: number;
  /** Events of the BullMQ one-job-per-event alternative (it is ~10x slower, so fewer). */
  bullmqEvents: number;
  bullmqConcurrency: number;
  subjects: number;
  duplicateRate: number;
  /** Worker batch size (XREADGROUP COUNT) for Tally and the bare consumer. */
  batchSize: number;
  liveRate: number;
  liveSeconds: number;
  liveWarmupSeconds: number;
  /** Subject counts of the live runs: rollups per second grow with distinct (subject, group) per window. */
  liveSubjects: number[];
  /** Rollups put in the outboxes for the relay ceiling scenario. */
  relayRollups: number;
  /** Events per dedup-memory measurement. */
  memoryEvents: number;
  /** Remembered events per dedup bucket to measure at (the bucket count is chosen to match). */
  dedupFills: number[];
  /** Open windows (and groups) created for the per-window memory figure. */
  windowKeys: number;
  /** Events per producer send-rate measurement. */
  sendEvents: number;
  /** Also run one drain with `node --cpu-prof` on the worker and summarise the profile. */
  profile: boolean;
  /** Run the first live worker under `node --cpu-prof` (this slows it: its figures are then not comparable). */
  profileLive: boolean;
  /** Events per run of the HTTP ingest scenario (batches of 500, direct and through `tally serve`). */
  httpEvents: number;
  /** Alternating direct/HTTP rounds (median of each). */
  httpRounds: number;
  /** Open-loop rate (events/s) of the HTTP latency measurement. */
  httpLatencyRate: number;
  httpLatencySeconds: number;
  seed: number;
  only: Scenario[];
  out: string;
}

const DEFAULTS: BenchParams = {
  events: 200_000,
  drainRounds: 2,
  scalingEvents: 100_000,
  replicas: [1, 2, 4],
  scalingRounds: 2,
  bullmqEvents: 50_000,
  bullmqConcurrency: 100,
  subjects: 500,
  duplicateRate: 0.05,
  batchSize: 1000,
  liveRate: 20_000,
  liveSeconds: 15,
  liveWarmupSeconds: 5,
  liveSubjects: [500, 50],
  relayRollups: 100_000,
  memoryEvents: 200_000,
  dedupFills: [4, 100, 1000],
  windowKeys: 20_000,
  sendEvents: 100_000,
  profile: false,
  profileLive: false,
  httpEvents: 200_000,
  httpRounds: 2,
  httpLatencyRate: 20_000,
  httpLatencySeconds: 15,
  seed: 42,
  only: [...SCENARIOS],
  out: 'bench/results/latest.json',
};

/** The issue's backlog size: the default run is scaled down from it (and says so). */
export const ISSUE_EVENTS = 1_000_000;

const OPTIONS = {
  events: 'integer',
  'drain-rounds': 'integer',
  'scaling-events': 'integer',
  replicas: 'list',
  'scaling-rounds': 'integer',
  'bullmq-events': 'integer',
  'bullmq-concurrency': 'integer',
  subjects: 'integer',
  'duplicate-rate': 'number',
  'batch-size': 'integer',
  'live-rate': 'integer',
  'live-seconds': 'number',
  'live-warmup-seconds': 'number',
  'live-subjects': 'list',
  'relay-rollups': 'integer',
  'memory-events': 'integer',
  'dedup-fills': 'list',
  'window-keys': 'integer',
  'send-events': 'integer',
  profile: 'boolean',
  'profile-live': 'boolean',
  'http-events': 'integer',
  'http-rounds': 'integer',
  'http-latency-rate': 'integer',
  'http-latency-seconds': 'number',
  seed: 'integer',
  only: 'scenarios',
  out: 'string',
} as const;

type Kind = (typeof OPTIONS)[keyof typeof OPTIONS];

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const envName = (flag: string) => `BENCH_${flag.toUpperCase().replace(/-/g, '_')}`;

function convert(flag: string, kind: Kind, text: string): unknown {
  const fail = (expected: string) =>
    new Error(`--${flag} (${envName(flag)}): expected ${expected}, got ${JSON.stringify(text)}`);
  switch (kind) {
    case 'integer': {
      const n = Number(text.replace(/_/g, ''));
      if (!Number.isInteger(n) || n < 0) throw fail('a non-negative integer');
      return n;
    }
    case 'number': {
      const n = Number(text);
      if (!Number.isFinite(n) || n < 0) throw fail('a non-negative number');
      return n;
    }
    case 'list': {
      const list = text.split(',').map((s) => Number(s.trim()));
      if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1))
        throw fail('a comma list of positive integers');
      return list;
    }
    case 'scenarios': {
      const list = text.split(',').map((s) => s.trim());
      const bad = list.find((s) => !(SCENARIOS as readonly string[]).includes(s));
      if (bad !== undefined) throw fail(`a comma list of ${SCENARIOS.join(', ')}`);
      return list;
    }
    case 'boolean':
      return text === '' || text === 'true' || text === '1';
    default:
      return text;
  }
}

export const USAGE = `Usage: npm run bench -- [options]   (or node dist/bench/run.js [options])

Options (each also as an environment variable BENCH_<NAME>, e.g. BENCH_EVENTS=1000000):
${Object.keys(OPTIONS)
  .map(
    (flag) => `  --${flag.padEnd(22)} default ${JSON.stringify(DEFAULTS[camel(flag) as keyof BenchParams])}`,
  )
  .join('\n')}
  --help`;

export function parseParams(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): BenchParams | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      ...Object.fromEntries(
        Object.entries(OPTIONS).map(([flag, kind]) => [
          flag,
          { type: kind === 'boolean' ? 'boolean' : 'string' },
        ]),
      ),
      help: { type: 'boolean', short: 'h' },
    } as Record<string, { type: 'string' | 'boolean' }>,
    strict: true,
  });
  if (values.help) return 'help';
  const params: Record<string, unknown> = { ...DEFAULTS };
  for (const [flag, kind] of Object.entries(OPTIONS)) {
    const raw = values[flag] ?? env[envName(flag)];
    if (raw === undefined) continue;
    params[camel(flag)] = convert(flag, kind, typeof raw === 'boolean' ? String(raw) : String(raw));
  }
  const p = params as unknown as BenchParams;
  if (p.events < 1000) throw new Error('--events: at least 1000');
  if (p.duplicateRate >= 1) throw new Error('--duplicate-rate: below 1');
  if (p.drainRounds < 1) throw new Error('--drain-rounds: at least 1');
  if (p.scalingRounds < 1) throw new Error('--scaling-rounds: at least 1');
  if (p.liveSeconds <= 1) throw new Error('--live-seconds: more than 1');
  return p;
}
