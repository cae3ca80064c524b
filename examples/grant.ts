/**
 * Give one customer its own entitlement and a grant through the API, check it, and clean up (the code of
 * docs/entitlements.md, "API").
 *
 *   npx tsx examples/grant.ts [subject]      # default: acme
 *
 * Config defaults (config/tally.yaml) apply to every subject; `setEntitlement` replaces the default for
 * one subject, `addGrant` adds allowance to its metered entitlement. The `finally` block removes both,
 * so the default applies again even when something in between fails.
 */
import { EntitlementChecker, EntitlementStore, loadConfigFile } from 'tally-metering';

const subject = process.argv[2] ?? 'acme';
const config = await loadConfigFile(process.env.TALLY_CONFIG ?? 'config/tally.yaml');
console.error(`Redis ${new URL(config.redisUrl).host}, prefix ${config.prefix}`);
const store = new EntitlementStore({ config });
const checker = new EntitlementChecker({ config });
let grantId: string | undefined;
try {
  await store.setEntitlement(subject, 'gpt5_tokens', {
    type: 'metered',
    usagePeriod: { interval: 'MONTH', timeZone: 'America/New_York' },
    limit: '5000000',
    limitType: 'soft',
    thresholds: [{ percent: 90 }],
  });
  const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
  const grant = await store.addGrant(subject, 'gpt5_tokens', { amount: 250000, priority: 0, expiresAt });
  grantId = grant.id;
  const c = await checker.check(subject, 'gpt5_tokens');
  console.log(
    `${subject} gpt5_tokens (${c.source}): limit ${c.exact?.limit} + grants ${c.exact?.grants}, usage ${c.exact?.usage}, balance ${c.exact?.balance}`,
  );
  console.log(
    `allowances in burn order: ${(c.allowances ?? []).map((a) => `${a.id === grantId ? 'grant' : a.id} ${a.remaining}/${a.amount}`).join(', ')}`,
  );
} finally {
  if (grantId !== undefined) await store.removeGrant(subject, 'gpt5_tokens', grantId);
  await store.removeEntitlement(subject, 'gpt5_tokens'); // the config default applies again
  const after = await checker.check(subject, 'gpt5_tokens');
  console.log(`cleaned up: ${subject} gpt5_tokens is ${after.source} again (limit ${after.exact?.limit})`);
  await checker.close();
  await store.close();
}
