import type { X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { SnapkeeperError, UsageError } from '../errors.js';
import { stats } from '../util/stats.js';

/**
 * The transport layer: one POST of a SOAP envelope, one answer. Everything cross-cutting (retry, fault
 * injection, logging) wraps the single `Transport` function, as govmomi's RoundTripper does.
 */

export interface SoapRequest {
  /** vim25 method name, for wrappers and error messages (never the body: it can hold a password). */
  method: string;
  /** Value of the SOAPAction header, `urn:vim25/<apiVersion>`. */
  action: string;
  body: string;
  /** `vmware_soap_session` cookie value, when logged in. */
  session?: string;
  signal?: AbortSignal;
}

export interface SoapResponse {
  status: number;
  body: string;
  /** Session cookie set by the server (on Login), if any. */
  session?: string;
}

/**
 * Sends one request and resolves with the server's answer, whatever its HTTP status (a SOAP fault comes back
 * as 500). Rejects with TransportError when no answer arrives: refused, reset, dropped, timed out, aborted.
 */
export type Transport = (request: SoapRequest) => Promise<SoapResponse>;

export type TransportErrorCode = 'VCENTER_CONNECTION_FAILED' | 'VCENTER_TIMEOUT';

/** No HTTP answer: the connection failed, was dropped or timed out. */
export class TransportError extends SnapkeeperError {
  constructor(
    code: TransportErrorCode,
    message: string,
    /**
     * The request went out on a kept-alive socket that had already carried an earlier answer. A connection
     * failure on such a socket most often means the server closed it while idle, before or while the request
     * was written: `retryIdempotentReads` sends read methods once more on a fresh socket.
     */
    readonly reusedSocket: boolean,
    options: { cause?: unknown } = {},
  ) {
    super(code, message, options);
  }
}

/** Read-only vim25 methods that may be sent twice: retried once after a stale keep-alive socket. */
export const IDEMPOTENT_READS: ReadonlySet<string> = new Set([
  'RetrievePropertiesEx',
  'ContinueRetrievePropertiesEx',
  'RetrieveServiceContent',
]);

/**
 * A Transport wrapper: a read method (IDEMPOTENT_READS) that fails with VCENTER_CONNECTION_FAILED on a
 * reused keep-alive socket is sent once more (the agent then opens a fresh socket if the pool has none
 * left). Anything else (other methods, timeouts, fresh sockets, a second failure) surfaces unchanged.
 */
export function retryIdempotentReads(inner: Transport): Transport {
  return async (request) => {
    try {
      return await inner(request);
    } catch (err) {
      if (
        !(err instanceof TransportError) ||
        err.code !== 'VCENTER_CONNECTION_FAILED' ||
        !err.reusedSocket ||
        !IDEMPOTENT_READS.has(request.method) ||
        request.signal?.aborted === true
      ) {
        throw err;
      }
      return await inner(request);
    }
  };
}

export interface HttpTransportOptions {
  /** The SDK endpoint, e.g. `https://vc.example/sdk`. */
  url: string;
  /** Pinned certificate fingerprint (SHA-256 or SHA-1, hex, colons optional). */
  thumbprint?: string;
  /** Accept any certificate. Only for labs. */
  insecure?: boolean;
  /** At most this many requests in flight to this vCenter; the rest queue. */
  maxConcurrentRequests: number;
  /** Per-request timeout: no complete answer within it fails the request. */
  timeoutMs: number;
}

/** Normalises a fingerprint to upper-case hex with colons, as node prints them. */
export function normaliseFingerprint(fp: string): string {
  const hex = fp.replace(/:/g, '').toUpperCase();
  return hex.match(/.{2}/g)?.join(':') ?? hex;
}

/** Counting semaphore; waiters are served in arrival order. */
class Semaphore {
  #free: number;
  readonly #waiters: Array<() => void> = [];
  constructor(n: number) {
    this.#free = n;
  }
  async acquire(signal?: AbortSignal): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.#waiters.indexOf(grant);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal?.reason);
      };
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(grant);
    });
  }
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#free++;
  }
}

type ConnCallback = (err: Error | null, socket?: Duplex) => void;

/**
 * An https Agent that pins the server certificate: the socket is handed to the request only after the
 * fingerprint checked out, so nothing (least of all the Login body) is written to an unverified peer.
 * Chain validation is off because pinning is how self-signed vCenter certificates are trusted.
 *
 * Until the handshake ends the socket belongs to no request (a request that times out or is aborted cannot
 * destroy it), so the agent bounds the handshake itself and keeps the pending sockets for `destroy()`.
 */
class PinnedAgent extends https.Agent {
  readonly #pending = new Set<tls.TLSSocket>();

  constructor(
    private readonly expected: string,
    private readonly handshakeTimeoutMs: number,
    options: https.AgentOptions,
  ) {
    super(options);
  }

  override createConnection(options: tls.ConnectionOptions, callback: ConnCallback): undefined {
    const socket = tls.connect({ ...options, rejectUnauthorized: false });
    this.#pending.add(socket);
    let settled = false;
    const settle = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.#pending.delete(socket);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      if (err) {
        socket.destroy();
        callback(err);
      } else callback(null, socket);
    };
    const onError = (err: Error) => settle(err);
    const onClose = () =>
      settle(Object.assign(new Error('connection closed during the TLS handshake'), { code: 'ECONNRESET' }));
    const timer = setTimeout(
      () =>
        settle(
          new TransportError(
            'VCENTER_TIMEOUT',
            `vCenter ${options.host ?? ''}:${options.port ?? ''} did not complete the TLS handshake within ${this.handshakeTimeoutMs / 1000} s`,
            false,
          ),
        ),
      this.handshakeTimeoutMs,
    );
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.once('secureConnect', () => {
      const raw = socket.getPeerX509Certificate?.() as X509Certificate | undefined;
      const sha256 = raw?.fingerprint256 ?? '';
      const sha1 = raw?.fingerprint ?? '';
      const actual = this.expected.length > 59 ? sha256 : sha1;
      if (actual !== '' && actual === this.expected) return settle(null);
      settle(
        new UsageError(
          'TLS_THUMBPRINT_MISMATCH',
          `vCenter certificate fingerprint ${actual || '(none)'} does not match the configured thumbprint ${this.expected}`,
          { details: { expected: this.expected, actual, sha256 } },
        ),
      );
    });
    return undefined;
  }

  /** Destroys the sockets still in their handshake too, then the pooled ones. */
  override destroy(): void {
    for (const socket of [...this.#pending]) socket.destroy();
    super.destroy();
  }
}

/** The HTTP(S) transport: keep-alive, TLS verification or pinning, a concurrency limit, a timeout. */
export class HttpTransport {
  readonly #url: URL;
  readonly #agent: http.Agent;
  readonly #module: typeof http | typeof https;
  readonly #limit: Semaphore;
  readonly #timeoutMs: number;
  #roundTrips = 0;

  constructor(options: HttpTransportOptions) {
    this.#url = new URL(options.url);
    this.#timeoutMs = options.timeoutMs;
    this.#limit = new Semaphore(options.maxConcurrentRequests);
    const agentOptions = { keepAlive: true, maxSockets: options.maxConcurrentRequests };
    if (this.#url.protocol === 'https:') {
      this.#module = https;
      if (options.thumbprint !== undefined) {
        this.#agent = new PinnedAgent(
          normaliseFingerprint(options.thumbprint),
          options.timeoutMs,
          agentOptions,
        );
      } else {
        this.#agent = new https.Agent({ ...agentOptions, rejectUnauthorized: options.insecure !== true });
      }
    } else {
      this.#module = http;
      this.#agent = new http.Agent(agentOptions);
    }
  }

  /** Requests sent so far (each one a round trip, whatever its outcome). */
  get roundTrips(): number {
    return this.#roundTrips;
  }

  /** The Transport function of this connection. */
  readonly send: Transport = async (request) => {
    await this.#limit.acquire(request.signal);
    try {
      this.#roundTrips++;
      stats.soapRoundTrips++;
      return await this.#post(request);
    } finally {
      this.#limit.release();
    }
  };

  /** Closes the keep-alive sockets and any still in their TLS handshake. */
  close(): void {
    this.#agent.destroy();
  }

  #post(request: SoapRequest): Promise<SoapResponse> {
    return new Promise((resolve, reject) => {
      const body = Buffer.from(request.body, 'utf8');
      const headers: http.OutgoingHttpHeaders = {
        'Content-Type': 'text/xml; charset=utf-8',
        'Content-Length': body.length,
        SOAPAction: request.action,
      };
      if (request.session !== undefined) headers.Cookie = `vmware_soap_session=${request.session}`;
      let done = false;
      const fail = (err: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        request.signal?.removeEventListener('abort', onAbort);
        req.destroy();
        reject(err);
      };
      const req = this.#module.request(this.#url, { method: 'POST', agent: this.#agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => fail(this.#connectionError(request, e, req.reusedSocket)));
        res.on('aborted', () =>
          fail(this.#connectionError(request, new Error('response aborted'), req.reusedSocket)),
        );
        res.on('end', () => {
          if (done) return;
          if (!res.complete)
            return fail(this.#connectionError(request, new Error('response truncated'), req.reusedSocket));
          done = true;
          clearTimeout(timer);
          request.signal?.removeEventListener('abort', onAbort);
          const session = sessionFromCookies(res.headers['set-cookie']);
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            ...(session === undefined ? {} : { session }),
          });
        });
      });
      req.on('error', (e) => {
        // The pinning agent's own errors (thumbprint mismatch, handshake timeout) come through here.
        if (e instanceof TransportError) {
          return fail(
            new TransportError(e.code as TransportErrorCode, `${e.message} (${request.method})`, false),
          );
        }
        if (e instanceof SnapkeeperError) return fail(e);
        fail(this.#connectionError(request, e, req.reusedSocket));
      });
      const timer = setTimeout(
        () =>
          fail(
            new TransportError(
              'VCENTER_TIMEOUT',
              `vCenter ${this.#url.host} did not answer ${request.method} within ${this.#timeoutMs / 1000} s`,
              req.reusedSocket,
            ),
          ),
        this.#timeoutMs,
      );
      const onAbort = () => fail(request.signal?.reason ?? new Error('aborted'));
      if (request.signal?.aborted) return onAbort();
      request.signal?.addEventListener('abort', onAbort, { once: true });
      req.end(body);
    });
  }

  #connectionError(request: SoapRequest, cause: Error, reusedSocket: boolean): TransportError {
    const code = (cause as NodeJS.ErrnoException).code;
    return new TransportError(
      'VCENTER_CONNECTION_FAILED',
      `connection to vCenter ${this.#url.host} failed during ${request.method}: ${code ?? cause.message}`,
      reusedSocket,
      { cause },
    );
  }
}

function sessionFromCookies(cookies: string[] | undefined): string | undefined {
  for (const c of cookies ?? []) {
    const m = /^\s*vmware_soap_session=("?)([^";]*)\1/.exec(c);
    if (m) return m[2];
  }
  return undefined;
}
