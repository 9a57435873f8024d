import { ConflictError } from '../../errors.js';
import { tokenNotFound, userNotFound } from '../errors.js';
import { type TokenRow, toToken, toUser, type UserRow } from '../rows.js';
import type { ApiToken, AuthStore, Role, User } from '../types.js';
import type { SqliteDatabase } from './database.js';

/** API tokens, users and web sessions of the daemon; only hashes are stored (see AuthStore). */
export class SqliteAuthStore implements AuthStore {
  constructor(readonly db: SqliteDatabase) {}

  async addToken(token: { id: string; name: string; role: Role; tokenHash: string }): Promise<ApiToken> {
    return this.db.write(() => {
      if (this.db.get('SELECT 1 FROM api_tokens WHERE name = ?', token.name)) {
        throw new ConflictError('TOKEN_EXISTS', `a token named ${token.name} already exists`, {
          details: { name: token.name },
        });
      }
      this.db.run(
        'INSERT INTO api_tokens (id, name, role, token_hash, created_at) VALUES (?, ?, ?, ?, ?)',
        token.id,
        token.name,
        token.role,
        token.tokenHash,
        this.db.stamp(),
      );
      return toToken(this.db.get<TokenRow>('SELECT * FROM api_tokens WHERE id = ?', token.id)!);
    });
  }

  async listTokens(): Promise<ApiToken[]> {
    return this.db.all<TokenRow>('SELECT * FROM api_tokens ORDER BY created_at, id').map(toToken);
  }

  async removeToken(idOrName: string): Promise<ApiToken> {
    return this.db.write(() => {
      const row = this.db.get<TokenRow>(
        'SELECT * FROM api_tokens WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1',
        idOrName,
        idOrName,
        idOrName,
      );
      if (!row) {
        throw tokenNotFound(idOrName);
      }
      this.db.run('DELETE FROM api_tokens WHERE id = ?', row.id);
      return toToken(row);
    });
  }

  async tokenByHash(tokenHash: string): Promise<ApiToken | undefined> {
    const row = this.db.get<TokenRow>('SELECT * FROM api_tokens WHERE token_hash = ?', tokenHash);
    return row ? toToken(row) : undefined;
  }

  async markTokenUsed(id: string, at: string): Promise<void> {
    this.db.write(() => this.db.run('UPDATE api_tokens SET last_used_at = ? WHERE id = ?', at, id));
  }

  async addUser(user: { name: string; role: Role; passwordHash: string }): Promise<User> {
    return this.db.write(() => {
      if (this.db.get('SELECT 1 FROM users WHERE name = ?', user.name)) {
        throw new ConflictError('USER_EXISTS', `a user named ${user.name} already exists`, {
          details: { user: user.name },
        });
      }
      const now = this.db.stamp();
      this.db.run(
        'INSERT INTO users (name, role, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?)',
        user.name,
        user.role,
        user.passwordHash,
        now,
        now,
      );
      return { name: user.name, role: user.role, createdAt: now, updatedAt: now };
    });
  }

  async listUsers(): Promise<User[]> {
    return this.db.all<UserRow>('SELECT * FROM users ORDER BY name').map(toUser);
  }

  async findUserCredentials(name: string): Promise<{ user: User; passwordHash: string } | undefined> {
    const row = this.db.get<UserRow>('SELECT * FROM users WHERE name = ?', name);
    return row ? { user: toUser(row), passwordHash: row.password_hash } : undefined;
  }

  async setUserPassword(name: string, passwordHash: string): Promise<void> {
    this.db.write(() => {
      const changed = this.db.run(
        'UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?',
        passwordHash,
        this.db.stamp(),
        name,
      );
      if (changed === 0) throw userNotFound(name);
      this.db.run('DELETE FROM sessions WHERE user_name = ?', name);
    });
  }

  async removeUser(name: string): Promise<void> {
    this.db.write(() => {
      this.db.run('DELETE FROM sessions WHERE user_name = ?', name);
      if (this.db.run('DELETE FROM users WHERE name = ?', name) === 0) throw userNotFound(name);
    });
  }

  async addSession(session: { idHash: string; user: string; expiresAt: string }): Promise<void> {
    this.db.write(() =>
      this.db.run(
        'INSERT INTO sessions (id_hash, user_name, created_at, expires_at) VALUES (?, ?, ?, ?)',
        session.idHash,
        session.user,
        this.db.stamp(),
        session.expiresAt,
      ),
    );
  }

  async sessionUser(idHash: string, now: string): Promise<User | undefined> {
    const row = this.db.get<UserRow>(
      `SELECT u.* FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.id_hash = ? AND s.expires_at > ?`,
      idHash,
      now,
    );
    return row ? toUser(row) : undefined;
  }

  async removeSession(idHash: string): Promise<void> {
    this.db.write(() => this.db.run('DELETE FROM sessions WHERE id_hash = ?', idHash));
  }

  async pruneSessions(now: string): Promise<number> {
    return this.db.write(() => this.db.run('DELETE FROM sessions WHERE expires_at <= ?', now));
  }
}
