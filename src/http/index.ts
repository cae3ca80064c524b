export { TallyHttpServer, listenAddress } from './server.js';
export {
  startObservabilityServer,
  redisCheck,
  registerObservability,
  type Readiness,
  type ReadinessCheck,
  type ObservabilityOptions,
} from './observability.js';
export { defaultHttpServerOptions, type HttpServerOptions, type ListenOptions } from './options.js';
export type { Problem, MeterQueryResult } from './schemas.js';
