// parseDuration comes from its module rather than config/index.js: config/load.ts imports this file,
// so going through the config index would make a module cycle.
import { parseDuration } from '../config/duration.js';
import { TallyConfigError } from '../errors/index.js';
import type { Meter } from '../meters/index.js';
import { normalizeEntitlement, normalizeFeature, type Entitlement, type Feature } from './model.js';
import type { EntitlementsConfigInput } from './schema.js';

/** The `entitlements:` config section, resolved: durations in ms, features and defaults validated. */
export interface EntitlementsConfig {
  /** Rollup queue the evaluator consumes; undefined when no rollup queue is left for it. */
  readonly queue: string | undefined;
  readonly notificationsQueue: string;
  readonly concurrency: number;
  readonly lookbackMs: number;
  readonly maxLiveWindows: number;
  readonly maxLiveGroups: number;
  readonly maxScanFields: number;
  readonly intervalMs: number;
  /** Features declared in the config (the API may add more, stored in Redis). */
  readonly features: ReadonlyMap<string, Feature>;
  /** Default entitlement per feature key: what every subject has unless the API sets its own. */
  readonly defaults: ReadonlyMap<string, Entitlement>;
}

export interface EntitlementsConfigContext {
  readonly meters: readonly Meter[];
  /** config.rollups.queues */
  readonly queues: readonly string[];
}

export function resolveEntitlementsConfig(
  data: EntitlementsConfigInput,
  ctx: EntitlementsConfigContext,
  field = 'entitlements',
): EntitlementsConfig {
  const meterLookup = (slug: string) => ctx.meters.find((m) => m.slug === slug);
  if (data.queue !== undefined && !ctx.queues.includes(data.queue)) {
    throw new TallyConfigError(
      `${field}.queue`,
      `must be one of rollups.queues (${JSON.stringify(ctx.queues)}) or no rollup reaches it, got ${JSON.stringify(data.queue)}`,
    );
  }
  if (ctx.queues.includes(data.notificationsQueue)) {
    throw new TallyConfigError(
      `${field}.notificationsQueue`,
      `must differ from the rollup queues, got ${JSON.stringify(data.notificationsQueue)}`,
    );
  }
  const features = new Map<string, Feature>();
  data.features.forEach((input, i) => {
    if (features.has(input.key))
      throw new TallyConfigError(
        `${field}.features[${i}].key`,
        `duplicate feature ${JSON.stringify(input.key)}`,
      );
    features.set(input.key, normalizeFeature(input, meterLookup, `${field}.features[${i}]`));
  });
  const defaults = new Map<string, Entitlement>();
  data.defaults.forEach((input, i) => {
    const where = `${field}.defaults[${i}]`;
    const feature = features.get(input.feature);
    if (!feature)
      throw new TallyConfigError(
        `${where}.feature`,
        `unknown feature ${JSON.stringify(input.feature)} (declare it under ${field}.features)`,
      );
    if (defaults.has(input.feature))
      throw new TallyConfigError(`${where}.feature`, `a second default for ${JSON.stringify(input.feature)}`);
    const { type, config, usagePeriod, limit, limitType, thresholds } = input;
    defaults.set(
      input.feature,
      normalizeEntitlement({ type, config, usagePeriod, limit, limitType, thresholds }, feature, where),
    );
  });
  const lookbackMs = parseDuration(data.lookback, `${field}.lookback`);
  const intervalMs = parseDuration(data.interval, `${field}.interval`);
  if (intervalMs < 10)
    throw new TallyConfigError(
      `${field}.interval`,
      `must be at least 10ms, got ${JSON.stringify(data.interval)}`,
    );
  return {
    queue: data.queue ?? ctx.queues[1],
    notificationsQueue: data.notificationsQueue,
    concurrency: data.concurrency,
    lookbackMs,
    maxLiveWindows: data.maxLiveWindows,
    maxLiveGroups: data.maxLiveGroups,
    maxScanFields: data.maxScanFields,
    intervalMs,
    features,
    defaults,
  };
}
