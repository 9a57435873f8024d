import type { Role, Session } from './types';

const RANK: Record<Role, number> = { 'read-only': 0, operator: 1, admin: 2 };

/** Whether the session's role reaches `need` (read-only < operator < admin). The daemon decides; this only hides buttons. */
export function can(session: Session, need: Role): boolean {
  return (RANK[session.role] ?? 0) >= RANK[need];
}
