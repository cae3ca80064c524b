import { Type, type TSchema } from '@sinclair/typebox';
import {
  ChannelCreateSchema,
  NotificationInputError,
  ResendSchema,
  RuleCreateSchema,
  ruleView,
  type NotificationStore,
} from '../../notifications/index.js';
import type { ApiContext, App } from '../context.js';
import { HttpProblem } from '../problems.js';
import { withProblems } from '../schemas.js';

/** The store's refusals as problems: 400 naming the field, 404 for an unknown id. */
async function answer<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof NotificationInputError)
      throw new HttpProblem(
        err.status,
        err.status === 400 ? `${err.field}: ${err.message}` : err.message,
        err.status === 400 ? { errors: [{ field: err.field, detail: err.message }] } : {},
      );
    throw err;
  }
}

const paged = (item: TSchema) =>
  Type.Object({
    totalCount: Type.Integer(),
    page: Type.Integer(),
    pageSize: Type.Integer(),
    items: Type.Array(item),
  });
const PageQuery = {
  page: Type.Optional(Type.Integer({ minimum: 1, default: 1 })),
  pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
};
const anyObject = Type.Object({}, { additionalProperties: true });
const stringList = Type.Optional(Type.Array(Type.String()));

function pageOf<T>(all: T[], page = 1, pageSize = 100) {
  return { totalCount: all.length, page, pageSize, items: all.slice((page - 1) * pageSize, page * pageSize) };
}

/**
 * OpenMeter's notification API (/api/v1/notification/...): webhook channels, rules and events, in
 * its paths and shapes, so @openmeter/sdk's `notifications.*` work unchanged (docs/notifications.md).
 */
export function registerNotificationRoutes(app: App, ctx: ApiContext): void {
  const store: NotificationStore = ctx.notifications;
  const tags = ['Notifications'];
  const channelId = Type.Object({ channelId: Type.String() });
  const ruleId = Type.Object({ ruleId: Type.String() });
  const eventId = Type.Object({ eventId: Type.String() });

  app.post(
    '/api/v1/notification/channels',
    {
      schema: {
        operationId: 'createNotificationChannel',
        summary: 'Create a webhook channel',
        tags,
        body: ChannelCreateSchema,
        response: withProblems({ 201: anyObject }, 400),
      },
    },
    async (request, reply) => reply.code(201).send(await answer(() => store.createChannel(request.body))),
  );
  app.get(
    '/api/v1/notification/channels',
    {
      schema: {
        operationId: 'listNotificationChannels',
        summary: 'List channels',
        tags,
        querystring: Type.Object({ ...PageQuery, includeDisabled: Type.Optional(Type.Boolean()) }),
        response: { 200: paged(anyObject) },
      },
    },
    async (request) => {
      const all = await store.listChannels();
      const shown = request.query.includeDisabled === false ? all.filter((c) => !c.disabled) : all;
      return pageOf(shown, request.query.page, request.query.pageSize);
    },
  );
  app.get(
    '/api/v1/notification/channels/:channelId',
    {
      schema: {
        operationId: 'getNotificationChannel',
        summary: 'Get a channel',
        tags,
        params: channelId,
        response: withProblems({ 200: anyObject }, 404),
      },
    },
    (request) => answer(() => store.channel(request.params.channelId)),
  );
  app.put(
    '/api/v1/notification/channels/:channelId',
    {
      schema: {
        operationId: 'updateNotificationChannel',
        summary: 'Replace a channel (an omitted signingSecret is kept)',
        tags,
        params: channelId,
        body: ChannelCreateSchema,
        response: withProblems({ 200: anyObject }, 400, 404),
      },
    },
    (request) => answer(() => store.updateChannel(request.params.channelId, request.body)),
  );
  app.delete(
    '/api/v1/notification/channels/:channelId',
    {
      schema: {
        operationId: 'deleteNotificationChannel',
        summary: 'Delete a channel',
        tags,
        params: channelId,
        response: withProblems({ 204: Type.Null() }, 404),
      },
    },
    async (request, reply) => {
      await answer(() => store.deleteChannel(request.params.channelId));
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/api/v1/notification/rules',
    {
      schema: {
        operationId: 'createNotificationRule',
        summary: 'Create a rule (entitlements.balance.threshold or entitlements.reset)',
        tags,
        body: RuleCreateSchema,
        response: withProblems({ 201: anyObject }, 400),
      },
    },
    async (request, reply) =>
      reply.code(201).send(ruleView(await answer(() => store.createRule(request.body)))),
  );
  app.get(
    '/api/v1/notification/rules',
    {
      schema: {
        operationId: 'listNotificationRules',
        summary: 'List rules',
        tags,
        querystring: Type.Object({
          ...PageQuery,
          includeDisabled: Type.Optional(Type.Boolean()),
          feature: stringList,
          channel: stringList,
        }),
        response: { 200: paged(anyObject) },
      },
    },
    async (request) => {
      const q = request.query;
      const all = (await store.listRules()).filter(
        (r) =>
          (q.includeDisabled !== false || !r.disabled) &&
          (!q.feature?.length || r.features.some((f) => q.feature?.includes(f))) &&
          (!q.channel?.length || r.channels.some((c) => q.channel?.includes(c))),
      );
      return pageOf(all.map(ruleView), q.page, q.pageSize);
    },
  );
  app.get(
    '/api/v1/notification/rules/:ruleId',
    {
      schema: {
        operationId: 'getNotificationRule',
        summary: 'Get a rule',
        tags,
        params: ruleId,
        response: withProblems({ 200: anyObject }, 404),
      },
    },
    async (request) => ruleView(await answer(() => store.rule(request.params.ruleId))),
  );
  app.put(
    '/api/v1/notification/rules/:ruleId',
    {
      schema: {
        operationId: 'updateNotificationRule',
        summary: 'Replace a rule',
        tags,
        params: ruleId,
        body: RuleCreateSchema,
        response: withProblems({ 200: anyObject }, 400, 404),
      },
    },
    async (request) => ruleView(await answer(() => store.updateRule(request.params.ruleId, request.body))),
  );
  app.delete(
    '/api/v1/notification/rules/:ruleId',
    {
      schema: {
        operationId: 'deleteNotificationRule',
        summary: 'Delete a rule',
        tags,
        params: ruleId,
        response: withProblems({ 204: Type.Null() }, 404),
      },
    },
    async (request, reply) => {
      await answer(() => store.deleteRule(request.params.ruleId));
      return reply.code(204).send(null);
    },
  );
  app.post(
    '/api/v1/notification/rules/:ruleId/test',
    {
      schema: {
        operationId: 'testNotificationRule',
        summary: "Send a sample event of the rule's type to its channels",
        tags,
        params: ruleId,
        response: withProblems({ 201: anyObject }, 404),
      },
    },
    async (request, reply) => reply.code(201).send(await answer(() => store.testRule(request.params.ruleId))),
  );

  app.get(
    '/api/v1/notification/events',
    {
      schema: {
        operationId: 'listNotificationEvents',
        summary: 'List events, newest first, with their delivery status per channel',
        tags,
        querystring: Type.Object({
          ...PageQuery,
          from: Type.Optional(Type.String({ format: 'date-time' })),
          to: Type.Optional(Type.String({ format: 'date-time' })),
          rule: stringList,
          channel: stringList,
          feature: stringList,
          subject: stringList,
        }),
        response: withProblems({ 200: paged(anyObject) }, 400),
      },
    },
    (request) => {
      const q = request.query;
      return answer(() =>
        store.listEvents(
          {
            ...(q.rule ? { rule: q.rule } : {}),
            ...(q.channel ? { channel: q.channel } : {}),
            ...(q.feature ? { feature: q.feature } : {}),
            ...(q.subject ? { subject: q.subject } : {}),
            ...(q.from ? { from: Date.parse(q.from) } : {}),
            ...(q.to ? { to: Date.parse(q.to) } : {}),
          },
          q.page,
          q.pageSize,
        ),
      );
    },
  );
  app.get(
    '/api/v1/notification/events/:eventId',
    {
      schema: {
        operationId: 'getNotificationEvent',
        summary: 'Get an event',
        tags,
        params: eventId,
        response: withProblems({ 200: anyObject }, 404),
      },
    },
    (request) => answer(() => store.event(request.params.eventId)),
  );
  app.post(
    '/api/v1/notification/events/:eventId/resend',
    {
      schema: {
        operationId: 'resendNotificationEvent',
        summary: 'Deliver an event again, with the same webhook-id',
        tags,
        params: eventId,
        body: Type.Optional(ResendSchema),
        response: withProblems({ 202: Type.Null() }, 400, 404),
      },
    },
    async (request, reply) => {
      await answer(() => store.resend(request.params.eventId, request.body?.channels));
      return reply.code(202).send(null);
    },
  );
}
