import { randomBytes } from 'node:crypto';
import type { MeterInput } from '../meters/index.js';

/**
 * What makes a meter's data mean what it means: the fields that may never change under one slug
 * (docs/operations.md, "Changing meters and partitions safely"). Name and description are not part
 * of it.
 */
export interface MeterDefinition {
  readonly slug: string;
  readonly eventType: string;
  readonly aggregation: MeterInput['aggregation'];
  readonly valueProperty: string | null;
  /** Group-by name → JSONPath, names sorted. */
  readonly groupBy: Readonly<Record<string, string>>;
  readonly windowSize: string;
  readonly timeZone: string;
}

/** The immutable fields, in the order a refusal names the first that differs. */
export const DEFINITION_FIELDS = [
  'eventType',
  'aggregation',
  'valueProperty',
  'groupBy',
  'windowSize',
  'timeZone',
] as const satisfies readonly (keyof MeterDefinition)[];

export type DefinitionField = (typeof DEFINITION_FIELDS)[number];

/** The definition of a config or API meter (defaults filled in by the config schema). */
export function definitionOf(input: MeterInput): MeterDefinition {
  const groupBy = Object.fromEntries(
    Object.entries(input.groupBy ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
  return {
    slug: input.slug,
    eventType: input.eventType,
    aggregation: input.aggregation,
    valueProperty: input.valueProperty ?? null,
    groupBy,
    windowSize: input.windowSize,
    timeZone: input.timeZone,
  };
}

/** Canonical JSON (fixed key order): two definitions are the same when their texts are. */
export function definitionJson(d: MeterDefinition): string {
  return JSON.stringify({
    slug: d.slug,
    eventType: d.eventType,
    aggregation: d.aggregation,
    valueProperty: d.valueProperty,
    groupBy: d.groupBy,
    windowSize: d.windowSize,
    timeZone: d.timeZone,
  });
}

export function parseDefinition(json: string): MeterDefinition {
  return JSON.parse(json) as MeterDefinition;
}

/** The definition back as a meter of the config's shape (for compileMeters). */
export function meterInputOf(d: MeterDefinition, description?: string): MeterInput {
  return {
    slug: d.slug,
    eventType: d.eventType,
    aggregation: d.aggregation,
    ...(d.valueProperty !== null ? { valueProperty: d.valueProperty } : {}),
    ...(Object.keys(d.groupBy).length > 0 ? { groupBy: { ...d.groupBy } } : {}),
    windowSize: d.windowSize,
    timeZone: d.timeZone,
    ...(description !== undefined ? { description } : {}),
  };
}

/** The first immutable field two definitions of one slug disagree on, with both values as text. */
export function firstDifference(
  stored: MeterDefinition,
  wanted: MeterDefinition,
): { field: DefinitionField; stored: string; wanted: string } | undefined {
  for (const field of DEFINITION_FIELDS) {
    const a = JSON.stringify(stored[field]);
    const b = JSON.stringify(wanted[field]);
    if (a !== b) return { field, stored: a, wanted: b };
  }
  return undefined;
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * A ULID (48-bit time, 80 random bits, Crockford base32): the stable id a meter gets when its slug
 * is first registered (OpenMeter's meters have ULID ids). Written here rather than taken from a
 * package: it is 10 lines and runs once per meter, never on the hot path.
 */
export function newUlid(nowMs = Date.now()): string {
  let time = '';
  let t = nowMs;
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = randomBytes(16);
  let random = '';
  for (let i = 0; i < 16; i++) random += CROCKFORD[(bytes[i] as number) % 32];
  return time + random;
}
