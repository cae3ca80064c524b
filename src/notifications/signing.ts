import { createHmac, randomBytes } from 'node:crypto';

/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com, as Svix and OpenMeter send them):
 * `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, the key being the
 * base64-decoded part of the secret after `whsec_`. The same values go out under the `svix-*` names.
 */
export const SECRET_PREFIX = 'whsec_';

/** A new signing secret: `whsec_` + base64 of 32 random bytes. */
export function generateSigningSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

export function sign(secret: string, id: string, timestampSec: number, body: string): string {
  const key = Buffer.from(
    secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret,
    'base64',
  );
  const mac = createHmac('sha256', key).update(`${id}.${timestampSec}.${body}`).digest('base64');
  return `v1,${mac}`;
}

/** The signature headers of one attempt (a new timestamp each attempt, the same id). */
export function signatureHeaders(
  secret: string,
  id: string,
  timestampSec: number,
  body: string,
): Record<string, string> {
  const signature = sign(secret, id, timestampSec, body);
  const ts = String(timestampSec);
  return {
    'webhook-id': id,
    'webhook-timestamp': ts,
    'webhook-signature': signature,
    'svix-id': id,
    'svix-timestamp': ts,
    'svix-signature': signature,
  };
}
