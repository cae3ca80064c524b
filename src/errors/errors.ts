/**
 * Every error Tally throws is a TallyError with a stable `code`, so callers can branch on the code
 * instead of parsing messages. Lua scripts return codes from the same list; `redis/scripts.ts` is the
 * one place that maps them.
 */
export const ErrorCode = {
  Config: 'ERR_TALLY_CONFIG',
  Validation: 'ERR_TALLY_VALIDATION',
  RedisScript: 'ERR_TALLY_REDIS_SCRIPT',
  Closed: 'ERR_TALLY_CLOSED',
  State: 'ERR_TALLY_STATE',
  /** Redis did not answer in time (unreachable, or still reconnecting). */
  Unavailable: 'ERR_TALLY_UNAVAILABLE',
  Permission: 'ERR_TALLY_PERMISSION',
  /** A call was prepared at another meter-registry version than its partition's: prepare it again. */
  StaleRegistry: 'ERR_TALLY_STALE_REGISTRY',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class TallyError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A configuration or option value is wrong; the message names the field and the bad value. */
export class TallyConfigError extends TallyError {
  readonly field: string;

  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Config, `${field}: ${message}`, options);
    this.field = field;
  }
}

/** An event or job failed its schema; `reason` is the short, machine-readable cause. */
export class TallyValidationError extends TallyError {
  readonly reason: string;

  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Validation, message, options);
    this.reason = reason;
  }
}

/** A Lua script returned an error code or failed in Redis. */
export class TallyScriptError extends TallyError {
  readonly script: string;

  constructor(script: string, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.RedisScript, `${script}: ${message}`, options);
    this.script = script;
  }
}

/**
 * applyBatch refused a call prepared at another meter-registry version than its partition is at:
 * nothing was applied; the worker reads the registry again and prepares the entries anew.
 */
export class TallyStaleRegistryError extends TallyError {
  constructor(
    readonly partition: number,
    readonly prepared: number,
    readonly current: number,
  ) {
    super(
      ErrorCode.StaleRegistry,
      `partition ${partition} is at meter-registry version ${current}, the call was prepared at ${prepared}`,
    );
  }
}
