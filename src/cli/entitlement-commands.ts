import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { loadConfigFile, type TallyConfig } from '../config/index.js';
import { TallyConfigError } from '../errors/index.js';
import { EntitlementChecker, EntitlementEvaluator } from '../entitlements/index.js';
import { UsageQuery, type UsageRow } from '../usage/index.js';

/** The roles `tally worker` can run; `--roles` picks some (default: all). */
export const WorkerRoles = ['metering', 'entitlements'] as const;
export type WorkerRole = (typeof WorkerRoles)[number];

export function parseRoles(value: string | undefined): { roles: Set<WorkerRole>; explicit: boolean } {
  if (value === undefined) return { roles: new Set(WorkerRoles), explicit: false };
  const roles = new Set<WorkerRole>();
  for (const part of value.split(',').map((r) => r.trim()).filter(Boolean)) {
    if (!(WorkerRoles as readonly string[]).includes(part)) {
      throw new TallyConfigError('--roles', `unknown role ${JSON.stringify(part)}; roles are ${WorkerRoles.join(', ')}`);
    }
    roles.add(part as WorkerRole);
  }
  if (roles.size === 0) throw new TallyConfigError('--roles', `expected a comma-separated list of ${WorkerRoles.join(', ')}`);
  return { roles, explicit: true };
}

/**
 * The entitlement evaluator role of `tally worker`. On by default; without a rollup queue for it (a
 * single rollup queue and no `entitlements.queue`) it is skipped unless asked for explicitly.
 */
export async function startEvaluatorRole(config: TallyConfig, logger: Logger, explicit: boolean): Promise<EntitlementEvaluator | undefined> {
  if (config.entitlements.queue === undefined) {
    if (explicit) throw new TallyConfigError('entitlements.queue', 'the entitlements role needs a rollup queue: set entitlements.queue or a second rollups.queues entry');
    logger.info('no rollup queue for entitlements (one rollups.queues entry, no entitlements.queue): entitlement evaluator not started');
    return undefined;
  }
  const evaluator = new EntitlementEvaluator({ config, logger });
  await evaluator.start();
  return evaluator;
}

/** Logs of the query commands go to stderr: stdout carries their JSON or table. */
function stderrLogger(): Logger {
  return pino({ level: process.env.LOG_LEVEL ?? 'warn' }, pino.destination(2));
}

async function configFrom(values: { config?: string | undefined }): Promise<TallyConfig> {
  if (!values.config) throw new TallyConfigError('--config', 'FILE is required');
  return loadConfigFile(values.config);
}

const USAGE_HELP = `Usage: tally usage --config FILE --meter SLUG --from ISO --to ISO [options]
  --subject S          only this subject (repeatable)
  --window-size SIZE   rows per MINUTE, HOUR, DAY or duration (default: one row over the range)
  --time-zone ZONE     align rows in this IANA zone (default: the meter's)
  --group-by KEY       split rows by this group-by key (repeatable or comma-separated)
  --filter KEY=VALUE   only usage with this group-by value (repeatable)
  --json               one JSON row per line`;

/** `tally usage`: a usage query printed as a table or NDJSON. */
export async function usageCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      meter: { type: 'string' },
      subject: { type: 'string', multiple: true },
      from: { type: 'string' },
      to: { type: 'string' },
      'window-size': { type: 'string' },
      'time-zone': { type: 'string' },
      'group-by': { type: 'string', multiple: true },
      filter: { type: 'string', multiple: true },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE_HELP);
    return;
  }
  for (const required of ['meter', 'from', 'to'] as const) {
    if (!values[required]) throw new TallyConfigError(`--${required}`, `is required\n${USAGE_HELP}`);
  }
  const config = await configFrom(values);
  const filter: Record<string, string[]> = {};
  for (const f of values.filter ?? []) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new TallyConfigError('--filter', `expected KEY=VALUE, got ${JSON.stringify(f)}`);
    (filter[f.slice(0, eq)] ??= []).push(f.slice(eq + 1));
  }
  const query = new UsageQuery({ config, logger: stderrLogger() });
  try {
    const rows = await query.query({
      meter: values.meter as string,
      from: values.from as string,
      to: values.to as string,
      ...(values.subject ? { subject: values.subject } : {}),
      ...(values['window-size'] ? { windowSize: values['window-size'] } : {}),
      ...(values['time-zone'] ? { timeZone: values['time-zone'] } : {}),
      groupBy: (values['group-by'] ?? []).flatMap((g) => g.split(',').map((s) => s.trim()).filter(Boolean)),
      filter,
    });
    if (values.json) for (const row of rows) console.log(JSON.stringify(row));
    else printTable(rows);
  } finally {
    await query.close();
  }
}

function printTable(rows: readonly UsageRow[]): void {
  if (rows.length === 0) {
    console.log('(no usage)');
    return;
  }
  const groupKeys = Object.keys(rows[0]?.groupBy ?? {});
  const header = ['windowStart', 'windowEnd', 'subject', ...groupKeys, 'value', 'events'];
  const table = rows.map((r) => [r.windowStart, r.windowEnd, r.subject, ...groupKeys.map((k) => r.groupBy[k] ?? '(none)'), r.valueDecimal, String(r.eventCount)]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  console.log(line(header));
  for (const row of table) console.log(line(row));
}

/** `tally check SUBJECT FEATURE`: the entitlement check as JSON; exit code 0 with access, 3 without. */
export async function checkCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, at: { type: 'string' } },
  });
  const [subject, feature] = positionals;
  if (!subject || !feature || positionals.length > 2) throw new TallyConfigError('check', 'usage: tally check --config FILE SUBJECT FEATURE [--at ISO]');
  const config = await configFrom(values);
  const at = values.at === undefined ? Date.now() : Date.parse(values.at);
  if (!Number.isFinite(at)) throw new TallyConfigError('--at', `expected an ISO 8601 date-time, got ${JSON.stringify(values.at)}`);
  const checker = new EntitlementChecker({ config, logger: stderrLogger() });
  try {
    const result = await checker.check(subject, feature, at);
    console.log(JSON.stringify(result, null, 2));
    if (!result.hasAccess) process.exitCode = 3;
  } finally {
    await checker.close();
  }
}
