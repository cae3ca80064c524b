import { metrics, type Counter, type Histogram } from '@opentelemetry/api';

/**
 * The entitlement components' metrics, through @opentelemetry/api only (the application wires an SDK,
 * the library never does); attribute names are `tally.*`, as in telemetry/telemetry.ts.
 */
const meter = metrics.getMeter('tally');

export interface EntitlementInstruments {
  readonly rollupsApplied: Counter;
  readonly notificationsRelayed: Counter;
  readonly checks: Counter;
  readonly checkDuration: Histogram;
}

export const entitlementInstruments: EntitlementInstruments = {
  rollupsApplied: meter.createCounter('tally.entitlements.rollups', { description: 'Rollup applications to entitlement usage, by status' }),
  notificationsRelayed: meter.createCounter('tally.entitlements.notifications', { description: 'Entitlement notifications added to the queue' }),
  checks: meter.createCounter('tally.entitlements.checks', { description: 'Entitlement checks answered' }),
  checkDuration: meter.createHistogram('tally.entitlements.check.duration', { description: 'Time to answer a check', unit: 'ms' }),
};
