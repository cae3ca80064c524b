/** `tally meters list|delete`: the meter registry every running process obeys. */
import type { Command } from 'commander';
import { formatTime, renderTable } from '../../admin/index.js';
import { TallyConfigError } from '../../errors/index.js';
import { MeterRegistry, type RegisteredMeter } from '../../registry/index.js';
import { loadCommandConfig, print, withClient, withConfigOption } from '../options.js';

interface ListFlags {
  config: string;
  all?: boolean;
  json?: boolean;
}

interface DeleteFlags {
  config: string;
  json?: boolean;
}

function meterRow(m: RegisteredMeter, now: number): string[] {
  const d = m.definition;
  return [
    d.slug,
    d.eventType,
    d.aggregation,
    d.valueProperty ?? '-',
    Object.keys(d.groupBy).join(',') || '-',
    `${d.windowSize}${d.timeZone !== 'UTC' ? ` ${d.timeZone}` : ''}`,
    `v${m.activeSince}`,
    m.deletedAt === undefined ? 'active' : `deleted ${formatTime(m.deletedAt, now)}`,
  ];
}

async function list(flags: ListFlags): Promise<void> {
  const config = await loadCommandConfig(flags.config);
  const snapshot = await withClient(config, (client) => MeterRegistry.forConfig(client, config).read());
  const meters = snapshot.meters.filter((m) => flags.all || m.deletedAt === undefined);
  print(flags.json, { version: snapshot.version, partitions: snapshot.partitions ?? null, meters }, () => {
    if (snapshot.version === 0) return `no meter registry under prefix ${config.prefix} yet: it is created when a worker, an evaluator or serve starts`;
    const now = Date.now();
    const table = meters.length
      ? renderTable(
          ['meter', 'event type', 'aggregation', 'value', 'group by', 'window', '>since', 'state'],
          meters.map((m) => meterRow(m, now)),
        )
      : '  (no meters)';
    return `meter registry v${snapshot.version} · prefix ${config.prefix} · ${snapshot.partitions ?? '?'} partitions\n${table}`;
  });
}

async function remove(slug: string, flags: DeleteFlags): Promise<void> {
  const config = await loadCommandConfig(flags.config);
  const version = await withClient(config, (client) => MeterRegistry.forConfig(client, config).delete(slug));
  if (version === undefined)
    throw new TallyConfigError('meters delete', `no meter ${JSON.stringify(slug)} in the registry of prefix ${config.prefix}`);
  print(flags.json, { slug, version }, () =>
    `meter ${slug} deleted at registry v${version}: running processes stop counting it within seconds; its open windows still close and emit, its stored windows stay queryable until windows.retention. A config that still lists it registers it again at start: remove it there too.`,
  );
}

export function registerMeters(program: Command): void {
  const meters = program.command('meters').description('the meter registry every running process obeys');
  withConfigOption(meters.command('list').description('list the registered meters'))
    .option('--all', 'include deleted meters')
    .option('--json', 'print JSON')
    .action(list);
  withConfigOption(
    meters
      .command('delete <slug>')
      .description('stop counting a meter everywhere (its windows still close, emit and stay queryable)'),
  )
    .option('--json', 'print JSON')
    .action(remove);
}
