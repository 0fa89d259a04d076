// The sync worker, as the Rust host's (host/src/worker/) on one shard: runs
// `sync.run` when a request's effects say sync work is due (`wake`), and when
// the next queued entry is due (the report's `nextDueMs`, at most the
// reconciliation interval away); `sync.reconcile` at start and periodically,
// running the queue when it queued anything. All sync state lives in storage
// (the outbox), so the worker keeps none. Runs happen on the event loop
// between requests (every import is synchronous), one batch at a time.

/** Outbox entries one run processes at most. */
export const BATCH = 256;
/** Shortest pause of an idle worker (an entry due but not run must not spin). */
const MIN_IDLE_MS = 50;
/** Pause after a failed run (doubling per consecutive failure up to the cap). */
const ERROR_PAUSE_BASE_MS = 500;
const ERROR_PAUSE_CAP_MS = 30_000;

export const DEFAULT_SETTINGS = {
  backoffBaseMs: 1000n,
  backoffCapMs: 5n * 60n * 1000n,
  coalesceWindowMs: 1000n,
};
export const DEFAULT_RECONCILE_INTERVAL_MS = 60_000;

export class SyncWorker {
  #engine;
  #settings;
  #reconcileMs;
  #log;
  #timer;
  #reconcileTimer;
  #failures = 0;
  #stopped = false;
  /** Runs done so far (observability and tests). */
  runs = 0;

  constructor(engine, { settings = DEFAULT_SETTINGS, reconcileIntervalMs = DEFAULT_RECONCILE_INTERVAL_MS, log = console } = {}) {
    this.#engine = engine;
    this.#settings = settings;
    this.#reconcileMs = reconcileIntervalMs;
    this.#log = log;
  }

  start() {
    this.#reconcile();
    this.#reconcileTimer = setInterval(() => this.#reconcile(), this.#reconcileMs);
  }

  /** Work is due now: run as soon as the event loop is free. */
  wake() {
    this.#schedule(0);
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#reconcileTimer);
  }

  #schedule(ms) {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#run(), ms);
  }

  #reconcile() {
    try {
      if (this.#engine.reconcile() > 0) this.wake();
    } catch (e) {
      this.#log.error(`sync reconciliation failed: ${e.cause?.message ?? e.message}`);
    }
  }

  #run() {
    let report;
    try {
      report = this.#engine.runSync(0, 1, BATCH, this.#settings);
      this.runs += 1;
      this.#failures = 0;
    } catch (e) {
      this.#failures += 1;
      const pause = Math.min(ERROR_PAUSE_BASE_MS * 2 ** (this.#failures - 1), ERROR_PAUSE_CAP_MS);
      this.#log.error(`sync run failed (retrying in ${pause} ms): ${e.cause?.message ?? e.message}`);
      this.#schedule(pause);
      return;
    }
    if (report.processed > 0) {
      // More may be due: run again once pending requests had their turn.
      this.#schedule(0);
      return;
    }
    let wait = this.#reconcileMs;
    if (report.nextDueMs !== undefined) {
      wait = Math.min(wait, Math.max(0, Number(report.nextDueMs) - Date.now()));
    }
    this.#schedule(Math.max(wait, MIN_IDLE_MS));
  }
}
