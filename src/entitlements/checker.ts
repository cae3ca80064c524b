import type { TallyConfig } from '../config/index.js';
import { ErrorCode, TallyError } from '../errors/index.js';
import { DAY_MS } from '../time/index.js';
import { formatScaled, type Meter } from '../meters/index.js';
import { RedisComponent } from '../redis/index.js';
import { formatIsoUtc, windowsBetween } from '../windows/index.js';
import { Definitions, type SubjectDefinition } from './definitions.js';
import { instruments } from '../telemetry/index.js';
import { burnPlan, planArgs, type Allowance } from './burn-plan.js';
import { groupProbe, type MeteredEntitlement } from './model.js';
import { checkCacheSize, checkRefreshMs, defaultCheckerOptions, type CheckerOptions } from './options.js';
import { periodAt } from './period.js';
import { definitionsNote, type DefinitionCatalog } from './published.js';
import type { EntitlementType } from './schema.js';

const MAX_ATTEMPTS = 5;

export interface AllowanceState {
  /** `limit` or a grant id. */
  readonly id: string;
  readonly amount: string;
  readonly remaining: string;
  /** When it covers usage from / until (ISO 8601 UTC), clipped to the period. */
  readonly from: string;
  readonly to: string;
}

/** The answer of `check(subject, feature)`. Numbers are for convenience; `exact` has the decimals. */
export interface EntitlementCheck {
  readonly subject: string;
  readonly feature: string;
  readonly type: EntitlementType | 'none';
  /** Whose entitlement applies: the subject's own, the config default, or none. */
  readonly source: 'explicit' | 'default' | 'none';
  readonly hasAccess: boolean;
  /**
   * Why a check of type `none` has no access: the feature exists but the subject has no entitlement to
   * it, or no feature has this key at all (a misspelled key, or one never declared).
   */
  readonly reason?: 'no-entitlement' | 'unknown-feature';
  /** static entitlements: their configuration. */
  readonly config?: unknown;
  readonly usage?: number;
  readonly limit?: number;
  readonly grants?: number;
  readonly balance?: number;
  readonly overage?: number;
  readonly limitType?: 'hard' | 'soft';
  readonly periodStart?: string;
  readonly periodEnd?: string;
  readonly exact?: {
    readonly usage: string;
    /** Part of usage from rollups the evaluator applied. */
    readonly appliedUsage: string;
    /** Part of usage read live from windows not (fully) applied yet. */
    readonly liveUsage: string;
    readonly limit: string;
    readonly grants: string;
    readonly balance: string;
    readonly overage: string;
  };
  /** The period's allowances in burn order with what is left of each. */
  readonly allowances?: readonly AllowanceState[];
}

/** The arguments of one metered check, computed in Node (periods and windows need time zones). */
export interface MeteredCheckCall {
  /** ARGV[3..] of checkEntitlement.lua (see its header). */
  readonly args: (string | number)[];
  readonly plan: ReturnType<typeof burnPlan>;
}

/**
 * Answers entitlement checks in real time: one Lua step per check (checkEntitlement.lua) reads the
 * subject's usage and the live windows of its partition. Subject definitions are cached; every step
 * verifies the cached version, so a changed definition is re-read, never served stale.
 */
export class EntitlementChecker extends RedisComponent {
  readonly definitions: Definitions;
  private readonly cache = new Map<string, SubjectDefinition>();
  private readonly cacheSize: number;
  private readonly config: TallyConfig;
  private readonly refreshMs: number;
  private catalogReadAt = Number.NEGATIVE_INFINITY;
  private notedCatalog: string | undefined;

  constructor(options: CheckerOptions) {
    const opts = { ...defaultCheckerOptions, ...options };
    checkCacheSize(opts.cacheSize);
    checkRefreshMs(opts.definitionsRefreshMs);
    super(opts.config.redis, opts, { component: 'entitlement-checker' });
    this.config = opts.config;
    this.cacheSize = opts.cacheSize;
    this.refreshMs = opts.definitionsRefreshMs;
    this.definitions = new Definitions(this.client, this.config, opts.meters);
  }

  /** The subject's access to a feature now (or at `at`, epoch ms): usage includes windows still open. */
  async check(subject: string, feature: string, at: number = Date.now()): Promise<EntitlementCheck> {
    if (this.isClosing) throw new TallyError(ErrorCode.Closed, 'EntitlementChecker is closed');
    const started = performance.now();
    if (started - this.catalogReadAt >= this.refreshMs) await this.readCatalog();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const def = await this.definition(subject, attempt > 0);
      const result = await this.checkWith(def, feature, at);
      if (result !== 'stale') {
        instruments.entitlementChecks.add(1, { 'tally.entitlement_type': result.type });
        instruments.entitlementCheckDuration.record(performance.now() - started);
        return result;
      }
      this.cache.delete(subject);
    }
    throw new TallyError(
      ErrorCode.State,
      `the entitlements of ${JSON.stringify(subject)} kept changing during the check; try again`,
    );
  }

  /**
   * The entitlement definitions checks use: the published ones (read now), else the config's. A
   * disagreement with this process's config is logged once per version (`definitionsNote`).
   */
  async definitionsCatalog(): Promise<DefinitionCatalog> {
    if (this.isClosing) throw new TallyError(ErrorCode.Closed, 'EntitlementChecker is closed');
    return this.readCatalog();
  }

  private async readCatalog(): Promise<DefinitionCatalog> {
    const { catalog } = await this.definitions.refreshCatalog();
    this.catalogReadAt = performance.now();
    const id = `${catalog.source}:${catalog.version}`;
    if (this.notedCatalog !== id) {
      this.notedCatalog = id;
      const note = definitionsNote(catalog, this.config);
      if (note) this.logger.warn({ version: catalog.version, source: catalog.source }, note);
      if (catalog.invalid.length > 0)
        this.logger.warn(
          { invalid: catalog.invalid },
          'published entitlement definitions that do not validate here are ignored',
        );
    }
    return catalog;
  }

  private async definition(subject: string, fresh: boolean): Promise<SubjectDefinition> {
    const cached = fresh ? undefined : this.cache.get(subject);
    if (cached) {
      this.cache.delete(subject);
      this.cache.set(subject, cached);
      return cached;
    }
    const def = await this.definitions.load(subject);
    if (def.invalid.length > 0)
      this.logger.warn(
        { subject, invalid: def.invalid },
        'stored entitlements that no longer validate are ignored',
      );
    this.cache.set(subject, def);
    if (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value as string);
    return def;
  }

  private async checkWith(
    def: SubjectDefinition,
    feature: string,
    at: number,
  ): Promise<EntitlementCheck | 'stale'> {
    const { subject } = def;
    const eff = this.definitions.effective(def, feature);
    const p = def.partition;
    if (eff?.entitlement.type !== 'metered') {
      if (
        !(await this.definitions.scripts.definitionCurrent({
          partition: p,
          subject,
          feature,
          version: def.version,
        }))
      )
        return 'stale';
      if (!eff) {
        const reason = this.definitions.catalog.features.has(feature) ? 'no-entitlement' : 'unknown-feature';
        return { subject, feature, type: 'none', source: 'none', hasAccess: false, reason };
      }
      const ent = eff.entitlement;
      return {
        subject,
        feature,
        type: ent.type,
        source: eff.source,
        hasAccess: true,
        ...(ent.type === 'static' ? { config: ent.config } : {}),
      };
    }
    const ent = eff.entitlement;
    const call = this.meteredCall(def, ent, at);
    const reply = await this.definitions.scripts.checkMetered(
      { partition: p, subject, feature: ent.feature.key, version: def.version },
      call.args,
    );
    if (reply === 'stale') return 'stale';
    const [, usage = '0', applied = '0', live = '0', balance = '0', overage = '0', ...remaining] = reply;
    const { plan } = call;
    const balanceScaled = BigInt(balance);
    return {
      subject,
      feature,
      type: 'metered',
      source: eff.source,
      hasAccess: ent.limitType === 'soft' || balanceScaled > 0n,
      usage: Number(formatScaled(usage)),
      limit: Number(formatScaled(ent.limit)),
      grants: Number(formatScaled(plan.grantsTotal)),
      balance: Number(formatScaled(balance)),
      overage: Number(formatScaled(overage)),
      limitType: ent.limitType,
      periodStart: formatIsoUtc(plan.start),
      periodEnd: formatIsoUtc(plan.end),
      exact: {
        usage: formatScaled(usage),
        appliedUsage: formatScaled(applied),
        liveUsage: formatScaled(live),
        limit: formatScaled(ent.limit),
        grants: formatScaled(plan.grantsTotal),
        balance: formatScaled(balance),
        overage: formatScaled(overage),
      },
      allowances: plan.allowances.map((a: Allowance, i) => ({
        id: a.id,
        amount: formatScaled(a.amount),
        remaining: formatScaled(remaining[i] ?? '0'),
        from: formatIsoUtc(a.from),
        to: formatIsoUtc(a.to),
      })),
    };
  }

  /**
   * Keys and arguments of a metered check: the current period and its burn-down plan, and the windows
   * that may not be applied yet: those of the period ending less than grace + lookback ago (or open),
   * at most maxLiveWindows, newest first.
   */
  meteredCall(def: SubjectDefinition, ent: MeteredEntitlement, at: number): MeteredCheckCall {
    const { subject } = def;
    const meter = this.definitions.meter(ent.feature.meter) as Meter;
    const period = periodAt(ent.usagePeriod, at);
    const plan = burnPlan(ent, this.definitions.grantsOf(def, ent.feature.key), period);
    const settings = this.definitions.settings;
    const from = Math.max(period.start, at - this.config.windows.graceMs - settings.lookbackMs);
    const starts: number[] = [];
    for (const w of windowsBetween(meter.window, from, at + 1))
      if (w.start >= period.start && w.start <= at) starts.push(w.start);
    const live = starts.slice(-settings.maxLiveWindows);
    const probe = groupProbe(meter, ent.feature);
    return {
      plan,
      args: [
        at,
        meter.slug,
        meter.code,
        subject,
        ent.feature.key,
        JSON.stringify(subject),
        probe.mode,
        probe.mode === 'fixed' ? probe.tail : probe.filter,
        settings.maxLiveGroups,
        settings.maxScanFields,
        live.length,
        ...live.flatMap((ws) => [ws, Math.floor(ws / DAY_MS) * DAY_MS]),
        ...planArgs(plan),
      ],
    };
  }

  /** Drops the cache; RedisComponent.close then closes the connection if it opened it. */
  protected shutdown(): Promise<void> {
    this.cache.clear();
    return Promise.resolve();
  }
}
