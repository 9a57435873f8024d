import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { WebhookConfig, WebhookEvent } from '../config/server.js';
import { errorMessage, UsageError } from '../errors.js';
import { Secret } from '../util/secret.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

/** The header carrying `sha256=<hex HMAC-SHA256 of the raw body>` keyed with the webhook's secret. */
export const SIGNATURE_HEADER = 'x-snapkeeper-signature';

export interface WebhookTarget extends WebhookConfig {
  secret: Secret;
}

/** Reads each webhook's secret file (first line); UsageError WEBHOOK_SECRET_INVALID naming the file. */
export function loadWebhooks(configs: readonly WebhookConfig[]): WebhookTarget[] {
  return configs.map((c, i) => {
    let text: string;
    try {
      text = readFileSync(c.secretFile, 'utf8').split(/\r?\n/)[0] ?? '';
    } catch (err) {
      throw new UsageError(
        'WEBHOOK_SECRET_INVALID',
        `server.webhooks[${i}].secretFile: cannot read ${c.secretFile}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
      );
    }
    if (text.trim() === '') {
      throw new UsageError(
        'WEBHOOK_SECRET_INVALID',
        `server.webhooks[${i}].secretFile: ${c.secretFile} is empty; it must hold the signing key`,
      );
    }
    return { ...c, secret: new Secret(text) };
  });
}

export function signBody(body: string, secret: Secret): string {
  return `sha256=${createHmac('sha256', secret.reveal()).update(body).digest('hex')}`;
}

/**
 * Sends notifications in the background: `notify` returns at once (a backup never waits for a receiver),
 * each delivery is retried with exponential backoff (backoffSeconds, doubled each time) up to `attempts`.
 * Log lines name the URL's origin only (a URL may carry a key in its path or query).
 */
export class Webhooks {
  readonly #targets: WebhookTarget[];
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #inFlight = new Set<Promise<void>>();
  #stopped = false;

  constructor(targets: WebhookTarget[], log: Logger, metrics: Metrics) {
    this.#targets = targets;
    this.#log = log;
    this.#metrics = metrics;
  }

  notify(event: WebhookEvent, payload: Record<string, unknown>): void {
    for (const target of this.#targets) {
      if (!target.events.includes(event)) continue;
      const body = JSON.stringify({ id: randomUUID(), event, time: new Date().toISOString(), ...payload });
      this.#attempt(target, event, body, 1);
    }
  }

  #attempt(target: WebhookTarget, event: WebhookEvent, body: string, attempt: number): void {
    if (this.#stopped) return;
    const origin = new URL(target.url).origin;
    const delivery = (async () => {
      let failure: string | undefined;
      try {
        const res = await fetch(target.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-snapkeeper-event': event,
            [SIGNATURE_HEADER]: signBody(body, target.secret),
          },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (!res.ok) failure = `HTTP ${res.status}`;
      } catch (err) {
        failure = errorMessage(err);
      }
      if (failure === undefined) {
        this.#metrics.webhookDeliveries.inc({ outcome: 'delivered' });
        this.#log.info('webhook delivered', { event, target: origin, attempt });
        return;
      }
      if (attempt >= target.attempts) {
        this.#metrics.webhookDeliveries.inc({ outcome: 'gave_up' });
        this.#log.error('webhook gave up', { event, target: origin, attempt, reason: failure });
        return;
      }
      this.#metrics.webhookDeliveries.inc({ outcome: 'retried' });
      const delayMs = target.backoffSeconds * 1000 * 2 ** (attempt - 1);
      this.#log.warn('webhook failed, retrying', {
        event,
        target: origin,
        attempt,
        reason: failure,
        delayMs,
      });
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        this.#attempt(target, event, body, attempt + 1);
      }, delayMs);
      timer.unref();
      this.#timers.add(timer);
    })();
    this.#inFlight.add(delivery);
    void delivery.finally(() => this.#inFlight.delete(delivery));
  }

  /** Stops retrying (pending retries are dropped, logged) and waits for deliveries on the wire. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timers.size > 0)
      this.#log.warn('webhook retries dropped at shutdown', { count: this.#timers.size });
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.allSettled([...this.#inFlight]);
  }
}
