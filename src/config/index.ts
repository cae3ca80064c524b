export { ConfigSchema, LatePolicies } from './schema.js';
export {
  resolveConfig,
  loadConfigFile,
  DEDUP_GENERATIONS,
  type TallyConfig,
  type TallyConfigData,
  type TallyConfigInput,
} from './load.js';
export { parseDuration } from './duration.js';
