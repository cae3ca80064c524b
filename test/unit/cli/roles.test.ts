/** `tally worker --roles`: notifications (webhook delivery) is a role, opt-in, never a default. */
import { describe, expect, it } from 'vitest';
import { DefaultWorkerRoles, parseRoles, WorkerRoles } from '../../../src/cli/roles.js';

describe('worker roles', () => {
  it('default to metering and entitlements; notifications only when asked for', () => {
    expect(WorkerRoles).toEqual(['metering', 'entitlements', 'notifications']);
    expect(parseRoles(undefined)).toEqual({ roles: new Set(DefaultWorkerRoles), explicit: false });
    expect([...parseRoles(undefined).roles]).toEqual(['metering', 'entitlements']);
    expect([...parseRoles('notifications').roles]).toEqual(['notifications']);
    expect([...parseRoles('metering, notifications').roles]).toEqual(['metering', 'notifications']);
    expect(() => parseRoles('webhooks')).toThrow(/roles are metering, entitlements, notifications/);
  });
});
