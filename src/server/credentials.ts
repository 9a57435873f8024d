import { createHash, createHmac, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { AuthStore, Role } from '../catalog/index.js';
import { safeName } from '../config/schema.js';
import { UsageError } from '../errors.js';

/**
 * Credentials of the daemon: API tokens (32 random bytes, kept only as their SHA-256), passwords (scrypt,
 * memory-hard), web sessions (a random id in an HttpOnly cookie, kept as its SHA-256) and the CSRF token
 * derived from the session id. Nothing here logs or returns a secret except the one place a new token is
 * shown: `createToken`'s result.
 */

/** Tokens read `skt_<id>_<secret>`: the id names it in lists, the whole string is the credential. */
const TOKEN_PREFIX = 'skt_';

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

export function checkRole(role: string, where = '--role'): Role {
  if (role === 'read-only' || role === 'operator' || role === 'admin') return role;
  throw new UsageError(
    'ROLE_INVALID',
    `${where}: unknown role ${JSON.stringify(role)} (read-only, operator or admin)`,
  );
}

/** Whether `has` allows what `needs` allows (read-only < operator < admin). */
export function roleAllows(has: Role, needs: Role): boolean {
  const rank = { 'read-only': 0, operator: 1, admin: 2 } as const;
  return rank[has] >= rank[needs];
}

export function checkName(name: string, what: string): string {
  const parsed = safeName.safeParse(name);
  if (!parsed.success) {
    throw new UsageError(
      'NAME_INVALID',
      `${what} name ${JSON.stringify(name)} ${parsed.error.issues[0]?.message ?? 'is invalid'}`,
    );
  }
  return parsed.data;
}

/** Makes and stores a token; the returned `token` is the only time it exists outside the client. */
export async function createToken(
  store: AuthStore,
  request: { name: string; role: string },
): Promise<{ id: string; name: string; role: Role; createdAt: string; token: string }> {
  const name = checkName(request.name, 'token');
  const role = checkRole(request.role);
  const id = randomBytes(6).toString('hex');
  const token = `${TOKEN_PREFIX}${id}_${randomBytes(32).toString('base64url')}`;
  const stored = await store.addToken({ id, name, role, tokenHash: sha256Hex(token) });
  return { ...stored, token };
}

/** scrypt parameters: 2^15 × 8 × 128 bytes = 32 MiB per hash, about 0.1 s on one core. */
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, keylen: 32, maxmem: 64 * 1024 * 1024 } as const;

function scryptAsync(
  password: string,
  salt: Buffer,
  params: { N: number; r: number; p: number },
): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, SCRYPT.keylen, { ...params, maxmem: SCRYPT.maxmem }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/** Minimum password length for local users. */
export const MIN_PASSWORD_LENGTH = 8;

export function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new UsageError(
      'PASSWORD_TOO_SHORT',
      `the password must have at least ${MIN_PASSWORD_LENGTH} characters`,
    );
  }
}

/** `scrypt$N$r$p$salt$hash` (base64url), so parameters can grow without breaking stored hashes. */
export async function hashPassword(password: string): Promise<string> {
  checkPassword(password);
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, SCRYPT);
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64url'), key.toString('base64url')].join(
    '$',
  );
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [kind, n, r, p, salt, hash] = stored.split('$');
  if (kind !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const key = await scryptAsync(password, Buffer.from(salt, 'base64url'), {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A hash to verify against when the user does not exist, so timing does not tell which names exist. */
let dummyHash: Promise<string> | undefined;
export function dummyPasswordHash(): Promise<string> {
  dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
  return dummyHash;
}

export function newSessionId(): string {
  return randomBytes(32).toString('base64url');
}

/** The CSRF token of a session: an HMAC of its id, so nothing more is stored and it dies with the session. */
export function csrfTokenOf(sessionId: string): string {
  return createHmac('sha256', sessionId).update('snapkeeper-csrf').digest('base64url');
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
