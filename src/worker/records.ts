import { Packr } from 'msgpackr';

// Plain MessagePack (no msgpackr record extensions), as Redis's cmsgpack decodes it.
const packr = new Packr({ useRecords: false, variableMapSize: true });

/** Encodes applyBatch records (strings and numbers only) into one argument. */
export function packRecords(records: readonly (string | number)[]): Buffer {
  return packr.pack(records);
}
