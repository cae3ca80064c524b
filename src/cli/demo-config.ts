/**
 * The demo's configuration: config/tally.yaml (the one README and docs use), made quick to watch. Its
 * meters, features and defaults stay as they are; only the timing and the names change.
 */

type Data = Record<string, unknown>;

const asRecord = (value: unknown): Data =>
  value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Data) : {};

/** What the demo changes in config/tally.yaml, for the line it prints. */
export const DEMO_OVERRIDES =
  'prefix tally-demo, 2 partitions, 10-second windows, 1-minute usage periods, grace 2s, idle timeout 3s';

/** config/tally.yaml's parsed content → the demo's: 10 s windows, 1-minute usage periods, its own keys and queues. */
export function demoConfigData(input: unknown): Data {
  const data = structuredClone(asRecord(input));
  const entitlements = asRecord(data.entitlements);
  return {
    ...data,
    streams: { ...asRecord(data.streams), prefix: 'tally-demo', partitions: 2 },
    windows: { ...asRecord(data.windows), grace: '2s', idleTimeout: '3s' },
    rollups: { ...asRecord(data.rollups), queues: ['tally-demo-billing', 'tally-demo-entitlements'] },
    meters: (Array.isArray(data.meters) ? data.meters : []).map((m) => {
      // A 10 s window has no time zone to align to.
      const meter: Data = { ...asRecord(m), windowSize: '10s' };
      delete meter.timeZone;
      return meter;
    }),
    entitlements: {
      ...entitlements,
      notificationsQueue: 'tally-demo-notifications',
      // Periods of a minute, so thresholds, exhaustion and resets happen while you watch.
      defaults: (Array.isArray(entitlements.defaults) ? entitlements.defaults : []).map((d) => {
        const def = asRecord(d);
        return def.type === 'metered' ? { ...def, usagePeriod: { interval: 'PT1M' } } : def;
      }),
    },
  };
}
