export { alignDown, DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS } from './units.js';
export { normalizeTimeZone, offsetAt } from './zone.js';
export { zoneFor, type ZoneOffsets } from './zone-offsets.js';
export { sleep } from './sleep.js';
