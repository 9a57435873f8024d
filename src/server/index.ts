/**
 * Public surface of the daemon (see README.md): what the CLI's `serve`, `token` and `user` commands call.
 * Nothing else imports this layer.
 */
export {
  checkName,
  checkPassword,
  checkRole,
  createToken,
  hashPassword,
  verifyPassword,
} from './credentials.js';

/** The roles, lowest first (for CLI choices). */
export const ROLE_NAMES = ['read-only', 'operator', 'admin'] as const;
export { type Daemon, type DaemonOptions, startDaemon } from './daemon.js';
