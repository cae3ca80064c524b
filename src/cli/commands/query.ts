/** Read-side commands: `tally usage` (stored usage) and `tally check` (real-time entitlement check). */
import type { Command } from 'commander';
import { renderTable } from '../../admin/index.js';
import { definitionsNote, EntitlementChecker } from '../../entitlements/index.js';
import { TallyConfigError } from '../../errors/index.js';
import { emptyRangeNote, UsageQuery, type UsageRow } from '../../usage/index.js';
import { loadCommandConfig, repeatable, stderrLogger, withClient, withConfigOption } from '../options.js';
import { instant } from '../time.js';

interface UsageFlags {
  config: string;
  meter: string;
  from: string;
  to?: string;
  subject?: string[];
  windowSize?: string;
  timeZone?: string;
  groupBy?: string[];
  filter?: string[];
  json?: boolean;
}

function parseFilter(values: readonly string[]): Record<string, string[]> {
  const filter: Record<string, string[]> = {};
  for (const f of values) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new TallyConfigError('--filter', `expected KEY=VALUE, got ${JSON.stringify(f)}`);
    (filter[f.slice(0, eq)] ??= []).push(f.slice(eq + 1));
  }
  return filter;
}

export function usageTable(rows: readonly UsageRow[]): string {
  if (rows.length === 0) return '(no usage)';
  const groupKeys = Object.keys(rows[0]?.groupBy ?? {});
  return renderTable(
    ['windowStart', 'windowEnd', 'subject', ...groupKeys, '>value', '>events'],
    rows.map((r) => [
      r.windowStart,
      r.windowEnd,
      r.subject ?? '(all)',
      ...groupKeys.map((k) => r.groupBy[k] ?? '(none)'),
      r.valueDecimal,
      String(r.eventCount),
    ]),
    '',
  );
}

async function usage(flags: UsageFlags): Promise<void> {
  const filter = parseFilter(flags.filter ?? []);
  const config = await loadCommandConfig(flags.config);
  // Exclusive: one ms past now, so the window that starts this very ms counts too.
  const to = flags.to ?? new Date(Date.now() + 1).toISOString();
  const rows = await withClient(config, (connection) =>
    new UsageQuery({ config, connection, logger: stderrLogger() }).query({
      meter: flags.meter,
      from: flags.from,
      to,
      ...(flags.subject ? { subject: flags.subject } : {}),
      ...(flags.windowSize ? { windowSize: flags.windowSize } : {}),
      ...(flags.timeZone ? { timeZone: flags.timeZone } : {}),
      groupBy: (flags.groupBy ?? []).flatMap((g) =>
        g
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      ),
      filter,
    }),
  );
  if (flags.json) for (const row of rows) console.log(JSON.stringify(row));
  else console.log(usageTable(rows));
  // An empty answer from a range no window starts in says why (the query found the meter: it exists).
  const meter = config.meters.find((m) => m.slug === flags.meter);
  const note = rows.length === 0 && meter && emptyRangeNote(meter, Date.parse(flags.from), Date.parse(to));
  if (note) process.stderr.write(`tally: ${note}\n`);
}

/** `tally check` exit codes besides 0 (access) and 1 (an error such as an unreachable Redis). */
const NO_ACCESS_EXIT = 3;
const UNKNOWN_FEATURE_EXIT = 4;

async function check(
  subject: string,
  feature: string,
  flags: { config: string; at?: string },
): Promise<void> {
  const at = flags.at === undefined ? Date.now() : Date.parse(flags.at);
  const config = await loadCommandConfig(flags.config);
  let features: string[] = [];
  const result = await withClient(config, async (connection) => {
    // The checker's own warning would repeat the note below as a JSON log line.
    const checker = new EntitlementChecker({
      config,
      connection,
      logger: stderrLogger(process.env.LOG_LEVEL ?? 'error'),
    });
    const catalog = await checker.definitionsCatalog();
    features = [...catalog.features.keys()].sort();
    const note = definitionsNote(catalog, config, flags.config);
    if (note) process.stderr.write(`tally: ${note}\n`);
    return checker.check(subject, feature, at);
  });
  console.log(JSON.stringify(result, null, 2));
  if (result.reason === 'unknown-feature') {
    // A misspelled key is a mistake, not a denial: its own exit code and one line saying so.
    const shown = features.length > 20 ? [...features.slice(0, 20), '…'] : features;
    process.stderr.write(
      `tally: unknown feature ${JSON.stringify(feature)}; features: ${shown.join(', ') || '(none declared)'}\n`,
    );
    process.exitCode = UNKNOWN_FEATURE_EXIT;
  } else if (!result.hasAccess) process.exitCode = NO_ACCESS_EXIT;
}

export function registerQueries(program: Command): void {
  withConfigOption(program.command('usage').description('query stored usage, as a table or NDJSON'))
    .requiredOption('--meter <slug>', 'the meter')
    .requiredOption(
      '--from <time>',
      'start of the range (inclusive; rows hold whole windows that start in the range): ISO 8601, or relative such as now-24h, now-7d',
      instant('--from'),
    )
    .option(
      '--to <time>',
      'end of the range (exclusive): ISO 8601, now, now-1h... (default: now)',
      instant('--to'),
    )
    .option('--subject <subject>', 'only this subject (repeatable)', repeatable)
    .option(
      '--window-size <size>',
      'rows per MINUTE, HOUR, DAY or a duration (default: one row over the range)',
    )
    .option('--time-zone <zone>', "align rows in this IANA zone (default: the meter's)")
    .option('--group-by <key>', 'split rows by this group-by key (repeatable or comma-separated)', repeatable)
    .option('--filter <key=value>', 'only usage with this group-by value (repeatable)', repeatable)
    .option('--json', 'one JSON row per line')
    .action(usage);
  withConfigOption(
    program
      .command('check')
      .description(
        'real-time entitlement check, as JSON (exit code 0 with access, 3 without, 4 for an unknown feature)',
      )
      .argument('<subject>', 'the customer (event subject)')
      .argument('<feature>', 'the feature key'),
  )
    .option(
      '--at <time>',
      'check as of this time: ISO 8601, or relative such as now-1h (default: now)',
      instant('--at'),
    )
    .action(check);
}
