import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type * as S3Sdk from '@aws-sdk/client-s3';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { ConflictError, NotFoundError, UsageError } from '../../errors.js';
import { StorageError } from '../errors.js';
import type {
  BackendCapabilities,
  BackendObject,
  BackendSaveOptions,
  ObjectData,
  RepositoryBackend,
} from '../types.js';
import { ReadCache, type ReadCacheOptions } from './read-cache.js';
import { DEFAULT_RETRY, RetryExhausted, type RetryPolicy, withRetry } from './retry.js';

/**
 * The SDK warns on every run under Node 20 about its own future releases; the version snapkeeper uses is
 * pinned, so the warning would only be noise in its output (the SDK's documented switch turns it off). Called
 * before any S3 client is made.
 */
export function quietSdkVersionWarning(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}

let sdkLoading: Promise<typeof S3Sdk> | undefined;
function loadSdk(): Promise<typeof S3Sdk> {
  quietSdkVersionWarning();
  sdkLoading ??= import('@aws-sdk/client-s3');
  return sdkLoading;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/**
 * Where the keys come from: environment variable names, or files holding one value each (trailing newline
 * ignored). Each value comes from exactly one place; none at all means the SDK's default chain (AWS_* variables,
 * ~/.aws, instance roles).
 */
export interface S3CredentialSource {
  accessKeyIdEnv?: string;
  secretAccessKeyEnv?: string;
  sessionTokenEnv?: string;
  accessKeyIdFile?: string;
  secretAccessKeyFile?: string;
  sessionTokenFile?: string;
}

async function oneValue(
  what: string,
  env: string | undefined,
  file: string | undefined,
): Promise<string | undefined> {
  if (env !== undefined && file !== undefined) {
    throw new UsageError(
      'S3_CREDENTIALS_INVALID',
      `S3 ${what}: give an environment variable or a file, not both`,
    );
  }
  if (env !== undefined) {
    const v = process.env[env];
    if (!v) {
      throw new UsageError(
        'S3_CREDENTIALS_INVALID',
        `S3 ${what}: environment variable ${env} is not set or empty`,
      );
    }
    return v;
  }
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new UsageError(
        'S3_CREDENTIALS_INVALID',
        `S3 ${what}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    const v = text.replace(/\r?\n$/, '');
    if (v === '' || /[\r\n]/.test(v)) {
      throw new UsageError('S3_CREDENTIALS_INVALID', `S3 ${what}: ${file} must hold one non-empty line`);
    }
    return v;
  }
  return undefined;
}

/**
 * Reads the keys a source names. UsageError `S3_CREDENTIALS_INVALID` (exit 3) naming the variable or file,
 * never the value. Undefined when the source names nothing (the SDK's default chain applies).
 */
export async function resolveS3Credentials(source: S3CredentialSource): Promise<S3Credentials | undefined> {
  const accessKeyId = await oneValue('access key id', source.accessKeyIdEnv, source.accessKeyIdFile);
  const secretAccessKey = await oneValue(
    'secret access key',
    source.secretAccessKeyEnv,
    source.secretAccessKeyFile,
  );
  const sessionToken = await oneValue('session token', source.sessionTokenEnv, source.sessionTokenFile);
  if (accessKeyId === undefined && secretAccessKey === undefined) {
    if (sessionToken !== undefined) {
      throw new UsageError(
        'S3_CREDENTIALS_INVALID',
        'S3 session token given without access key id and secret',
      );
    }
    return undefined;
  }
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new UsageError(
      'S3_CREDENTIALS_INVALID',
      `S3 credentials: the ${accessKeyId === undefined ? 'access key id' : 'secret access key'} is missing (both or neither)`,
    );
  }
  return { accessKeyId, secretAccessKey, ...(sessionToken !== undefined ? { sessionToken } : {}) };
}

export interface S3BackendOptions {
  /** `http://127.0.0.1:9000`; absent: AWS's endpoint for the region. */
  endpoint?: string;
  /** Default `us-east-1`. */
  region?: string;
  bucket: string;
  /** Key prefix inside the bucket (`repos/prod`); a `/` is added when missing. */
  prefix?: string;
  /** Path-style URLs (`endpoint/bucket/key`), as MinIO, Ceph and moto without wildcard DNS want. */
  pathStyle?: boolean;
  /** Keys (see resolveS3Credentials); absent: the SDK's default chain. Never logged nor in messages. */
  credentials?: S3Credentials;
  /** Objects larger than this go up in parts (default 64 MiB). */
  multipartThreshold?: number;
  /** Part size (default 16 MiB; S3's minimum is 5 MiB except for the last part). */
  partSize?: number;
  /** Parts in flight per object (default 4). */
  partConcurrency?: number;
  /** Attempts and backoff (default 8 attempts, 200 ms doubling to 15 s, full jitter). */
  retry?: Partial<RetryPolicy>;
  /** One attempt longer than this is abandoned and retried (default 120 s). */
  attemptTimeoutMs?: number;
  /** Connecting longer than this fails the attempt (default 10 s). */
  connectTimeoutMs?: number;
  /**
   * The bucket has Object Lock: `save` may set a retention, and `remove` deletes the object's version (a
   * plain delete in a versioned bucket only hides it) and is refused while a retention holds.
   */
  objectLock?: boolean;
  /**
   * `if-none-match` (default): `If-None-Match: *` on PutObject and CompleteMultipartUpload, atomic on AWS S3
   * (since 2024), MinIO and moto 5. `head-then-put`: for servers without it; a HEAD first, then an
   * unconditional write: two writers racing on one key within that window may both write, the later
   * replacing the earlier. Content-named keys make that harmless (same bytes); named ones need a lock.
   */
  conditionalWrite?: 'if-none-match' | 'head-then-put';
  /**
   * Whole-object read-ahead for ranged loads (see read-cache.ts): the second ranged read of an object fetches
   * it whole (up to 32 MiB) and serves later ranges from memory (8 objects kept). Default on; `false` reads
   * every range as asked.
   */
  readCache?: ReadCacheOptions | false;
  /** Told before each retry wait (for logs and tests: never holds a credential). */
  onRetry?: (info: {
    operation: string;
    key: string;
    attempt: number;
    delayMs: number;
    reason: string;
  }) => void;
  /** Jitter source, [0, 1) (tests). */
  random?: () => number;
}

const RETRYABLE_STATUS = new Set([429, 500, 502, 503, 504]);
const RETRYABLE_NAMES = new Set([
  'SlowDown',
  'InternalError',
  'ServiceUnavailable',
  'RequestTimeout',
  'RequestTimeoutException',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'ConditionalRequestConflict',
  'TimeoutError',
  'AttemptTimeout',
]);
const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

interface SdkError {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  cause?: unknown;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode;
}

function nameOf(err: unknown): string {
  const e = err as SdkError | undefined;
  return e?.Code ?? e?.name ?? '';
}

/** Transient: another attempt may pass (server errors, throttling, dropped or refused connections, timeouts). */
export function isRetryableS3Error(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as SdkError).cause, depth++) {
    const status = statusOf(e);
    if (status !== undefined && RETRYABLE_STATUS.has(status)) return true;
    if (RETRYABLE_NAMES.has(nameOf(e))) return true;
    const code = (e as SdkError).code;
    if (code !== undefined && RETRYABLE_CODES.has(code)) return true;
    // The SDK's parser on a truncated or empty body after a dropped connection.
    if (/socket hang up|premature close|ECONNRESET|aborted/i.test((e as SdkError).message ?? '')) return true;
  }
  return false;
}

class AttemptTimeout extends Error {
  override name = 'AttemptTimeout';
}

/** ETag S3 gives an object uploaded in one piece (no SSE-KMS): the MD5 of its bytes, quoted. */
function singleEtag(data: Uint8Array): string {
  return `"${createHash('md5').update(data).digest('hex')}"`;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Signs `command`'s request with a payload hash the caller already knows (SigV4's x-amz-content-sha256, which
 * the signer takes as it is instead of hashing the body): the server still checks the body against it.
 */
function withPayloadHash(command: S3Sdk.PutObjectCommand, sha256: string): void {
  command.middlewareStack.add(
    (next) => async (args) => {
      (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = sha256;
      return next(args);
    },
    { step: 'build', name: 'snapkeeperKnownPayloadHash' },
  );
}

/** ETag of a multipart object: MD5 of the parts' MD5s, then `-N`. */
function multipartEtag(parts: Uint8Array[]): string {
  const h = createHash('md5');
  for (const p of parts) h.update(createHash('md5').update(p).digest());
  return `"${h.digest('hex')}-${parts.length}"`;
}

/**
 * A repository in an S3 bucket (any S3 API: AWS, MinIO, Ceph, moto), under an optional prefix.
 *
 * Every request is retried on transient failures (see `isRetryableS3Error`) with exponential backoff and full
 * jitter, a bounded number of times, each attempt under its own timeout; the SDK's own retries are off so
 * that one policy, which honours abort while waiting, decides. When the attempts are spent the error is a
 * StorageError `STORAGE_UNAVAILABLE` naming the endpoint, bucket and key; a non-transient refusal
 * (AccessDenied, NoSuchBucket, bad keys) is a StorageError `STORAGE_FAILED` at once.
 *
 * A write that succeeded but whose answer was lost is retried, finds the key taken (412), and is recognised
 * as its own by its ETag (MD5 of the bytes, or of the parts' MD5s): it is not reported as `OBJECT_EXISTS`.
 */
export class S3Backend implements RepositoryBackend {
  readonly description: string;
  readonly capabilities: BackendCapabilities;
  readonly bucket: string;
  readonly prefix: string;
  readonly endpoint: string;
  /** Made on first use: loading the SDK costs a short-lived process (a restore from a local repository) ~0.3 s. */
  private instance: { client: S3Client; sdk: typeof S3Sdk } | undefined;
  private readonly clientConfig: S3ClientConfig;
  private lockingClient: S3Client | undefined;
  private readonly policy: RetryPolicy;
  private readonly options: S3BackendOptions;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly secrets: string[];
  private readonly cache: ReadCache | undefined;

  constructor(options: S3BackendOptions) {
    this.options = options;
    this.bucket = options.bucket;
    const p = (options.prefix ?? '').replace(/^\/+/, '');
    this.prefix = p === '' || p.endsWith('/') ? p : `${p}/`;
    const region = options.region ?? 'us-east-1';
    this.endpoint = options.endpoint ?? `aws ${region}`;
    this.description = `s3 ${this.bucket}${this.prefix ? `/${this.prefix.replace(/\/$/, '')}` : ''} at ${this.endpoint}`;
    this.capabilities = {
      conditionalWrite: (options.conditionalWrite ?? 'if-none-match') === 'if-none-match',
      objectLock: options.objectLock === true,
    };
    this.policy = { ...DEFAULT_RETRY, ...options.retry };
    this.cache = options.readCache === false ? undefined : new ReadCache(options.readCache ?? {});
    this.multipartThreshold = options.multipartThreshold ?? 64 * 1024 * 1024;
    this.partSize = Math.max(5 * 1024 * 1024, options.partSize ?? 16 * 1024 * 1024);
    this.secrets = [options.credentials?.secretAccessKey, options.credentials?.sessionToken].filter(
      (s): s is string => typeof s === 'string' && s.length >= 4,
    );
    const agentOptions = { keepAlive: true, maxSockets: 32 };
    this.clientConfig = {
      region,
      ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.pathStyle === true,
      ...(options.credentials ? { credentials: options.credentials } : {}),
      // One retry policy (ours) decides; the SDK's would wait without honouring our abort.
      maxAttempts: 1,
      // No CRC of every byte sent and received (the SDK's default since 3.729): a pack is named by its SHA-256
      // and every blob read is authenticated (AEAD) and checked against its id, which a transfer checksum adds
      // nothing to; it cost the offload and the restore a pass over every byte.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: options.connectTimeoutMs ?? 10_000,
        httpAgent: new HttpAgent(agentOptions),
        httpsAgent: new HttpsAgent(agentOptions),
      },
    };
  }

  /**
   * The SDK and the client, loaded and made on first use. `locking`: the client for saves under retention,
   * which S3 accepts only with a checksum header: it keeps the SDK's default transfer checksums.
   */
  private async ready(locking = false): Promise<{ client: S3Client; sdk: typeof S3Sdk }> {
    if (this.instance === undefined) {
      const sdk = await loadSdk();
      this.instance ??= { client: new sdk.S3Client(this.clientConfig), sdk };
    }
    if (!locking) return this.instance;
    const {
      requestChecksumCalculation: _req,
      responseChecksumValidation: _res,
      ...config
    } = this.clientConfig;
    this.lockingClient ??= new this.instance.sdk.S3Client(config);
    return { client: this.lockingClient, sdk: this.instance.sdk };
  }

  /** Closes the connections. */
  destroy(): void {
    this.instance?.client.destroy();
    this.lockingClient?.destroy();
  }

  private full(key: string): string {
    if (key === '' || key.startsWith('/')) {
      throw new StorageError(
        'OBJECT_KEY_INVALID',
        `${this.description}: invalid object key ${JSON.stringify(key)}`,
        {
          details: { key },
        },
      );
    }
    return this.prefix + key;
  }

  /** An error's text without any credential (S3 messages do not carry them; this makes sure). */
  private scrub(text: string): string {
    let out = text;
    for (const s of this.secrets) out = out.split(s).join('***');
    return out;
  }

  private reason(err: unknown): string {
    const e = err as SdkError;
    const status = statusOf(err);
    const name = nameOf(err);
    const code = e?.code && e.code !== name ? e.code : '';
    const parts = [
      status ? `HTTP ${status}` : '',
      name && name !== 'Error' ? name : '',
      code,
      e?.message ?? String(err),
    ];
    return this.scrub(parts.filter((x) => x && x !== 'UnknownError').join(' '));
  }

  /**
   * One S3 call with retries. `attempt` gets a signal that aborts on the caller's abort or the attempt's
   * timeout. Errors the caller maps itself (404, 412, ...) pass through untouched when `passThrough` says so.
   */
  private async call<T>(
    operation: string,
    key: string,
    signal: AbortSignal | undefined,
    attempt: (signal: AbortSignal, n: number) => Promise<T>,
    passThrough: (err: unknown) => boolean = () => false,
  ): Promise<T> {
    try {
      return await withRetry(
        async (n) => {
          const timeout = new AbortController();
          const timer = setTimeout(
            () => timeout.abort(new AttemptTimeout('attempt timed out')),
            this.options.attemptTimeoutMs ?? 120_000,
          );
          const both = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
          try {
            return await attempt(both, n);
          } catch (err) {
            if (signal?.aborted) throw signal.reason;
            if (timeout.signal.aborted) {
              throw new AttemptTimeout(
                `no answer within ${Math.round((this.options.attemptTimeoutMs ?? 120_000) / 1000)} s`,
              );
            }
            throw err;
          } finally {
            clearTimeout(timer);
          }
        },
        {
          ...this.policy,
          signal,
          retryable: (err) => !passThrough(err) && isRetryableS3Error(err),
          ...(this.options.random ? { random: this.options.random } : {}),
          onRetry: ({ attempt: n, delayMs, error }) =>
            this.options.onRetry?.({ operation, key, attempt: n, delayMs, reason: this.reason(error) }),
        },
      );
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (!(err instanceof RetryExhausted)) throw err;
      const last = err.last;
      if (passThrough(last)) throw last;
      if (err.gaveUp) {
        throw new StorageError(
          'STORAGE_UNAVAILABLE',
          `${this.description}: cannot ${operation} ${key} after ${err.attempts} attempts: ${this.reason(last)}`,
          {
            cause: last,
            details: { key, endpoint: this.endpoint, bucket: this.bucket, attempts: err.attempts },
          },
        );
      }
      const denied = statusOf(last) === 403 || nameOf(last) === 'AccessDenied';
      throw new StorageError(
        'STORAGE_FAILED',
        `${this.description}: cannot ${operation} ${key}: ${this.reason(last)}${denied && operation === 'remove' && this.capabilities.objectLock ? ' (an Object Lock retention holds it, or the keys may not delete)' : ''}`,
        { cause: last, details: { key, endpoint: this.endpoint, bucket: this.bucket } },
      );
    }
  }

  private exists(key: string): ConflictError {
    return new ConflictError('OBJECT_EXISTS', `${this.description}: object ${key} exists`, {
      details: { key },
    });
  }

  /** After a 412 on a retry: is the object there the one we wrote (a lost answer), by ETag? */
  private async isOurs(key: string, etag: string, signal: AbortSignal | undefined): Promise<boolean> {
    const head = await this.head(key, signal);
    return head?.etag === etag;
  }

  async save(key: string, pieces: ObjectData, options: BackendSaveOptions = {}): Promise<void> {
    const { signal, retainUntil } = options;
    // One buffer: a request body is signed and sent whole (a pack's pieces are joined here, not earlier).
    const data = pieces instanceof Uint8Array ? pieces : Buffer.concat(pieces);
    const full = this.full(key);
    this.cache?.drop(key);
    if (retainUntil !== undefined && !this.capabilities.objectLock) {
      throw new StorageError(
        'OBJECT_LOCK_UNSUPPORTED',
        `${this.description}: cannot keep ${key} under retention (the backend is not configured with objectLock)`,
        { details: { key } },
      );
    }
    signal?.throwIfAborted();
    const lock = retainUntil
      ? { ObjectLockMode: 'COMPLIANCE' as const, ObjectLockRetainUntilDate: retainUntil }
      : {};
    const conditional = this.capabilities.conditionalWrite;
    if (!conditional && (await this.stat(key, signal ? { signal } : {})) !== undefined)
      throw this.exists(key);
    if (data.length > this.multipartThreshold) {
      await this.saveMultipart(key, full, data, lock, signal);
      return;
    }
    let ambiguous = false;
    const precondition = (err: unknown) => statusOf(err) === 412 || nameOf(err) === 'PreconditionFailed';
    // Not under Object Lock: its checksum goes in a trailer with a payload hash of its own.
    const knownHash =
      retainUntil === undefined && options.sha256 !== undefined && SHA256_HEX.test(options.sha256)
        ? options.sha256
        : undefined;
    try {
      await this.call(
        'save',
        key,
        signal,
        async (s, n) => {
          ambiguous ||= n > 1;
          const put = new (await this.ready()).sdk.PutObjectCommand({
            Bucket: this.bucket,
            Key: full,
            Body: data,
            ContentLength: data.length,
            ...(conditional ? { IfNoneMatch: '*' } : {}),
            ...lock,
          });
          if (knownHash !== undefined) withPayloadHash(put, knownHash);
          await (await this.ready(retainUntil !== undefined)).client.send(put, { abortSignal: s });
        },
        precondition,
      );
    } catch (err) {
      if (!precondition(err)) throw err;
      // The MD5 (a 16 MiB pack costs ~30 ms of CPU) only where it decides something.
      if (ambiguous && (await this.isOurs(key, singleEtag(data), signal))) return;
      throw this.exists(key);
    }
  }

  private async saveMultipart(
    key: string,
    full: string,
    data: Uint8Array,
    lock: Record<string, unknown>,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const locking = Object.keys(lock).length > 0;
    const parts: Uint8Array[] = [];
    for (let at = 0; at < data.length; at += this.partSize) {
      parts.push(data.subarray(at, Math.min(data.length, at + this.partSize)));
    }
    const created = await this.call('save', key, signal, async (s) =>
      (await this.ready(locking)).client.send(
        new (await this.ready()).sdk.CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: full,
          ...lock,
        }),
        {
          abortSignal: s,
        },
      ),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new StorageError('STORAGE_FAILED', `${this.description}: no upload id for ${key}`);
    const abortUpload = async () => {
      // Not under the caller's (maybe aborted) signal, and retried: parts left behind would cost storage.
      // NoSuchUpload: an earlier attempt did abort it. Best effort in the end: the failure being reported is
      // the caller's, and a lingering upload is not data (a bucket lifecycle rule or `repo check` sees it).
      const gone = (err: unknown) => nameOf(err) === 'NoSuchUpload' || statusOf(err) === 404;
      await this.call(
        'abort the upload of',
        key,
        undefined,
        async (s) =>
          (await this.ready()).client.send(
            new (await this.ready()).sdk.AbortMultipartUploadCommand({
              Bucket: this.bucket,
              Key: full,
              UploadId: uploadId,
            }),
            { abortSignal: AbortSignal.any([s, AbortSignal.timeout(10_000)]) },
          ),
        gone,
      ).catch(() => {});
    };
    const etags: string[] = new Array(parts.length);
    try {
      let next = 0;
      let stopped = false;
      const worker = async () => {
        while (!stopped && next < parts.length) {
          const i = next++;
          const body = parts[i]!;
          const r = await this.call(`save (part ${i + 1} of ${parts.length})`, key, signal, async (s) =>
            (await this.ready(locking)).client.send(
              new (await this.ready()).sdk.UploadPartCommand({
                Bucket: this.bucket,
                Key: full,
                UploadId: uploadId,
                PartNumber: i + 1,
                Body: body,
                ContentLength: body.length,
              }),
              { abortSignal: s },
            ),
          );
          etags[i] = r.ETag ?? '';
        }
      };
      // Every part settled before going on: an abort must not race a part still on its way to the server.
      const uploads = await Promise.allSettled(
        Array.from({ length: Math.min(this.options.partConcurrency ?? 4, parts.length) }, () =>
          worker().catch((err: unknown) => {
            stopped = true;
            throw err;
          }),
        ),
      );
      const failed = uploads.find((u): u is PromiseRejectedResult => u.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
      const etag = multipartEtag(parts);
      let ambiguous = false;
      // A lost answer to a Complete that did complete: the retry sees 412 (key taken) or NoSuchUpload.
      const settled = (err: unknown) =>
        statusOf(err) === 412 || nameOf(err) === 'PreconditionFailed' || nameOf(err) === 'NoSuchUpload';
      try {
        await this.call(
          'save',
          key,
          signal,
          async (s, n) => {
            ambiguous ||= n > 1;
            await (await this.ready(locking)).client.send(
              new (await this.ready()).sdk.CompleteMultipartUploadCommand({
                Bucket: this.bucket,
                Key: full,
                UploadId: uploadId,
                ...(this.capabilities.conditionalWrite ? { IfNoneMatch: '*' } : {}),
                MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
              }),
              { abortSignal: s },
            );
          },
          settled,
        );
      } catch (err) {
        if (!settled(err)) throw err;
        if (ambiguous && (await this.isOurs(key, etag, signal))) return;
        if (nameOf(err) === 'NoSuchUpload') throw err;
        throw this.exists(key);
      }
    } catch (err) {
      await abortUpload();
      if (signal?.aborted) throw signal.reason;
      throw err;
    }
  }

  async load(
    key: string,
    options: { offset?: number; length?: number; signal?: AbortSignal } = {},
  ): Promise<Buffer> {
    const { signal } = options;
    const ranged = options.offset !== undefined || options.length !== undefined;
    if (!ranged || this.cache === undefined || options.length === 0) return this.loadDirect(key, options);
    this.full(key);
    signal?.throwIfAborted();
    return this.cache.read(
      key,
      options.offset ?? 0,
      options.length,
      (offset, length) =>
        this.loadDirect(key, {
          offset,
          ...(length !== undefined ? { length } : {}),
          ...(signal ? { signal } : {}),
        }),
      signal,
    );
  }

  private async loadDirect(
    key: string,
    options: { offset?: number; length?: number; signal?: AbortSignal } = {},
  ): Promise<Buffer> {
    const full = this.full(key);
    const { signal } = options;
    const offset = options.offset ?? 0;
    if (options.length === 0) {
      if ((await this.stat(key, signal ? { signal } : {})) === undefined) throw this.notFound(key);
      return Buffer.alloc(0);
    }
    const ranged = options.offset !== undefined || options.length !== undefined;
    const range = ranged
      ? `bytes=${offset}-${options.length === undefined ? '' : offset + options.length - 1}`
      : undefined;
    const missing = (err: unknown) => statusOf(err) === 404 || nameOf(err) === 'NoSuchKey';
    const unsatisfiable = (err: unknown) => statusOf(err) === 416 || nameOf(err) === 'InvalidRange';
    try {
      return await this.call(
        'load',
        key,
        signal,
        async (s) => {
          const res = await (await this.ready()).client.send(
            new (await this.ready()).sdk.GetObjectCommand({
              Bucket: this.bucket,
              Key: full,
              ...(range ? { Range: range } : {}),
            }),
            { abortSignal: s },
          );
          // Read inside the attempt: a connection dropped mid-body is retried like any other.
          const bytes = await res.Body?.transformToByteArray();
          if (!bytes) return Buffer.alloc(0);
          if (res.ContentLength !== undefined && bytes.length !== res.ContentLength) {
            throw Object.assign(new Error(`short body (${bytes.length} of ${res.ContentLength} bytes)`), {
              code: 'ERR_STREAM_PREMATURE_CLOSE',
            });
          }
          return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        },
        (err) => missing(err) || unsatisfiable(err),
      );
    } catch (err) {
      if (missing(err)) throw this.notFound(key);
      // A range starting at or past the end: nothing there, as a file read past its end.
      if (unsatisfiable(err)) return Buffer.alloc(0);
      throw err;
    }
  }

  private notFound(key: string): NotFoundError {
    return new NotFoundError('OBJECT_NOT_FOUND', `${this.description}: no object ${key}`, {
      details: { key },
    });
  }

  private async head(
    key: string,
    signal: AbortSignal | undefined,
  ): Promise<{ size: number; etag?: string; versionId?: string } | undefined> {
    const full = this.full(key);
    const missing = (err: unknown) =>
      statusOf(err) === 404 || nameOf(err) === 'NotFound' || nameOf(err) === 'NoSuchKey';
    try {
      const h = await this.call(
        'stat',
        key,
        signal,
        async (s) =>
          (await this.ready()).client.send(
            new (await this.ready()).sdk.HeadObjectCommand({ Bucket: this.bucket, Key: full }),
            { abortSignal: s },
          ),
        missing,
      );
      return {
        size: h.ContentLength ?? 0,
        ...(h.ETag ? { etag: h.ETag } : {}),
        ...(h.VersionId && h.VersionId !== 'null' ? { versionId: h.VersionId } : {}),
      };
    } catch (err) {
      if (missing(err)) return undefined;
      throw err;
    }
  }

  async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<BackendObject | undefined> {
    const h = await this.head(key, options.signal);
    return h === undefined ? undefined : { key, size: h.size };
  }

  async *list(prefix: string, options: { signal?: AbortSignal } = {}): AsyncIterable<BackendObject> {
    const { signal } = options;
    let token: string | undefined;
    do {
      const page = await this.call('list', `${prefix}*`, signal, async (s) =>
        (await this.ready()).client.send(
          new (await this.ready()).sdk.ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
          { abortSignal: s },
        ),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(this.prefix)) continue;
        yield { key: o.Key.slice(this.prefix.length), size: o.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      signal?.throwIfAborted();
    } while (token);
  }

  async remove(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const full = this.full(key);
    this.cache?.drop(key);
    const { signal } = options;
    let versionId: string | undefined;
    if (this.capabilities.objectLock) {
      // Object Lock means versioning: a delete without a version only hides the object behind a marker.
      const h = await this.head(key, signal);
      if (h === undefined) return;
      versionId = h.versionId;
    }
    await this.call('remove', key, signal, async (s) =>
      (await this.ready()).client.send(
        new (await this.ready()).sdk.DeleteObjectCommand({
          Bucket: this.bucket,
          Key: full,
          ...(versionId ? { VersionId: versionId } : {}),
        }),
        { abortSignal: s },
      ),
    );
  }
}
