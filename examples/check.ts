/**
 * Check an entitlement in real time: may customer-42 use GPT-5 tokens now, and how many are left?
 *
 *   npx tsx examples/check.ts [subject] [feature]      # default: customer-42 gpt5_tokens
 *
 * Usage includes windows still open, so tokens sent a moment ago (examples/produce.ts) count at once.
 * The features and defaults come from the definitions the workers published to Redis at start (the
 * `entitlements:` section of config/tally.yaml); `definitionsNote` says when they differ from this
 * config's, or when no worker published any.
 */
import { definitionsNote, EntitlementChecker, loadConfigFile } from 'tally-metering';

const [subject = 'customer-42', feature = 'gpt5_tokens'] = process.argv.slice(2);
const config = await loadConfigFile(process.env.TALLY_CONFIG ?? 'config/tally.yaml');
console.error(`Redis ${new URL(config.redisUrl).host}, prefix ${config.prefix}`);
const checker = new EntitlementChecker({ config });
try {
  const note = definitionsNote(await checker.definitionsCatalog(), config);
  if (note) console.error(note);
  const c = await checker.check(subject, feature);
  console.log(
    c.type === 'metered'
      ? `${subject} ${feature}: hasAccess=${c.hasAccess}, usage ${c.exact?.usage} of ${c.exact?.limit} (${c.limitType}), ` +
          `balance ${c.exact?.balance}, period ${c.periodStart}..${c.periodEnd} (live ${c.exact?.liveUsage}, applied ${c.exact?.appliedUsage})`
      : `${subject} ${feature}: ${c.type}, hasAccess=${c.hasAccess}`,
  );
} finally {
  await checker.close();
}
