/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): self time by function and by module, and
 * inclusive time of the functions on Tally's hot path.
 */
import { readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  /** Share of samples outside idle time: how busy the worker's main thread was. */
  readonly busyShare: number;
  readonly topSelf: { fn: string; ms: number; share: number }[];
  readonly byModule: { module: string; ms: number; share: number }[];
  readonly inclusive: { fn: string; ms: number; share: number }[];
}

function shortUrl(url: string): string {
  if (!url) return '';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + '/dist/'.length);
  return url.replace(/^file:\/\//, '');
}

function moduleOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const short = shortUrl(url);
  if (url.includes('node_modules/')) {
    const parts = short.split('/');
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? short);
  }
  if (short.startsWith('node:')) return 'node:internal';
  return short.replace(/\.js$/, '');
}

const keyOf = (n: ProfileNode) =>
  `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;

/** Functions whose inclusive time is reported (matched by name). */
const HOT_PATH = [
  'prepareBatch',
  'decodeEntry',
  'explainInvalidEvent',
  'meterUpdate',
  'fingerprint',
  'partitionOf',
  'applyPrepared',
  'runScript',
  'readBatch',
  'closeWindows',
  'applyBatch',
  'relay',
  'publish',
  'outboxToRollup',
  'rollupJobId',
  'addBulk',
  'consumeLoop',
  'maintenanceLoop',
  'parse',
];

/**
 * `window`: [from, to] in CLOCK_MONOTONIC µs (the profile's clock); samples outside it (start-up,
 * waiting for the go signal, shutdown) are left out.
 */
export function summariseProfile(file: string, window?: [number, number], top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let total = 0;
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i] ?? 0;
    if (window && (t < window[0] || t > window[1])) return;
    const dt = (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0) / 1000;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });
  const selfByFn = new Map<string, number>();
  const selfByModule = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let idle = 0;
  for (const [id, ms] of self) {
    const node = byId.get(id) as ProfileNode;
    const fn = node.callFrame.functionName;
    if (fn === '(idle)') idle += ms;
    selfByFn.set(keyOf(node), (selfByFn.get(keyOf(node)) ?? 0) + ms);
    const mod = moduleOf(node.callFrame.url, fn);
    selfByModule.set(mod, (selfByModule.get(mod) ?? 0) + ms);
    // Inclusive: every distinct hot-path function on this node's stack gets the time once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = byId.get(cur)?.callFrame;
      const name = frame?.functionName ?? '';
      if (name === 'parse' && frame?.url) continue; // only the builtin JSON.parse
      const label = name === 'parse' ? 'JSON.parse' : name;
      if (HOT_PATH.includes(name) && !seen.has(label)) {
        seen.add(label);
        inclusive.set(label, (inclusive.get(label) ?? 0) + ms);
      }
    }
  }
  const busy = total - idle;
  const rank = (m: Map<string, number>, denom: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([k, ms]) => ({ k, ms: Math.round(ms), share: denom > 0 ? ms / denom : 0 }));
  return {
    file,
    totalMs: Math.round(total),
    busyShare: total > 0 ? busy / total : 0,
    topSelf: rank(selfByFn, busy)
      .filter((r) => !r.k.startsWith('(idle)'))
      .slice(0, top)
      .map(({ k, ms, share }) => ({ fn: k, ms, share })),
    byModule: rank(selfByModule, busy)
      .filter((r) => r.k !== '(idle)')
      .slice(0, top)
      .map(({ k, ms, share }) => ({ module: k, ms, share })),
    inclusive: rank(inclusive, busy).map(({ k, ms, share }) => ({ fn: k, ms, share })),
  };
}

/**
 * Finds the profile `node --cpu-prof` wrote into `dir` (CPU.<date>.<pid>...cpuprofile) for process
 * `pid`, renames it to `<name>.cpuprofile` and summarises the samples inside `window`.
 */
export function takeProfile(
  dir: string,
  pid: number,
  name: string,
  window: [number, number],
): ProfileSummary | undefined {
  const file = readdirSync(dir)
    .filter((f) => f.startsWith('CPU.') && f.endsWith('.cpuprofile') && f.includes(`.${pid}.`))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!file) return undefined;
  const target = join(dir, `${name}.cpuprofile`);
  renameSync(file, target);
  return summariseProfile(target, window);
}
