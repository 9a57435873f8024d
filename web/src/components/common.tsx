import { type ReactNode, useCallback, useEffect, useRef, useState } from 'react';
import { errorText } from '../api';
import type { ApiWarning, DiskKind } from '../types';

/**
 * Loads data on mount and when `deps` change (compared by value); `reload` runs it again and resolves when the
 * new data (or error) is in place.
 */
export function useAsync<T>(load: () => Promise<T>, deps: unknown[]) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const key = JSON.stringify(deps);
  // biome-ignore lint/correctness/useExhaustiveDependencies: `key` stands for the caller's dependencies
  const run = useCallback((): Promise<void> => {
    const mine = ++seq.current;
    setLoading(true);
    return loadRef.current().then(
      (d) => {
        if (mine !== seq.current) return;
        setData(d);
        setError(null);
        setLoading(false);
      },
      (e: unknown) => {
        if (mine !== seq.current) return;
        setError(errorText(e));
        setLoading(false);
      },
    );
  }, [key]);
  useEffect(() => {
    void run();
  }, [run]);
  return { data, error, loading, reload: run };
}

export function ErrorBox({ error }: { error: string | null | undefined }) {
  if (!error) return null;
  return (
    <div className="error-box" role="alert">
      {error}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" aria-live="polite">
      Loading {what}…
    </p>
  );
}

/** A state word with a matching style; the word itself always carries the meaning (not colour only). */
export function StateBadge({ state }: { state: string }) {
  return <span className={`badge state-${state}`}>{state}</span>;
}

const KIND_TEXT: Record<DiskKind, { short: string; long: string } | null> = {
  flat: null,
  'rdm-physical': {
    short: 'RDM physical',
    long: 'raw device mapping, physical compatibility: not on a datastore, not backed up, never restored',
  },
  'rdm-virtual': {
    short: 'RDM virtual',
    long: 'raw device mapping, virtual compatibility: not on a datastore, not backed up, never restored',
  },
  independent: {
    short: 'independent',
    long: 'independent disk: not covered by VM snapshots, captured crash consistent by the array snapshot',
  },
};

/** A badge for RDM and independent disks, with its meaning as visible text for screen readers and a tooltip. */
export function DiskKindBadge({ kind }: { kind: DiskKind }) {
  const t = KIND_TEXT[kind];
  if (!t) return <span className="badge kind-flat">flat</span>;
  return (
    <span className={`badge kind-${kind}`} title={t.long}>
      <span aria-hidden="true">! </span>
      {t.short}
      <span className="sr-only"> ({t.long})</span>
    </span>
  );
}

export function WarningList({ warnings, label }: { warnings: ApiWarning[] | undefined; label?: string }) {
  if (!warnings || warnings.length === 0) return null;
  return (
    <ul className="warnings" aria-label={label ?? 'Warnings'}>
      {warnings.map((w, i) => (
        // biome-ignore lint/suspicious/noArrayIndexKey: warnings have no id and may repeat a code
        <li key={i} className="warning">
          <span className="badge warn-code">
            <span aria-hidden="true">⚠ </span>
            {w.code}
          </span>{' '}
          {w.message}
        </li>
      ))}
    </ul>
  );
}

export function Section({ title, children, id }: { title: string; children: ReactNode; id?: string }) {
  const hid = id ?? `sec-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return (
    <section className="card" aria-labelledby={hid}>
      <h2 id={hid}>{title}</h2>
      {children}
    </section>
  );
}
