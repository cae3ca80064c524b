export { MeterSchema, Aggregations, type Aggregation, type MeterInput } from './schema.js';
export {
  compileMeters,
  meterUpdate,
  aggregationOfCode,
  AggregationCode,
  MeterIndex,
  type Meter,
  type MeterUpdate,
  type MeterRejection,
} from './meter.js';
export { toScaled, toScaledString, formatScaled, divideScaled, VALUE_SCALE } from './decimal.js';
export { compileJsonPath } from './json-path.js';
