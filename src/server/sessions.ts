import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CatalogHandle } from '../catalog/index.js';
import { SnapkeeperError } from '../errors.js';
import {
  csrfTokenOf,
  dummyPasswordHash,
  newSessionId,
  safeEqual,
  sha256Hex,
  verifyPassword,
} from './credentials.js';
import type { Logger } from './log.js';
import type { Principal } from './route.js';

export const SESSION_COOKIE = 'snapkeeper_session';
export const CSRF_HEADER = 'x-csrf-token';

/** An HTTP error of the API: a status and the stable code of `{ error: { code, message } }`. */
export class HttpError extends SnapkeeperError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}

export interface SessionsOptions {
  catalog: CatalogHandle;
  log: Logger;
  tls: boolean;
  sessionHours: number;
  loginRateLimit: { attempts: number; windowSeconds: number };
}

/**
 * Who is calling: API tokens (`Authorization: Bearer`) and web sessions (the HttpOnly, SameSite=Strict
 * cookie, plus the CSRF header on every call that is not a GET). Logins are rate-limited per user and client
 * address: after `attempts` failures in the window, 429 until the window has passed.
 */
export class Sessions {
  readonly #o: SessionsOptions;
  readonly #failures = new Map<string, number[]>();
  readonly #streams = new Set<ServerResponse>();
  readonly #lastStamp = new Map<string, number>();

  constructor(options: SessionsOptions) {
    this.#o = options;
  }

  /** The principal of a request, or undefined when it brings no credentials; 401 for wrong ones. */
  async authenticate(request: FastifyRequest): Promise<Principal | undefined> {
    const auth = request.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)$/i.exec(auth);
      if (!m) throw new HttpError(401, 'UNAUTHENTICATED', 'Authorization must be "Bearer <token>"');
      const token = await this.#o.catalog.tokenByHash(sha256Hex(m[1]!));
      if (!token) throw new HttpError(401, 'UNAUTHENTICATED', 'unknown or revoked API token');
      this.#stampUse(token.id);
      return { kind: 'token', name: token.name, role: token.role };
    }
    const sessionId = cookieValue(request.headers.cookie, SESSION_COOKIE);
    if (sessionId === undefined) return undefined;
    const user = await this.#o.catalog.sessionUser(sha256Hex(sessionId), new Date().toISOString());
    if (!user) throw new HttpError(401, 'SESSION_EXPIRED', 'the session has ended; log in again');
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      const sent = request.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !safeEqual(sent, csrfTokenOf(sessionId))) {
        throw new HttpError(
          403,
          'CSRF_INVALID',
          `a request made with the session cookie needs the ${CSRF_HEADER} header of the session`,
        );
      }
    }
    return { kind: 'session', name: user.name, role: user.role, sessionId };
  }

  /**
   * Stamps a token's last use at most once a minute: a write (and a sync to disk) per request would
   * serialise every busy client behind the catalog's write lock.
   */
  #stampUse(id: string): void {
    const now = Date.now();
    if (now - (this.#lastStamp.get(id) ?? 0) < 60_000) return;
    this.#lastStamp.set(id, now);
    this.#o.catalog.markTokenUsed(id, new Date(now).toISOString()).catch((err: unknown) => {
      this.#o.log.warn('token use not recorded', { token: id, reason: String(err) });
    });
  }

  async login(user: string, password: string, request: FastifyRequest, reply: FastifyReply) {
    const key = `${user}\0${request.ip}`;
    const now = Date.now();
    const windowMs = this.#o.loginRateLimit.windowSeconds * 1000;
    const recent = (this.#failures.get(key) ?? []).filter((t) => now - t < windowMs);
    if (recent.length >= this.#o.loginRateLimit.attempts) {
      const retry = Math.ceil((recent[0]! + windowMs - now) / 1000);
      reply.header('retry-after', String(retry));
      this.#o.log.warn('login rate-limited', { ip: request.ip });
      throw new HttpError(429, 'LOGIN_RATE_LIMITED', `too many failed logins; try again in ${retry} s`);
    }
    const found = await this.#o.catalog.findUserCredentials(user);
    // The same work whether the user exists or not: the answer's timing does not tell.
    const ok = await verifyPassword(password, found?.passwordHash ?? (await dummyPasswordHash()));
    if (!found || !ok) {
      recent.push(now);
      this.#failures.set(key, recent);
      // A name that is no user may be a password typed in the wrong field: it is not logged.
      this.#o.log.warn('login failed', { ...(found ? { user } : { unknownUser: true }), ip: request.ip });
      throw new HttpError(401, 'LOGIN_FAILED', 'wrong user name or password');
    }
    this.#failures.delete(key);
    // Expired sessions go at each login: the table never grows past the live ones and a day's logins.
    await this.#o.catalog.pruneSessions(new Date(now).toISOString());
    const sessionId = newSessionId();
    const maxAge = Math.round(this.#o.sessionHours * 3600);
    await this.#o.catalog.addSession({
      idHash: sha256Hex(sessionId),
      user: found.user.name,
      expiresAt: new Date(now + maxAge * 1000).toISOString(),
    });
    reply.header('set-cookie', this.#cookie(sessionId, maxAge));
    this.#o.log.info('login', { user: found.user.name, ip: request.ip });
    return { user: found.user.name, role: found.user.role, csrfToken: csrfTokenOf(sessionId) };
  }

  describe(principal: Principal) {
    if (principal.kind !== 'session' || principal.sessionId === undefined) {
      throw new HttpError(401, 'NO_SESSION', 'no web session (API tokens have none)');
    }
    return { user: principal.name, role: principal.role, csrfToken: csrfTokenOf(principal.sessionId) };
  }

  async logout(principal: Principal, reply: FastifyReply): Promise<void> {
    if (principal.kind !== 'session' || principal.sessionId === undefined) {
      throw new HttpError(401, 'NO_SESSION', 'no web session (API tokens have none)');
    }
    await this.#o.catalog.removeSession(sha256Hex(principal.sessionId));
    reply.header('set-cookie', this.#cookie('', 0));
  }

  #cookie(value: string, maxAge: number): string {
    return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${this.#o.tls ? '; Secure' : ''}`;
  }

  /** An open event stream, ended when the daemon stops (it would hold the server open). */
  trackStream(res: ServerResponse): void {
    this.#streams.add(res);
    res.on('close', () => this.#streams.delete(res));
  }

  endStreams(): void {
    for (const res of this.#streams) res.end();
    this.#streams.clear();
  }
}
