/**
 * A webhook receiver on 127.0.0.1 for the notification tests: every request is verified with the real
 * `standardwebhooks` and `svix` packages (against the secret of the channel its path names) and
 * recorded; how it answers is scripted per path (200, 500, or hang until the client gives up).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { Webhook as SvixWebhook } from 'svix';

export type Answer = 200 | 500 | 'hang';

export interface Delivery {
  path: string;
  id: string;
  timestamp: string;
  body: string;
  payload: { id: string; type: string; data: Record<string, unknown> } & Record<string, unknown>;
  /** Both verifiers accepted the signature. */
  verified: boolean;
  verifyError?: string;
  answer: Answer;
  at: number;
}

export interface Receiver {
  readonly url: string;
  readonly deliveries: Delivery[];
  /** Sets the channel secret for a path (before its first delivery). */
  secret(path: string, secret: string): void;
  /** Answers for a path, consumed one per request; when used up, `then` (default 200). */
  script(path: string, answers: Answer[], then?: Answer): void;
  of(path: string): Delivery[];
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const secrets = new Map<string, string>();
  const scripts = new Map<string, { answers: Answer[]; then: Answer }>();
  const deliveries: Delivery[] = [];
  const hanging = new Set<ServerResponse>();
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0] as string;
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = req.headers as Record<string, string>;
      const secret = secrets.get(path);
      let verified = false;
      let verifyError: string | undefined;
      try {
        if (!secret) throw new Error(`no secret for ${path}`);
        // Each package on the headers it reads: standardwebhooks the webhook-* ones, svix its own.
        new StandardWebhook(secret).verify(body, {
          'webhook-id': headers['webhook-id'] ?? '',
          'webhook-timestamp': headers['webhook-timestamp'] ?? '',
          'webhook-signature': headers['webhook-signature'] ?? '',
        });
        new SvixWebhook(secret).verify(body, {
          'svix-id': headers['svix-id'] ?? '',
          'svix-timestamp': headers['svix-timestamp'] ?? '',
          'svix-signature': headers['svix-signature'] ?? '',
        });
        verified = true;
      } catch (err) {
        verifyError = (err as Error).message;
      }
      const s = scripts.get(path);
      const answer: Answer = s ? (s.answers.shift() ?? s.then) : 200;
      deliveries.push({
        path,
        id: headers['webhook-id'] ?? '',
        timestamp: headers['webhook-timestamp'] ?? '',
        body,
        payload: JSON.parse(body || '{}') as Delivery['payload'],
        verified,
        ...(verifyError ? { verifyError } : {}),
        answer,
        at: Date.now(),
      });
      if (answer === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      res.writeHead(answer, { 'content-type': 'text/plain' }).end(answer === 200 ? 'ok' : 'broken');
    });
  };
  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    deliveries,
    secret: (path, secret) => secrets.set(path, secret),
    script: (path, answers, then = 200) => scripts.set(path, { answers: [...answers], then }),
    of: (path) => deliveries.filter((d) => d.path === path),
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
