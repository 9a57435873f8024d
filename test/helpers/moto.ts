import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, type TestContext } from 'node:test';
import {
  type CreateBucketOptions,
  createMotoBucket,
  MOTO_ACCESS_KEY,
  MOTO_REGION,
  MOTO_SECRET_KEY,
  type MotoServer,
  motoAvailable,
  startMoto,
} from '../../src/lab/moto.js';
import { requireCapability } from './require.js';

export { MOTO_ACCESS_KEY, MOTO_REGION, MOTO_SECRET_KEY };

export interface FileMoto {
  /** Whether moto can run here (`python3 -c 'import moto'`). */
  readonly available: boolean;
  /** False (and the test skipped, or failed under SNAPKEEPER_REQUIRE_ALL=1) when moto is missing. */
  require(t: TestContext): boolean;
  /** The server's endpoint (`http://127.0.0.1:PORT`), valid inside tests once `before` has run. */
  endpoint(): string;
  server(): MotoServer;
  /** A new bucket with a unique name (tests of one file share the server, never a bucket). */
  bucket(options?: CreateBucketOptions): Promise<string>;
}

/**
 * One moto S3 server for every test of a file: started in `before` when moto is installed, stopped in
 * `after` (and killed if the test process dies). Call at the top level of a test file.
 */
export function fileMoto(): FileMoto {
  const available = motoAvailable();
  let server: MotoServer | undefined;
  let n = 0;
  before(async () => {
    if (available) {
      server = await startMoto({ logFile: join(tmpdir(), `snapkeeper-moto-${process.pid}.log`) });
    }
  });
  after(async () => {
    await server?.stop();
  });
  const get = () => {
    if (!server) throw new Error('no moto server for this file (see available)');
    return server;
  };
  return {
    available,
    require: (t) =>
      requireCapability(t, available, 'moto is not installed for python3 (scripts/setup.sh checks it)'),
    endpoint: () => get().endpoint,
    server: get,
    async bucket(options) {
      n += 1;
      const name = `t${n}-${randomBytes(4).toString('hex')}`;
      await createMotoBucket(get().endpoint, name, options);
      return name;
    },
  };
}

/** A fault for requests to S3 (through `startS3FaultProxy`). */
export interface S3FaultRule {
  /** HTTP method (`PUT`, `GET`, `POST`, `HEAD`, `DELETE`); any when absent. */
  method?: string;
  /** Tested against the path and query (e.g. /uploadId=/ for multipart calls, /\/k$/ for one key). */
  match?: RegExp;
  /** Only the first n requests this rule matches; all when absent. */
  times?: number;
  /**
   * `slowdown`: answer 503 SlowDown without forwarding. `status`: answer `status` (S3 XML error) without
   * forwarding. `drop`: destroy the connection, `before` forwarding (default) or `after` (the server did
   * it, the answer is lost). `hang`: never answer (until the client gives up or the proxy closes).
   */
  action: 'slowdown' | 'status' | 'drop' | 'hang';
  when?: 'before' | 'after';
  status?: number;
}

export interface S3SeenRequest {
  method: string;
  url: string;
  injected?: S3FaultRule['action'];
  /** The request's x-amz-content-sha256 (the payload hash it was signed with). */
  payloadHash?: string;
}

export interface S3FaultProxy {
  /** Endpoint to give the backend instead of moto's. */
  endpoint: string;
  seen: S3SeenRequest[];
  rules: S3FaultRule[];
  reset(): void;
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);

/**
 * A real HTTP proxy in front of a moto server that injects S3 faults (moto does not check signatures, so the
 * changed Host header is fine). Every request is recorded. A body whose SHA-256 is not the payload hash it
 * was signed with is refused with 400 XAmzContentSHA256Mismatch, as AWS S3 does (moto does not check it).
 */
export async function startS3FaultProxy(target: string, rules: S3FaultRule[] = []): Promise<S3FaultProxy> {
  const http = await import('node:http');
  const upstream = new URL(target);
  const agent = new http.Agent({ keepAlive: true });
  const seen: S3SeenRequest[] = [];
  const used = new Map<S3FaultRule, number>();
  const hung: import('node:net').Socket[] = [];
  const pick = (method: string, url: string): S3FaultRule | undefined =>
    proxy.rules.find((r) => {
      if (r.method !== undefined && r.method !== method) return false;
      if (r.match !== undefined && !r.match.test(url)) return false;
      const n = used.get(r) ?? 0;
      if (r.times !== undefined && n >= r.times) return false;
      used.set(r, n + 1);
      return true;
    });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const method = req.method ?? 'GET';
      const url = req.url ?? '/';
      const rule = pick(method, url);
      const payloadHash = req.headers['x-amz-content-sha256'];
      seen.push({
        method,
        url,
        ...(rule ? { injected: rule.action } : {}),
        ...(typeof payloadHash === 'string' ? { payloadHash } : {}),
      });
      if (
        typeof payloadHash === 'string' &&
        /^[0-9a-f]{64}$/.test(payloadHash) &&
        createHash('sha256').update(Buffer.concat(chunks)).digest('hex') !== payloadHash
      ) {
        res.writeHead(400, { 'content-type': 'application/xml' });
        res.end(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>XAmzContentSHA256Mismatch</Code><Message>The provided x-amz-content-sha256 header does not match what was computed.</Message></Error>',
        );
        return;
      }
      if (rule?.action === 'slowdown' || rule?.action === 'status') {
        const status = rule.action === 'slowdown' ? 503 : (rule.status ?? 500);
        const code = rule.action === 'slowdown' ? 'SlowDown' : 'InternalError';
        res.writeHead(status, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected ${code}</Message></Error>`,
        );
        return;
      }
      if (rule?.action === 'hang') {
        hung.push(req.socket);
        return;
      }
      if (rule?.action === 'drop' && rule.when !== 'after') {
        req.socket.destroy();
        return;
      }
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers)) {
        if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
      }
      const body = Buffer.concat(chunks);
      if (body.length > 0 || headers['content-length'] !== undefined)
        headers['content-length'] = String(body.length);
      const up = http.request(
        { hostname: upstream.hostname, port: upstream.port, path: url, method, headers, agent },
        (upRes) => {
          const out: Buffer[] = [];
          upRes.on('data', (c: Buffer) => out.push(c));
          upRes.on('end', () => {
            if (rule?.action === 'drop') {
              req.socket.destroy();
              return;
            }
            const h: Record<string, string | string[]> = {};
            for (const [k, v] of Object.entries(upRes.headers)) {
              if (v !== undefined && !HOP_BY_HOP.has(k)) h[k] = v;
            }
            res.writeHead(upRes.statusCode ?? 502, h);
            res.end(Buffer.concat(out));
          });
        },
      );
      up.on('error', () => req.socket.destroy());
      up.end(body);
    });
  });
  const proxy: S3FaultProxy = {
    endpoint: '',
    seen,
    rules: [...rules],
    reset() {
      proxy.rules = [];
      seen.length = 0;
      used.clear();
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of hung) socket.destroy();
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  proxy.endpoint = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return proxy;
}
