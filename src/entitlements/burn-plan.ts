import { toScaled } from '../meters/index.js';
import type { PeriodBounds } from './period.js';
import {
  DEFAULT_PRIORITY,
  LIMIT_ALLOWANCE_ID,
  type Grant,
  type MeteredEntitlement,
  type Threshold,
} from './model.js';

/**
 * The burn-down plan of a usage period: which allowances (the period's limit and the active grants)
 * usage burns through, in which order, and the usage levels at which thresholds fire. Pure; the Lua
 * steps receive it as ARGV (planArgs) and apply usage against it.
 */

/** One allowance of a period: the limit, or a grant, covering usage from `from` to `to`. */
export interface Allowance {
  readonly id: string;
  readonly amount: bigint;
  readonly from: number;
  readonly to: number;
  readonly priority: number;
}

/**
 * What the Lua steps need to burn a period's usage down: its bounds, the instants inside it where the
 * set of allowances changes (grant start or expiry: usage is split into segments there), the
 * allowances in burn order, and threshold levels in micro-units.
 */
export interface BurnPlan {
  readonly start: number;
  readonly end: number;
  readonly boundaries: readonly number[];
  readonly allowances: readonly Allowance[];
  /** limit + grants of the period. */
  readonly total: bigint;
  readonly grantsTotal: bigint;
  readonly thresholds: readonly {
    readonly id: string;
    readonly level: bigint;
    readonly threshold: Threshold;
  }[];
}

/**
 * Grants count in the period their coverage starts in (activeFrom), until they expire or the period
 * ends, whichever comes first: like OpenMeter's grants without rollover, what is left at a reset is lost.
 * Burn order: priority (lower first), then the earlier end of coverage, the limit before grants on a
 * tie, then the earlier start, then id.
 */
export function burnPlan(ent: MeteredEntitlement, grants: readonly Grant[], period: PeriodBounds): BurnPlan {
  const { start, end } = period;
  const allowances: Allowance[] = [
    { id: LIMIT_ALLOWANCE_ID, amount: ent.limit, from: start, to: end, priority: DEFAULT_PRIORITY },
  ];
  for (const g of grants) {
    if (g.activeFrom < start || g.activeFrom >= end) continue;
    const to = Math.min(g.expiresAt ?? end, end);
    if (to <= g.activeFrom) continue;
    allowances.push({ id: g.id, amount: g.amount, from: g.activeFrom, to, priority: g.priority });
  }
  allowances.sort(
    (a, b) =>
      a.priority - b.priority ||
      a.to - b.to ||
      Number(b.id === LIMIT_ALLOWANCE_ID) - Number(a.id === LIMIT_ALLOWANCE_ID) ||
      a.from - b.from ||
      (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
  const inside = new Set<number>();
  for (const a of allowances) {
    if (a.from > start && a.from < end) inside.add(a.from);
    if (a.to > start && a.to < end) inside.add(a.to);
  }
  const total = allowances.reduce((sum, a) => sum + a.amount, 0n);
  const thresholds = ent.thresholds.map((t) => ({ id: t.id, threshold: t, level: levelOf(t, total) }));
  return {
    start,
    end,
    boundaries: [...inside].sort((a, b) => a - b),
    allowances,
    total,
    grantsTotal: total - ent.limit,
    thresholds,
  };
}

/** Usage (micro-units) at which a threshold is reached: percent of the period's allowance, rounded up. */
function levelOf(t: Threshold, total: bigint): bigint {
  if (t.value !== undefined) return t.value;
  const pct = toScaled(t.percent) as bigint; // percent in micro-units
  const denominator = 100_000_000n;
  return (total * pct + denominator - 1n) / denominator;
}

/** The plan as Lua ARGV: start, end, n, boundaries..., m, (id, amount, from, to)... */
export function planArgs(plan: BurnPlan): (string | number)[] {
  return [
    plan.start,
    plan.end,
    plan.boundaries.length,
    ...plan.boundaries,
    plan.allowances.length,
    ...plan.allowances.flatMap((a) => [a.id, a.amount.toString(), a.from, a.to]),
  ];
}

// ---- Group matching -------------------------------------------------------------------------------
