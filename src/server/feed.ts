/** Recent engine events the daemon saw (backups started and finished, warnings, jobs), newest last. */
export interface FeedEvent {
  time: string;
  type: string;
  message: string;
  jobId?: string;
  backupId?: string;
  task?: string;
  code?: string;
}

/** A bounded ring of recent events for `GET /api/v1/events` (the catalog keeps the records themselves). */
export class EventFeed {
  readonly #events: FeedEvent[] = [];
  constructor(readonly capacity = 1000) {}

  add(event: Omit<FeedEvent, 'time'>): void {
    this.#events.push({ time: new Date().toISOString(), ...event });
    if (this.#events.length > this.capacity) this.#events.splice(0, this.#events.length - this.capacity);
  }

  /** Newest first. */
  recent(limit = 100): FeedEvent[] {
    return this.#events.slice(-limit).reverse();
  }
}
