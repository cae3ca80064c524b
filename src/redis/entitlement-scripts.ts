/**
 * The typed layer over the entitlement scripts: one method per Lua script, which owns its KEYS (built
 * by TallyKeys; every key of one call shares the subject's partition hash tag), the head of its ARGV
 * and its reply. The variable tails (burn-down plans, candidate windows) are built by the
 * entitlements code, which knows their meaning; the Lua headers document every position.
 */
import type { TallyKeys } from './keys.js';
import { runScript, type RedisClient } from './scripts.js';

type Arg = string | number;

/** A defineEntitlement.lua step: the op and its ARGV[5..] (see the script's header). */
export type DefineOp = [op: 'set' | 'remove' | 'grant' | 'ungrant', ...args: Arg[]];

/** The subject and feature a call is about, and the definition version the caller read. */
export interface EntitlementTarget {
  readonly partition: number;
  readonly subject: string;
  readonly feature: string;
  readonly version: string | number;
}

export class EntitlementScripts {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: TallyKeys,
  ) {}

  private checkKeys(t: EntitlementTarget): string[] {
    const k = this.keys;
    return [
      k.entitlementDefinition(t.partition, t.subject),
      k.entitlementUsage(t.partition, t.feature, t.subject),
      k.partitionBase(t.partition),
    ];
  }

  /** checkEntitlement.lua, version only: false when the definition changed since the caller read it. */
  async definitionCurrent(t: EntitlementTarget): Promise<boolean> {
    const reply = (await runScript(this.client, 'checkEntitlement', this.checkKeys(t), [
      t.version,
      'v',
    ])) as string[];
    return reply[0] !== 'stale';
  }

  /**
   * checkEntitlement.lua, metered: usage and balance from applied usage plus live windows. `args` are
   * ARGV[3..] (now, meter, ...). 'stale' when the definition changed since the caller read it.
   */
  async checkMetered(t: EntitlementTarget, args: readonly Arg[]): Promise<string[] | 'stale'> {
    const reply = (await runScript(this.client, 'checkEntitlement', this.checkKeys(t), [
      t.version,
      'm',
      ...args,
    ])) as string[];
    return reply[0] === 'stale' ? 'stale' : reply;
  }

  /** defineEntitlement.lua: set, remove, grant or ungrant under optimistic concurrency. `args` are ARGV[5..]. */
  async define(t: EntitlementTarget, [op, ...args]: DefineOp): Promise<string[] | 'stale'> {
    const k = this.keys;
    const reply = (await runScript(
      this.client,
      'defineEntitlement',
      [
        k.entitlementDefinition(t.partition, t.subject),
        k.entitlementUsage(t.partition, t.feature, t.subject),
        k.entitlementResets(t.partition),
      ],
      [t.version, op, t.feature, t.subject, ...args],
    )) as string[];
    return reply[0] === 'stale' ? 'stale' : reply;
  }

  /**
   * resetEntitlementPeriod.lua: starts the next usage period ('reset') or unschedules a feature that is
   * no longer metered ('drop'). `scheduled` is the schedule score the caller read. Returns the status
   * and how many notifications it wrote.
   */
  async resetPeriod(
    t: EntitlementTarget,
    op: 'reset' | 'drop',
    scheduled: string,
    period: { start: number; end: number; allowance: string; keepFrom: number; expireAt: number } | undefined,
  ): Promise<{ status: string; notifications: number }> {
    const k = this.keys;
    const p = t.partition;
    const [status, n] = (await runScript(
      this.client,
      'resetEntitlementPeriod',
      [
        k.entitlementDefinition(p, t.subject),
        k.entitlementUsage(p, t.feature, t.subject),
        k.entitlementResets(p),
        k.entitlementOutbox(p),
      ],
      [
        t.version,
        op,
        t.feature,
        t.subject,
        scheduled,
        ...(period
          ? [period.start, period.end, period.allowance, period.keepFrom, period.expireAt]
          : [0, 0, 0, 0, 0]),
      ],
    )) as [string, number];
    return { status, notifications: Number(n ?? 0) };
  }

  /**
   * applyEntitlementRollup.lua: applies one rollup to a feature's usage exactly once and writes its
   * notifications. `day` is the UTC day of the window start; `args` are ARGV[4..].
   */
  async applyRollup(
    t: EntitlementTarget,
    meter: string,
    day: number,
    args: readonly Arg[],
  ): Promise<[status: string, delta: string, periodUsage: string, notifications: number]> {
    const k = this.keys;
    const p = t.partition;
    const [status, delta, periodUsage, , , notifications] = (await runScript(
      this.client,
      'applyEntitlementRollup',
      [
        k.entitlementDefinition(p, t.subject),
        k.entitlementUsage(p, t.feature, t.subject),
        k.entitlementContributions(p, t.feature, day, t.subject),
        k.entitlementOutbox(p),
        k.entitlementResets(p),
        k.entitlementGroups(p, meter),
        k.entitlementSubjectGroups(p, meter, t.subject),
      ],
      [t.version, t.subject, t.feature, ...args],
    )) as [string, string, string, string, string, number];
    return [status, delta, periodUsage, Number(notifications ?? 0)];
  }

  /** publishEntitlementDefinitions.lua: a new version of the prefix's definitions unless they are unchanged. */
  async publishDefinitions(fingerprint: string, json: string, publisher: string): Promise<string[]> {
    return (await runScript(
      this.client,
      'publishEntitlementDefinitions',
      [this.keys.entitlementDefinitions()],
      [fingerprint, json, publisher],
    )) as string[];
  }
}
