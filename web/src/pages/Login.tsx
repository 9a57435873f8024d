import { type FormEvent, useState } from 'react';
import { ApiError, api, errorText } from '../api';
import type { Session } from '../types';

export function Login({ onLogin }: { onLogin: (s: Session) => void }) {
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!user || !password) {
      setError('Enter a user name and a password.');
      return;
    }
    setBusy(true);
    setError(null);
    api.login(user, password).then(
      (s) => {
        setPassword('');
        onLogin(s);
      },
      (err: unknown) => {
        setBusy(false);
        if (err instanceof ApiError && err.status === 401) setError('Wrong user name or password.');
        else if (err instanceof ApiError && err.status === 429)
          setError('Too many login attempts: wait a moment and try again.');
        else setError(errorText(err));
      },
    );
  };

  return (
    <main className="login" id="main">
      <form onSubmit={submit} aria-labelledby="login-title" noValidate>
        <h1 id="login-title">snapkeeper</h1>
        <p className="muted">Log in to manage backups.</p>
        <label htmlFor="login-user">User name</label>
        <input
          id="login-user"
          name="user"
          autoComplete="username"
          // biome-ignore lint/a11y/noAutofocus: the login form is the whole page; its first field is where to start
          autoFocus
          value={user}
          onChange={(e) => setUser(e.target.value)}
          aria-invalid={error ? true : undefined}
        />
        <label htmlFor="login-password">Password</label>
        <input
          id="login-password"
          name="password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          aria-invalid={error ? true : undefined}
        />
        {error && (
          <div className="error-box" role="alert" id="login-error">
            {error}
          </div>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
