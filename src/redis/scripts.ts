import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Cluster, Redis } from 'ioredis';
import { TallyScriptError } from '../errors/index.js';

/**
 * Lua scripts, one per atomic step, loaded once from `lua/` and registered on each connection with
 * ioredis `defineCommand` under a versioned name: calls go by EVALSHA, and ioredis falls back to EVAL
 * on NOSCRIPT by itself (also inside pipelines). Sources are fixed files (see loadLua), never built
 * from input.
 */
export type RedisClient = Redis | Cluster;

const LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url));
const INCLUDE = /^--@include (\w+)$/gm;

/**
 * A script's source with its includes resolved: each `--@include name` line (scripts declare them at
 * the top, after the header) becomes `lua/includes/name.lua`, whose own includes are resolved first.
 * Each include appears once, at its first mention, so an include may name what it requires.
 */
export function loadLua(file: string, seen = new Set<string>()): string {
  const source = readFileSync(LUA_DIR + file, 'utf8');
  return source.replace(INCLUDE, (_line, name: string) => {
    if (seen.has(name)) return `-- (${name} is included above)`;
    seen.add(name);
    return loadLua(`includes/${name}.lua`, seen).trimEnd();
  });
}

export interface ScriptDefinition {
  /** Command name registered on the connection (versioned: bump when the script's contract changes). */
  readonly command: string;
  readonly numberOfKeys: number;
  readonly lua: string;
}

function script(file: string, version: number): ScriptDefinition {
  const match = /^(\w+)-(\d+)\.lua$/.exec(file);
  if (!match) throw new Error(`bad script file name ${file}`);
  return { command: `tally_${match[1]}_v${version}`, numberOfKeys: Number(match[2]), lua: loadLua(file) };
}

export const Scripts = {
  applyBatch: script('applyBatch-8.lua', 4),
  closeWindows: script('closeWindows-6.lua', 2),
  sweepDedup: script('sweepDedup-2.lua', 1),
  deadLetterEntries: script('deadLetterEntries-3.lua', 1),
  renewLease: script('renewLease-1.lua', 1),
  trimStream: script('trimStream-1.lua', 1),
  forgetConsumers: script('forgetConsumers-1.lua', 1),
  applyEntitlementRollup: script('applyEntitlementRollup-7.lua', 1),
  checkEntitlement: script('checkEntitlement-3.lua', 1),
  defineEntitlement: script('defineEntitlement-3.lua', 1),
  resetEntitlementPeriod: script('resetEntitlementPeriod-4.lua', 1),
  publishEntitlementDefinitions: script('publishEntitlementDefinitions-1.lua', 1),
  probe: script('probe-1.lua', 1),
  registerMeters: script('registerMeters-1.lua', 1),
  deleteMeter: script('deleteMeter-1.lua', 1),
  syncPartitionRegistry: script('syncPartitionRegistry-2.lua', 1),
  createNotificationEvent: script('createNotificationEvent-4.lua', 1),
  claimNotificationDeliveries: script('claimNotificationDeliveries-3.lua', 1),
  finishNotificationDelivery: script('finishNotificationDelivery-3.lua', 1),
  scheduleNotificationDelivery: script('scheduleNotificationDelivery-3.lua', 1),
} as const;

export type ScriptName = keyof typeof Scripts;

type ScriptArg = string | number | Buffer;
type ScriptFn = (...args: ScriptArg[]) => Promise<unknown>;

const registered = new WeakSet<object>();

/** Registers every script on a connection (idempotent). */
export function registerScripts(client: RedisClient): void {
  if (registered.has(client)) return;
  for (const def of Object.values(Scripts)) {
    client.defineCommand(def.command, { numberOfKeys: def.numberOfKeys, lua: def.lua });
  }
  registered.add(client);
}

/** Runs a registered script; maps Redis errors to TallyScriptError naming the script. */
export async function runScript(
  client: RedisClient,
  name: ScriptName,
  keys: readonly string[],
  args: readonly ScriptArg[],
): Promise<unknown> {
  registerScripts(client);
  const def = Scripts[name];
  const fn = (client as unknown as Record<string, ScriptFn>)[def.command] as ScriptFn;
  try {
    return await fn.call(client, ...keys, ...args);
  } catch (err) {
    throw new TallyScriptError(name, (err as Error).message, { cause: err });
  }
}
