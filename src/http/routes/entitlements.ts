import { Type } from '@sinclair/typebox';
import type { ApiContext, App } from '../context.js';
import { HttpProblem, ProblemTypes } from '../problems.js';
import { EntitlementValueSchema, withProblems } from '../schemas.js';

/** GET /api/v1/subjects/{subject}/entitlements/{feature}/value: the real-time check (docs/entitlements.md). */
export function registerEntitlementRoutes(app: App, ctx: ApiContext): void {
  app.get(
    '/api/v1/subjects/:subjectIdOrKey/entitlements/:entitlementIdOrFeatureKey/value',
    {
      schema: {
        operationId: 'getEntitlementValue',
        summary: 'Entitlement value of a subject, now (usage includes windows still open)',
        tags: ['Entitlements'],
        params: Type.Object({ subjectIdOrKey: Type.String(), entitlementIdOrFeatureKey: Type.String() }),
        response: withProblems({ 200: Type.Ref(EntitlementValueSchema) }, 404),
      },
    },
    async (request) => {
      const { subjectIdOrKey: subject, entitlementIdOrFeatureKey: feature } = request.params;
      const check = await ctx.checker.check(subject, feature);
      if (check.type === 'none')
        throw check.reason === 'unknown-feature'
          ? new HttpProblem(
              404,
              `unknown feature ${JSON.stringify(feature)}: no feature has this key`,
              {},
              {},
              ProblemTypes.unknownFeature,
            )
          : new HttpProblem(
              404,
              `subject ${JSON.stringify(subject)} has no entitlement to feature ${JSON.stringify(feature)}`,
              {},
              {},
              ProblemTypes.noEntitlement,
            );
      return {
        hasAccess: check.hasAccess,
        ...(check.balance !== undefined ? { balance: check.balance } : {}),
        ...(check.usage !== undefined ? { usage: check.usage } : {}),
        ...(check.overage !== undefined ? { overage: check.overage } : {}),
        ...(check.type === 'static' ? { config: JSON.stringify(check.config) } : {}),
      };
    },
  );
}
