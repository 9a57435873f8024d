/**
 * Prometheus text exposition (format 0.0.4), written by hand: counters and histograms the daemon observes
 * itself, and gauges read from the catalog at scrape time (`collect`).
 */

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  return `{${entries.map(([k, v]) => `${k}="${esc(v)}"`).join(',')}}`;
}

function key(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
}

class Histogram {
  readonly #series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}

  observe(labels: Labels, value: number): void {
    const k = key(labels);
    let s = this.#series.get(k);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(k, s);
    }
    this.buckets.forEach((b, i) => {
      if (value <= b) s.counts[i]!++;
    });
    s.sum += value;
    s.count++;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.#series.values()) {
      this.buckets.forEach((b, i) => {
        lines.push(`${this.name}_bucket${labelText({ ...s.labels, le: String(b) })} ${s.counts[i]}`);
      });
      lines.push(`${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`);
      lines.push(`${this.name}_sum${labelText(s.labels)} ${s.sum}`);
      lines.push(`${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
    return lines;
  }
}

class Counter {
  readonly #series = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    const s = this.#series.get(k) ?? { labels, value: 0 };
    s.value += by;
    this.#series.set(k, s);
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.#series.size === 0) lines.push(`${this.name} 0`);
    for (const s of this.#series.values()) lines.push(`${this.name}${labelText(s.labels)} ${s.value}`);
    return lines;
  }
}

/** A gauge family read at scrape time. */
export interface GaugeFamily {
  name: string;
  help: string;
  samples: { labels: Labels; value: number }[];
}

export function renderGauge(g: GaugeFamily): string[] {
  return [
    `# HELP ${g.name} ${g.help}`,
    `# TYPE ${g.name} gauge`,
    ...g.samples.map((s) => `${g.name}${labelText(s.labels)} ${s.value}`),
  ];
}

export class Metrics {
  readonly backupDuration = new Histogram(
    'snapkeeper_backup_duration_seconds',
    'Duration of backup runs finished by this daemon, by task.',
    [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
  );
  readonly quiesceWindow = new Histogram(
    'snapkeeper_quiesce_window_seconds',
    'Time each VM was held (prepare start to release end) in backups finished by this daemon.',
    [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
  );
  readonly apiLatency = new Histogram(
    'snapkeeper_api_request_duration_seconds',
    'API request latency by method, route and status class.',
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  );
  readonly bytesOffloaded = new Counter(
    'snapkeeper_bytes_offloaded_total',
    'New bytes written to repositories (compressed, encrypted) by offloads this daemon ran, by repository.',
  );
  readonly jobsFinished = new Counter('snapkeeper_jobs_finished_total', 'Jobs finished, by kind and state.');
  readonly webhookDeliveries = new Counter(
    'snapkeeper_webhook_deliveries_total',
    'Webhook deliveries, by outcome (delivered, retried, gave_up).',
  );
  readonly workerJobs = new Counter(
    'snapkeeper_worker_jobs_total',
    "Offload disk jobs of the daemon's local worker (serve --worker), by event: started, completed, failed, released, lost.",
  );
  readonly leadershipChanges = new Counter(
    'snapkeeper_schedule_leadership_changes_total',
    'Times this daemon became the schedules leader (to="leader") or stopped being it (to="standby").',
  );

  render(gauges: GaugeFamily[]): string {
    return `${[
      ...gauges.flatMap(renderGauge),
      ...this.backupDuration.render(),
      ...this.quiesceWindow.render(),
      ...this.apiLatency.render(),
      ...this.bytesOffloaded.render(),
      ...this.jobsFinished.render(),
      ...this.webhookDeliveries.render(),
      ...this.leadershipChanges.render(),
      ...this.workerJobs.render(),
    ].join('\n')}\n`;
  }
}
