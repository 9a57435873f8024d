import { useCallback, useEffect, useRef, useState } from 'react';
import { api, setUnauthorizedHandler } from './api';
import { BackupDetail } from './pages/BackupDetail';
import { Backups } from './pages/Backups';
import { Dashboard } from './pages/Dashboard';
import { Inventory } from './pages/Inventory';
import { Login } from './pages/Login';
import { Operations } from './pages/Operations';
import { Stats } from './pages/Stats';
import { TaskDetail } from './pages/TaskDetail';
import { Tasks } from './pages/Tasks';
import { href, type Route, useRoute } from './router';
import type { Session } from './types';

const NAV: Array<{ path: string; label: string }> = [
  { path: 'dashboard', label: 'Dashboard' },
  { path: 'inventory', label: 'Inventory' },
  { path: 'tasks', label: 'Tasks' },
  { path: 'backups', label: 'Backups' },
  { path: 'operations', label: 'Restore / attach / mount' },
  { path: 'stats', label: 'Statistics' },
];

function Page({ route, session }: { route: Route; session: Session }) {
  const [first = 'dashboard', second] = route.parts;
  switch (first) {
    case 'inventory':
      return <Inventory />;
    case 'tasks':
      return second ? <TaskDetail name={second} session={session} /> : <Tasks session={session} />;
    case 'backups':
      return second ? <BackupDetail id={second} session={session} /> : <Backups params={route.params} />;
    case 'operations':
      return <Operations params={route.params} session={session} />;
    case 'stats':
      return <Stats />;
    default:
      return <Dashboard />;
  }
}

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [checked, setChecked] = useState(false);
  const route = useRoute();
  const main = useRef<HTMLElement>(null);

  useEffect(() => {
    setUnauthorizedHandler(() => setSession(null));
    api.session().then(
      (s) => {
        setSession(s);
        setChecked(true);
      },
      () => setChecked(true),
    );
    return () => setUnauthorizedHandler(null);
  }, []);

  // After a page change, move the focus to the page's heading so a keyboard or screen-reader user starts there.
  const routeKey = route.parts.join('/');
  useEffect(() => {
    if (!routeKey) return;
    main.current?.querySelector<HTMLElement>('h1')?.focus();
  }, [routeKey]);

  const logout = useCallback(() => {
    api.logout().then(
      () => setSession(null),
      () => setSession(null),
    );
  }, []);

  if (!checked) return <p className="muted">Connecting…</p>;
  if (!session) return <Login onLogin={setSession} />;

  const current = route.parts[0] ?? 'dashboard';
  return (
    <>
      <button type="button" className="skip-link" onClick={() => main.current?.focus()}>
        Skip to content
      </button>
      <header className="topbar">
        <span className="brand">snapkeeper</span>
        <nav aria-label="Main">
          <ul>
            {NAV.map((n) => (
              <li key={n.path}>
                <a href={href(n.path)} aria-current={current === n.path ? 'page' : undefined}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span className="user">
          <span>
            {session.user} <span className="muted">({session.role})</span>
          </span>
          <button type="button" onClick={logout}>
            Log out
          </button>
        </span>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        <Page route={route} session={session} />
      </main>
    </>
  );
}
