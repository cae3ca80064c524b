export {
  MeterRegistry,
  PartitionView,
  type MeterInfo,
  type RegisteredMeter,
  type RegistrySnapshot,
} from './registry.js';
export { RegistryFollower, type FollowerOptions } from './follower.js';
export {
  definitionOf,
  definitionJson,
  firstDifference,
  DEFINITION_FIELDS,
  type MeterDefinition,
  type DefinitionField,
} from './definition.js';
