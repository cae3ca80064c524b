export type { WindowBounds, WindowSpec } from './window.js';
export { formatIsoUtc, parseWindowSize, windowOf, windowStartOf, windowsBetween } from './window.js';
