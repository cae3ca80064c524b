export {
  ErrorCode,
  TallyError,
  TallyConfigError,
  TallyValidationError,
  TallyScriptError,
  TallyStaleRegistryError,
} from './errors.js';
