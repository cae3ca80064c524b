import type { TallyConfig } from '../config/index.js';
import { ErrorCode, TallyError, TallyValidationError } from '../errors/index.js';
import { divideScaled, formatScaled, MeterIndex, type Meter } from '../meters/index.js';
import { rowWindows, type RowWindows } from './rows.js';
import { partitionOf } from '../producer/index.js';
import { RedisComponent, TallyKeys } from '../redis/index.js';
import { withSpan } from '../telemetry/index.js';
import { formatIsoUtc, windowOf, windowsBetween, type WindowBounds } from '../windows/index.js';
import type { UsageQueryOptions, UsageQueryParams, UsageRow } from './options.js';

/** Window hashes read per pipeline round trip. */
const CHUNK = 200;

interface Cell {
  count: bigint;
  sum: bigint;
  min: bigint | undefined;
  max: bigint | undefined;
  latestKey: string;
  latest: bigint | undefined;
  uniques: Set<string> | undefined;
  uniqueValue: bigint;
  cells: number;
}

interface Row {
  readonly start: number;
  readonly end: number;
  readonly subject: string | null;
  readonly groupBy: Record<string, string | null>;
  readonly cell: Cell;
}

function toMs(value: string | number | Date, field: string): number {
  const ms = value instanceof Date ? value.getTime() : typeof value === 'number' ? value : Date.parse(value);
  if (!Number.isFinite(ms))
    throw new TallyValidationError(
      'invalid-time',
      `${field}: expected an ISO 8601 date-time or epoch ms, got ${JSON.stringify(value)}`,
    );
  return ms;
}

/**
 * Usage queries over the stored windows, like OpenMeter's meter query: rows of (window, subject,
 * group-by values, value) for a meter between two instants, from the window hashes of the partitions
 * (closed windows within the retention horizon, and open ones with their value so far).
 *
 * A stored window belongs to the row whose window contains its start. Coarser rows re-aggregate
 * exactly: COUNT and SUM add, MIN and MAX compare, AVG divides the summed sums by the summed counts,
 * LATEST takes the newest event, and UNIQUE_COUNT unions the stored distinct values (window
 * `:u` hashes), since distinct counts themselves cannot be added.
 */
export class UsageQuery extends RedisComponent {
  private readonly config: TallyConfig;
  private readonly keys: TallyKeys;
  private readonly meters: MeterIndex;

  constructor(options: UsageQueryOptions) {
    super(options.config.redis, options, { component: 'usage-query' });
    this.config = options.config;
    this.keys = new TallyKeys(this.config.prefix);
    this.meters = options.meters ?? new MeterIndex(this.config.meters);
  }

  async query(params: UsageQueryParams): Promise<UsageRow[]> {
    if (this.isClosing) throw new TallyError(ErrorCode.Closed, 'UsageQuery is closed');
    const meter = this.meters.bySlug(params.meter);
    if (!meter)
      throw new TallyValidationError('unknown-meter', `unknown meter ${JSON.stringify(params.meter)}`);
    const from = toMs(params.from, 'from');
    const to = toMs(params.to, 'to');
    if (!(from < to))
      throw new TallyValidationError(
        'invalid-range',
        `from must be before to, got ${formatIsoUtc(from)} .. ${formatIsoUtc(to)}`,
      );
    const horizon = Date.now() - this.config.windows.retentionMs;
    if (windowOf(meter.window, from).end <= horizon) {
      throw new TallyValidationError(
        'beyond-retention',
        `from ${formatIsoUtc(from)} is before the retention horizon (${formatIsoUtc(horizon)}, windows.retention): those windows are gone`,
      );
    }
    const rows = rowWindows(meter, params.windowSize, params.timeZone);
    const bySubject = params.bySubject ?? true;
    const groupKeys = [...new Set(params.groupBy ?? [])];
    for (const k of groupKeys) {
      if (!meter.groupKeys.includes(k))
        throw new TallyValidationError(
          'invalid-group-by',
          `meter ${meter.slug} has no group-by ${JSON.stringify(k)}`,
        );
    }
    const filter = new Map<number, Set<string>>();
    if (
      params.filter !== undefined &&
      (typeof params.filter !== 'object' || params.filter === null || Array.isArray(params.filter))
    )
      throw new TallyValidationError(
        'invalid-filter',
        `filter: expected an object of group-by keys to values, got ${JSON.stringify(params.filter)}`,
      );
    for (const [k, v] of Object.entries(params.filter ?? {})) {
      const index = meter.groupKeys.indexOf(k);
      if (index < 0)
        throw new TallyValidationError(
          'invalid-filter',
          `meter ${meter.slug} has no group-by ${JSON.stringify(k)}`,
        );
      filter.set(index, new Set(typeof v === 'string' ? [v] : v));
    }
    const subjects =
      params.subject === undefined
        ? undefined
        : new Set(typeof params.subject === 'string' ? [params.subject] : params.subject);
    const partitions = subjects
      ? [...new Set([...subjects].map((s) => partitionOf(s, this.config.partitions)))]
      : Array.from({ length: this.config.partitions }, (_, i) => i);
    // One stored (window, group) per row is read from its aggregate; otherwise UNIQUE_COUNT needs the values.
    const needUniques =
      meter.aggregation === 'UNIQUE_COUNT' &&
      (!rows?.isMeterWindow || groupKeys.length < meter.groupKeys.length || !bySubject);
    // The cost limit, on the span asked for (estimated from the nominal size, so without listing it).
    const maxWindows = this.config.windows.maxQueryWindows;
    const spanned = Math.ceil((to - from) / meter.window.sizeMs);
    if (spanned > maxWindows) {
      throw new TallyValidationError(
        'too-many-windows',
        `the query spans ${spanned} ${meter.window.label} windows of meter ${meter.slug} (${formatIsoUtc(from)} .. ${formatIsoUtc(to)}); at most ${maxWindows} per query (windows.maxQueryWindows): narrow from and to`,
      );
    }
    // Windows after the one holding now + maxFutureSkew cannot hold usage yet (later events are
    // dead-lettered as future-time): they are not read.
    const readTo = Math.min(to, windowOf(meter.window, Date.now() + this.config.windows.maxFutureSkewMs).end);
    const windowCount = Math.max(0, Math.ceil((readTo - from) / meter.window.sizeMs));
    const { signal } = params;

    return withSpan(
      'usage.query',
      { 'tally.meter': meter.slug, 'tally.windows': windowCount * partitions.length },
      async () => {
        const out = new Map<string, Row>();
        for (const p of partitions) {
          // The window starts are produced lazily, a chunk per round trip, and each chunk yields to
          // the event loop first, so other requests (and /healthz) are answered during a long query.
          for (const chunk of chunksOf(windowsBetween(meter.window, from, readTo), from, CHUNK)) {
            await yieldToEventLoop();
            if (signal?.aborted)
              throw new TallyError(ErrorCode.Closed, 'usage query abandoned: its client went away', {
                cause: signal.reason,
              });
            const pipeline = this.client.pipeline();
            for (const ws of chunk) {
              pipeline.hgetall(this.keys.window(p, meter.slug, ws));
              if (needUniques) pipeline.hgetall(this.keys.uniques(p, meter.slug, ws));
            }
            const replies = (await pipeline.exec()) ?? [];
            const per = needUniques ? 2 : 1;
            chunk.forEach((ws, k) => {
              const [err, hash] = replies[k * per] ?? [null, {}];
              if (err) throw err;
              const uniquesReply = needUniques ? replies[k * per + 1] : undefined;
              if (uniquesReply?.[0]) throw uniquesReply[0];
              this.accumulate(
                out,
                meter,
                ws,
                hash as Record<string, string>,
                uniquesReply?.[1] as Record<string, string> | undefined,
                {
                  rows,
                  bySubject,
                  from,
                  to,
                  groupKeys,
                  filter,
                  subjects,
                },
              );
            });
          }
        }
        return [...out.values()].map((r) => toRow(meter, r)).sort(compareRows);
      },
    );
  }

  private accumulate(
    rows: Map<string, Row>,
    meter: Meter,
    ws: number,
    hash: Record<string, string>,
    uniques: Record<string, string> | undefined,
    ctx: {
      rows: RowWindows | undefined;
      bySubject: boolean;
      from: number;
      to: number;
      groupKeys: readonly string[];
      filter: ReadonlyMap<number, ReadonlySet<string>>;
      subjects: ReadonlySet<string> | undefined;
    },
  ): void {
    const bounds = ctx.rows ? ctx.rows.boundsOf(ws) : { start: ctx.from, end: ctx.to };
    const start = Math.max(bounds.start, ctx.from);
    const end = Math.min(bounds.end, ctx.to);
    const cellOf = (group: string): Cell | undefined => {
      const [subject, ...values] = JSON.parse(group) as [string, ...(string | null)[]];
      if (ctx.subjects && !ctx.subjects.has(subject)) return undefined;
      for (const [index, allowed] of ctx.filter) {
        const v = values[index];
        if (v === null || v === undefined || !allowed.has(v)) return undefined;
      }
      const groupBy: Record<string, string | null> = {};
      for (const k of ctx.groupKeys) groupBy[k] = values[meter.groupKeys.indexOf(k)] ?? null;
      const rowSubject = ctx.bySubject ? subject : null;
      const key = JSON.stringify([start, rowSubject, ctx.groupKeys.map((k) => groupBy[k])]);
      let row = rows.get(key);
      if (!row) {
        row = { start, end, subject: rowSubject, groupBy, cell: emptyCell() };
        rows.set(key, row);
      }
      return row.cell;
    };
    for (const [field, raw] of Object.entries(hash)) {
      if (!field.startsWith('c:')) continue;
      const group = field.slice(2);
      const cell = cellOf(group);
      if (!cell) continue;
      cell.cells++;
      cell.count += BigInt(raw);
      const v = hash[`v:${group}`];
      if (v === undefined) continue;
      const value = BigInt(v);
      switch (meter.aggregation) {
        case 'SUM':
        case 'AVG':
          cell.sum += value;
          break;
        case 'MIN':
          if (cell.min === undefined || value < cell.min) cell.min = value;
          break;
        case 'MAX':
          if (cell.max === undefined || value > cell.max) cell.max = value;
          break;
        case 'LATEST': {
          // Window start first, so a later window always wins; then the event's own sort key.
          const sortKey = `${String(ws).padStart(15, '0')}.${hash[`t:${group}`] ?? ''}`;
          if (sortKey > cell.latestKey) {
            cell.latestKey = sortKey;
            cell.latest = value;
          }
          break;
        }
        case 'UNIQUE_COUNT':
          cell.uniqueValue += value;
          break;
        default:
          break;
      }
    }
    if (uniques) {
      for (const field of Object.keys(uniques)) {
        const nl = field.indexOf('\n');
        const cell = cellOf(field.slice(0, nl));
        if (!cell) continue;
        cell.uniques ??= new Set();
        cell.uniques.add(field.slice(nl + 1));
      }
    }
  }

  /** Nothing of its own to stop; RedisComponent.close closes the connection if it opened it. */
  protected shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** The starts of the windows at or after `from`, `size` at a time. */
function* chunksOf(windows: Iterable<WindowBounds>, from: number, size: number): Generator<number[], void> {
  let chunk: number[] = [];
  for (const w of windows) {
    if (w.start < from) continue;
    chunk.push(w.start);
    if (chunk.length === size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function emptyCell(): Cell {
  return {
    count: 0n,
    sum: 0n,
    min: undefined,
    max: undefined,
    latestKey: '',
    latest: undefined,
    uniques: undefined,
    uniqueValue: 0n,
    cells: 0,
  };
}

function toRow(meter: Meter, r: Row): UsageRow {
  const c = r.cell;
  let valueDecimal: string;
  switch (meter.aggregation) {
    case 'COUNT':
      valueDecimal = c.count.toString();
      break;
    case 'SUM':
      valueDecimal = formatScaled(c.sum);
      break;
    case 'AVG':
      valueDecimal = c.count > 0n ? divideScaled(c.sum, c.count) : '0';
      break;
    case 'MIN':
      valueDecimal = formatScaled(c.min ?? 0n);
      break;
    case 'MAX':
      valueDecimal = formatScaled(c.max ?? 0n);
      break;
    case 'LATEST':
      valueDecimal = formatScaled(c.latest ?? 0n);
      break;
    case 'UNIQUE_COUNT':
      valueDecimal = c.uniques ? String(c.uniques.size) : c.uniqueValue.toString();
      break;
  }
  return {
    windowStart: formatIsoUtc(r.start),
    windowEnd: formatIsoUtc(r.end),
    subject: r.subject,
    groupBy: r.groupBy,
    value: Number(valueDecimal),
    valueDecimal,
    eventCount: Number(c.count),
  };
}

function compareRows(a: UsageRow, b: UsageRow): number {
  if (a.windowStart !== b.windowStart) return a.windowStart < b.windowStart ? -1 : 1;
  if (a.subject !== b.subject) return (a.subject ?? '') < (b.subject ?? '') ? -1 : 1;
  const ga = JSON.stringify(a.groupBy);
  const gb = JSON.stringify(b.groupBy);
  return ga < gb ? -1 : ga > gb ? 1 : 0;
}
