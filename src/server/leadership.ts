import type { DaemonStore, Leadership } from '../catalog/index.js';
import type { Logger } from './log.js';

/** How often a daemon renews its membership and, when it leads, its leadership: a twelfth of the lease, at most 5 s. */
export function heartbeatInterval(leaseMs: number): number {
  return Math.min(5_000, Math.floor(leaseMs / 12));
}

export interface ScheduleLeadershipOptions {
  catalog: Pick<DaemonStore, 'claimLeadership' | 'releaseLeadership' | 'currentLeadership'>;
  instanceId: string;
  leaseMs: number;
  log: Logger;
  /**
   * A clock in milliseconds that only moves forward at the rate of real time (default `performance.now`):
   * the local deadline of the lease is measured on it, never on the catalog's clock, which may be another
   * machine's.
   */
  clock?: () => number;
  /** Called when this daemon becomes the leader (true) or stops being it (false). */
  onChange?: (leader: boolean, term: number) => void;
}

/**
 * This daemon's view of the schedules' leadership (`DaemonStore.claimLeadership`): one daemon of a catalog
 * leads at a time, for a lease it renews on every heartbeat.
 *
 * `current()` answers from memory, and says "not the leader" as soon as the lease may have run out by the
 * local clock: the local deadline is taken from the instant *before* the claim was sent, so it always falls
 * before the catalog's own expiry (clocks tick at the same rate; their offsets do not matter). A leader that
 * was paused past its lease therefore stops by itself, and should it act on a stale view anyway, the fenced
 * write (`saveScheduleStateAsLeader` with the term) is refused by the catalog.
 */
export class ScheduleLeadership {
  readonly #o: ScheduleLeadershipOptions;
  readonly #clock: () => number;
  #mine = false;
  #term = 0;
  #holder: string | undefined;
  #deadline = 0;
  #released = false;
  #changes = 0;

  constructor(options: ScheduleLeadershipOptions) {
    this.#o = options;
    this.#clock = options.clock ?? (() => performance.now());
  }

  /** Takes or renews the leadership (the leader's heartbeat). Nothing once `release` was called. */
  async renew(): Promise<Leadership> {
    if (this.#released) return { term: this.#term, mine: false };
    const sent = this.#clock();
    const got = await this.#o.catalog.claimLeadership(this.#o.instanceId, this.#o.leaseMs);
    this.#seen(got, sent);
    return got;
  }

  /**
   * A standby's cheap look (one read): claims the leadership at once when nobody holds it (its leader stopped
   * cleanly and released it, or its lease ran out), so a handover does not wait for the next heartbeat. Only
   * the leader writes the leadership row on its heartbeats; standbys read it.
   */
  async claimIfFree(): Promise<void> {
    if (this.#released || this.current() !== undefined) return;
    const now = await this.#o.catalog.currentLeadership();
    if (now.holder === undefined || now.holder === this.#o.instanceId) await this.renew();
    else this.#seen(now, this.#clock());
  }

  /**
   * The heartbeat's part: the leader renews its lease (a write), a standby only looks (a read) and claims the
   * leadership when it is free.
   */
  async beat(): Promise<void> {
    if (this.current() !== undefined) await this.renew();
    else await this.claimIfFree();
  }

  /** This daemon's instance and term while it leads (by the local deadline); undefined otherwise. */
  current(): { instanceId: string; term: number } | undefined {
    if (!this.#mine) return undefined;
    if (this.#clock() >= this.#deadline) {
      this.#change(false, 'lease ran out before it was renewed');
      return undefined;
    }
    return { instanceId: this.#o.instanceId, term: this.#term };
  }

  /** The term this daemon last saw, and who held it (the catalog is the authority: see `currentLeadership`). */
  get view(): { holder?: string; term: number; mine: boolean } {
    return {
      ...(this.#holder !== undefined ? { holder: this.#holder } : {}),
      term: this.#term,
      mine: this.#mine,
    };
  }

  /** How many times this daemon became or stopped being the leader. */
  get changes(): number {
    return this.#changes;
  }

  /** Gives the leadership up (a clean stop): another daemon may take it at once; `renew` does nothing after. */
  async release(): Promise<void> {
    this.#released = true;
    this.#change(false, 'this daemon stops');
    await this.#o.catalog.releaseLeadership(this.#o.instanceId);
  }

  #seen(got: Leadership, sent: number): void {
    const holderBefore = this.#holder;
    this.#term = Math.max(this.#term, got.term);
    this.#holder = got.holder;
    if (got.mine) {
      this.#deadline = sent + this.#o.leaseMs;
      this.#change(true, 'lease granted');
      return;
    }
    this.#change(false, got.holder === undefined ? 'nobody holds it' : 'another daemon holds it');
    if (got.holder !== undefined && got.holder !== holderBefore) {
      this.#o.log.info('schedules: the leader is another daemon', { leader: got.holder, term: got.term });
    }
  }

  #change(mine: boolean, why: string): void {
    if (mine === this.#mine) return;
    this.#mine = mine;
    this.#changes += 1;
    if (mine) this.#o.log.info('schedules: leader', { instance: this.#o.instanceId, term: this.#term });
    else
      this.#o.log.warn('schedules: no longer leader', {
        instance: this.#o.instanceId,
        term: this.#term,
        why,
      });
    this.#o.onChange?.(mine, this.#term);
  }
}
