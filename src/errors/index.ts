export { ErrorCode, TallyError, TallyConfigError, TallyValidationError, TallyScriptError } from './errors.js';
