export { UsageProducer, type BatchOutcome } from './producer.js';
export { partitionOf } from './partition.js';
export { defaultProducerOptions, type ProducerOptions } from './options.js';
