import { ConflictError } from '../../errors.js';
import { tokenNotFound, userNotFound } from '../errors.js';
import { type TokenRow, toToken, toUser, type UserRow } from '../rows.js';
import type { ApiToken, AuthStore, Role, User } from '../types.js';
import type { PostgresDatabase } from './database.js';

const TOKEN = 'id, name, role, created_at, last_used_at';

/** API tokens, users and web sessions of the daemon; only hashes are stored (see AuthStore). */
export class PostgresAuthStore implements AuthStore {
  constructor(readonly db: PostgresDatabase) {}

  async addToken(token: { id: string; name: string; role: Role; tokenHash: string }): Promise<ApiToken> {
    return this.db.write(async (q) => {
      const now = await this.db.stamp(q);
      const row = (
        await q.query<TokenRow>(
          `INSERT INTO api_tokens (id, name, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (name) DO NOTHING RETURNING ${TOKEN}`,
          [token.id, token.name, token.role, token.tokenHash, now],
        )
      ).rows[0];
      if (!row) {
        throw new ConflictError('TOKEN_EXISTS', `a token named ${token.name} already exists`, {
          details: { name: token.name },
        });
      }
      return toToken(row);
    });
  }

  async listTokens(): Promise<ApiToken[]> {
    return (await this.db.all<TokenRow>(`SELECT ${TOKEN} FROM api_tokens ORDER BY created_at, id`)).map(
      toToken,
    );
  }

  async removeToken(idOrName: string): Promise<ApiToken> {
    return this.db.write(async (q) => {
      const row = (
        await q.query<TokenRow>(
          `SELECT ${TOKEN} FROM api_tokens WHERE id = $1 OR name = $1 ORDER BY (id = $1) DESC LIMIT 1 FOR UPDATE`,
          [idOrName],
        )
      ).rows[0];
      if (!row) throw tokenNotFound(idOrName);
      await q.query('DELETE FROM api_tokens WHERE id = $1', [row.id]);
      return toToken(row);
    });
  }

  async tokenByHash(tokenHash: string): Promise<ApiToken | undefined> {
    const row = await this.db.get<TokenRow>(`SELECT ${TOKEN} FROM api_tokens WHERE token_hash = $1`, [
      tokenHash,
    ]);
    return row ? toToken(row) : undefined;
  }

  async markTokenUsed(id: string, at: string): Promise<void> {
    await this.db.run('UPDATE api_tokens SET last_used_at = $1 WHERE id = $2', [at, id]);
  }

  async addUser(user: { name: string; role: Role; passwordHash: string }): Promise<User> {
    return this.db.write(async (q) => {
      const now = await this.db.stamp(q);
      const inserted = await q.query(
        `INSERT INTO users (name, role, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (name) DO NOTHING`,
        [user.name, user.role, user.passwordHash, now],
      );
      if (inserted.rowCount === 0) {
        throw new ConflictError('USER_EXISTS', `a user named ${user.name} already exists`, {
          details: { user: user.name },
        });
      }
      return { name: user.name, role: user.role, createdAt: now, updatedAt: now };
    });
  }

  async listUsers(): Promise<User[]> {
    return (await this.db.all<UserRow>('SELECT * FROM users ORDER BY name')).map(toUser);
  }

  async findUserCredentials(name: string): Promise<{ user: User; passwordHash: string } | undefined> {
    const row = await this.db.get<UserRow>('SELECT * FROM users WHERE name = $1', [name]);
    return row ? { user: toUser(row), passwordHash: row.password_hash } : undefined;
  }

  async setUserPassword(name: string, passwordHash: string): Promise<void> {
    await this.db.write(async (q) => {
      const now = await this.db.stamp(q);
      const changed = await q.query('UPDATE users SET password_hash = $1, updated_at = $2 WHERE name = $3', [
        passwordHash,
        now,
        name,
      ]);
      if (changed.rowCount === 0) throw userNotFound(name);
      await q.query('DELETE FROM sessions WHERE user_name = $1', [name]);
    });
  }

  async removeUser(name: string): Promise<void> {
    await this.db.write(async (q) => {
      await q.query('DELETE FROM sessions WHERE user_name = $1', [name]);
      if ((await q.query('DELETE FROM users WHERE name = $1', [name])).rowCount === 0)
        throw userNotFound(name);
    });
  }

  async addSession(session: { idHash: string; user: string; expiresAt: string }): Promise<void> {
    await this.db.write(async (q) => {
      await q.query(
        'INSERT INTO sessions (id_hash, user_name, created_at, expires_at) VALUES ($1, $2, $3, $4)',
        [session.idHash, session.user, await this.db.stamp(q), session.expiresAt],
      );
    });
  }

  async sessionUser(idHash: string, now: string): Promise<User | undefined> {
    const row = await this.db.get<UserRow>(
      `SELECT u.* FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.id_hash = $1 AND s.expires_at > $2`,
      [idHash, now],
    );
    return row ? toUser(row) : undefined;
  }

  async removeSession(idHash: string): Promise<void> {
    await this.db.run('DELETE FROM sessions WHERE id_hash = $1', [idHash]);
  }

  async pruneSessions(now: string): Promise<number> {
    return this.db.run('DELETE FROM sessions WHERE expires_at <= $1', [now]);
  }
}
