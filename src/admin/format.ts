/**
 * Plain-text rendering of the operator tools' results (pure: no I/O, no clock; `now` is passed in).
 */
import type { DeadLetter } from './dead-letter-entry.js';
import type { ReplayResult } from './dead-letters.js';
import type { TallyStatus } from './status.js';

/** 850ms, 12.3s, 4m05s, 3h12m, 2d04h. */
export function formatDuration(ms: number): string {
  const v = Math.max(0, Math.round(ms));
  if (v < 1000) return `${v}ms`;
  if (v < 60_000) return `${(Math.floor(v / 100) / 10).toFixed(1)}s`;
  const pad = (n: number) => String(n).padStart(2, '0');
  const s = Math.floor(v / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  const m = Math.floor(s / 60);
  if (m < 1440) return `${Math.floor(m / 60)}h${pad(m % 60)}m`;
  const h = Math.floor(m / 60);
  return `${Math.floor(h / 24)}d${pad(h % 24)}h`;
}

/** `12:03:40Z (5.0s ago)`, or with the date when more than a day away from `now`; `-` for null. */
export function formatTime(ms: number | null, now: number): string {
  if (ms === null) return '-';
  const iso = new Date(ms).toISOString();
  const delta = now - ms;
  const clock =
    Math.abs(delta) < 86_400_000 ? `${iso.slice(11, 19)}Z` : `${iso.slice(0, 10)} ${iso.slice(11, 16)}Z`;
  const rel = delta >= 0 ? `${formatDuration(delta)} ago` : `in ${formatDuration(-delta)}`;
  return `${clock} (${rel})`;
}

/**
 * Renders rows as aligned columns. Columns whose header starts with '>' are right-aligned (the '>'
 * is dropped). Cell text is taken as is, except newlines, which become spaces.
 */
export function renderTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  indent = '  ',
): string {
  const right = headers.map((h) => h.startsWith('>'));
  const head = headers.map((h) => (h.startsWith('>') ? h.slice(1) : h));
  const clean = rows.map((row) => head.map((_, i) => (row[i] ?? '').replace(/\s*\n\s*/g, ' ')));
  const widths = head.map((h, i) => Math.max(h.length, ...clean.map((row) => (row[i] as string).length)));
  const line = (cells: readonly string[]) =>
    indent +
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(head), ...clean.map(line)].join('\n');
}

function truncate(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

const n = (v: number | null | undefined): string => (v === null || v === undefined ? '-' : String(v));

/** The readable form of `tally status`. */
export function formatStatus(s: TallyStatus): string {
  const now = s.at;
  const out: string[] = [
    `Tally status · prefix ${s.prefix} · group ${s.consumerGroup} · ${s.partitionCount} partition${s.partitionCount === 1 ? '' : 's'}` +
      ` · leases ${s.leases ? 'on' : 'off'} · ${new Date(now).toISOString()}`,
    '',
    'Streams',
    renderTable(
      [
        '>partition',
        '>length',
        '>lag',
        '>entries read',
        '>pending',
        'oldest pending',
        'lease owner',
        '>lease ttl',
        '>consumers',
      ],
      s.partitions.map((p) => [
        String(p.partition),
        String(p.streamLength),
        p.group ? n(p.group.lag) : 'no group',
        p.group ? n(p.group.entriesRead) : '-',
        String(p.pending.count),
        p.pending.count === 0
          ? '-'
          : `${p.pending.oldestAgeMs === null ? '?' : formatDuration(p.pending.oldestAgeMs)} old` +
            (p.pending.oldestIdleMs === null
              ? ''
              : ` (idle ${formatDuration(p.pending.oldestIdleMs)}, ${p.pending.oldestDeliveries} deliver${p.pending.oldestDeliveries === 1 ? 'y' : 'ies'})`),
        p.lease.owner ?? '-',
        p.lease.ttlMs === null ? '-' : formatDuration(p.lease.ttlMs),
        String(p.consumers.length),
      ]),
    ),
    '',
    'Windows (event time)',
    renderTable(
      [
        '>partition',
        '>open',
        'next close',
        'closed through',
        'stream time',
        '>dead letters',
        '>outbox',
        '>corrections',
      ],
      s.partitions.map((p) => [
        String(p.partition),
        String(p.windows.open),
        p.windows.oldest ? `${formatTime(p.windows.oldest.closesAt, now)} ${p.windows.oldest.meter}` : '-',
        formatTime(p.closedThrough, now),
        formatTime(p.streamTime, now),
        String(p.deadLetters),
        String(p.outbox),
        String(p.correctionsPending),
      ]),
    ),
  ];
  const consumers = s.partitions.flatMap((p) =>
    p.consumers
      .filter((c) => !c.stale)
      .map((c) => [
        String(p.partition),
        c.name,
        String(c.pending),
        formatDuration(c.idleMs),
        c.inactiveMs === null ? '-' : formatDuration(c.inactiveMs),
        c.leaseOwner ? 'yes' : '',
      ]),
  );
  out.push('', 'Consumers');
  out.push(
    consumers.length
      ? renderTable(['>partition', 'consumer', '>pending', '>idle', '>inactive', 'lease'], consumers)
      : '  (none)',
  );
  const stale = [
    ...new Set(s.partitions.flatMap((p) => p.consumers.filter((c) => c.stale).map((c) => c.name))),
  ];
  if (stale.length > 0) {
    const names = stale.length > 5 ? `${stale.slice(0, 5).join(', ')}, …` : stale.join(', ');
    out.push(
      `  + ${stale.length} stale (idle, nothing pending, not a live replica; --json lists them): ${names}`,
    );
  }
  out.push('', 'Replicas');
  out.push(
    s.replicas.length
      ? renderTable(
          ['replica', 'heartbeat', 'partitions'],
          s.replicas.map((r) => [
            r.name,
            r.live === null
              ? 'not registered'
              : r.live
                ? `live (expires in ${formatDuration((r.expiresAt ?? now) - now)})`
                : `expired ${formatDuration(now - (r.expiresAt ?? now))} ago`,
            r.partitions.length ? r.partitions.join(',') : '-',
          ]),
        )
      : '  (none registered)',
  );
  const reg = s.registry;
  out.push('', `Meter registry v${reg.version}${reg.partitions !== null ? ` · ${reg.partitions} partitions` : ''}`);
  out.push(
    reg.meters.length
      ? renderTable(
          ['meter', 'event type', 'aggregation', 'window', '>since', 'state'],
          reg.meters.map((m) => [
            m.slug,
            m.eventType,
            m.aggregation,
            m.windowSize,
            `v${m.activeSince}`,
            m.deletedAt === null ? 'active' : `deleted ${formatTime(m.deletedAt, now)}`,
          ]),
        )
      : '  (no meter registered: no process has started on this prefix)',
  );
  if (reg.processes.length)
    out.push(
      '',
      renderTable(
        ['process', 'role', '>follows', 'seen'],
        reg.processes.map((p) => [p.name, p.role, `v${p.version}`, formatTime(p.seenAt, now)]),
      ),
    );
  if (s.warnings.length) out.push('', 'Warnings', ...s.warnings.map((w) => `  - ${w}`));
  return out.join('\n');
}

/** The readable form of `tally dead-letter list`. */
export function formatDeadLetters(list: readonly DeadLetter[], now: number, limit?: number): string {
  if (list.length === 0) return 'no dead letters';
  const table = renderTable(
    ['ref', 'at', 'reason', 'event (source/id)', 'subject', 'detail'],
    list.map((d) => [
      d.ref,
      formatTime(d.at, now),
      d.reason,
      d.event?.id !== undefined ? `${d.event.source ?? '?'}/${d.event.id}` : '-',
      d.event?.subject ?? '-',
      truncate(d.detail + (d.deliveries !== null ? ` (${d.deliveries} deliveries)` : ''), 80),
    ]),
    '',
  );
  const last = list.at(-1) as DeadLetter;
  const more = limit !== undefined && list.length >= limit ? `; more may follow: --after ${last.ref}` : '';
  return `${table}\n${list.length} dead letter${list.length === 1 ? '' : 's'}${more}`;
}

/** The readable form of `tally dead-letter replay`. */
export function formatReplay(r: ReplayResult): string {
  const lines: string[] = [];
  for (const x of r.replayed) {
    const what = x.event?.id !== undefined ? ` ${x.event.source ?? '?'}/${x.event.id}` : '';
    const scope = (x.scope === 'entry' ? 'whole entry' : 'event') + (x.meter !== null ? `, meter ${x.meter} only` : '');
    const where = `→ partition ${x.partition} (${scope}, field ${x.field})`;
    const done = r.dryRun ? 'would replay' : 'replayed';
    const tail = r.dryRun
      ? ''
      : ` as ${x.entryId}${x.deleted ? '; dead letter removed' : '; dead letter kept'}`;
    lines.push(`${done} ${x.ref} [${x.reason}]${what} ${where}${tail}`);
  }
  for (const x of r.skipped) lines.push(`skipped ${x.ref} [${x.reason}]: ${x.why}`);
  for (const ref of r.notFound) lines.push(`not found ${ref}`);
  for (const x of r.failed) lines.push(`FAILED ${x.ref}: ${x.error}`);
  const verb = r.dryRun ? 'would be replayed (dry run: nothing written)' : 'replayed';
  lines.push(
    `${r.replayed.length} ${verb}, ${r.skipped.length} skipped, ${r.notFound.length} not found, ${r.failed.length} failed`,
  );
  return lines.join('\n');
}
