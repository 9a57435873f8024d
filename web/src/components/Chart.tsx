/**
 * A small SVG line chart over time: one series, points with tooltips (title), a time axis and a value axis.
 * Each chart has a text description (role="img" with aria-label); the page also lists the numbers in a table.
 */
export interface Point {
  t: number;
  v: number;
  label: string;
  state?: string;
}

const W = 640;
const H = 220;
const PAD = { l: 70, r: 16, t: 14, b: 36 };

function ticks(min: number, max: number, n: number): number[] {
  if (max <= min) return [min];
  const out: number[] = [];
  for (let i = 0; i <= n; i++) out.push(min + ((max - min) * i) / n);
  return out;
}

export function TimeChart({
  title,
  points,
  format,
  className,
  empty,
}: {
  title: string;
  /** What to say when there is no point. */
  empty?: string;
  points: Point[];
  format: (v: number) => string;
  className?: string;
}) {
  if (points.length === 0)
    return (
      <figure className={`chart ${className ?? ''}`}>
        <figcaption>{title}</figcaption>
        <p className="muted">{empty ?? 'No data.'}</p>
      </figure>
    );
  const tMin = Math.min(...points.map((p) => p.t));
  const tMax = Math.max(...points.map((p) => p.t));
  const vMax = Math.max(...points.map((p) => p.v), 1);
  const x = (t: number) =>
    tMax === tMin
      ? PAD.l + (W - PAD.l - PAD.r) / 2
      : PAD.l + ((t - tMin) / (tMax - tMin)) * (W - PAD.l - PAD.r);
  const y = (v: number) => H - PAD.b - (v / vMax) * (H - PAD.t - PAD.b);
  const sorted = [...points].sort((a, b) => a.t - b.t);
  const path = sorted
    .map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`)
    .join(' ');
  const desc = `${title}: ${points.length} backups from ${new Date(tMin).toLocaleString()} to ${new Date(tMax).toLocaleString()}, highest ${format(vMax)}`;
  const dateFmt = (t: number) =>
    tMax - tMin > 2 * 86_400_000
      ? new Date(t).toLocaleDateString()
      : new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  return (
    <figure className={`chart ${className ?? ''}`}>
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={desc} preserveAspectRatio="xMidYMid meet">
        {ticks(0, vMax, 4).map((v) => (
          <g key={`y${v}`}>
            <line x1={PAD.l} x2={W - PAD.r} y1={y(v)} y2={y(v)} className="grid-line" />
            <text x={PAD.l - 6} y={y(v) + 4} textAnchor="end" className="axis-label">
              {format(v)}
            </text>
          </g>
        ))}
        {ticks(tMin, tMax, tMax === tMin ? 0 : 4).map((t, i, all) => (
          <text
            key={`x${t}`}
            x={x(t)}
            y={H - PAD.b + 18}
            textAnchor={all.length > 1 && i === all.length - 1 ? 'end' : 'middle'}
            className="axis-label"
          >
            {dateFmt(t)}
          </text>
        ))}
        <line x1={PAD.l} x2={PAD.l} y1={PAD.t} y2={H - PAD.b} className="axis" />
        <line x1={PAD.l} x2={W - PAD.r} y1={H - PAD.b} y2={H - PAD.b} className="axis" />
        <path d={path} className="series" />
        {sorted.map((p) => (
          <circle
            key={p.label + p.t}
            cx={x(p.t)}
            cy={y(p.v)}
            r={4}
            className={`point point-${p.state ?? 'ok'}`}
          >
            <title>
              {p.label}: {format(p.v)}
              {p.state ? ` (${p.state})` : ''}
            </title>
          </circle>
        ))}
      </svg>
    </figure>
  );
}
