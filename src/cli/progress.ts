/**
 * Progress on a terminal: one status line per running item, redrawn in place on stderr. Disabled (silent)
 * when stderr is not a TTY or with --json, so piped output and JSON stay clean.
 */
export class Progress {
  readonly enabled: boolean;
  readonly #stream: NodeJS.WriteStream;
  readonly #lines = new Map<string, string>();
  #drawn = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: { enabled: boolean; stream: NodeJS.WriteStream }) {
    this.enabled = options.enabled;
    this.#stream = options.stream;
  }

  /** Sets the status line of `key` (a phase or a VM). */
  update(key: string, status: string): void {
    if (!this.enabled) return;
    this.#lines.set(key, status);
    this.#schedule();
  }

  /** Prints a permanent line above the live ones. */
  log(line: string): void {
    if (!this.enabled) return;
    this.#clear();
    this.#stream.write(`${line}\n`);
    this.#draw();
  }

  remove(key: string): void {
    if (!this.enabled) return;
    this.#lines.delete(key);
    this.#schedule();
  }

  done(): void {
    if (!this.enabled) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#clear();
    this.#lines.clear();
  }

  #schedule(): void {
    // Redraw at most ten times a second: hundreds of VMs update far faster than a terminal can show.
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#clear();
      this.#draw();
    }, 100);
  }

  #clear(): void {
    if (this.#drawn > 0) this.#stream.write(`\x1b[${this.#drawn}A\x1b[J`);
    this.#drawn = 0;
  }

  #draw(): void {
    // A pty without a size reports 0 columns: fall back to a sane width rather than cutting every line.
    const columns = this.#stream.columns ?? 0;
    const width = columns >= 20 ? columns : 120;
    const rows = [...this.#lines.entries()].slice(-20);
    for (const [key, status] of rows) this.#stream.write(`${`${key}: ${status}`.slice(0, width - 1)}\n`);
    this.#drawn = rows.length;
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
