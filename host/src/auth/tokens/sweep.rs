//! The sweep: removes the records of expired and used-up tokens (with their
//! subtrees) in the background, following the expiry index in storage, so
//! a restart loses nothing. Such tokens are refused from the moment they
//! expire; the sweep only frees their records.
//!
//! It runs in bounded batches ([`BATCH`] index entries per pass), right
//! away while entries are due, then sleeps until the next entry is due (at
//! most [`MAX_IDLE`]) or until the store wakes it (a token's expiry moved
//! earlier, or `auth/token/tidy`). A failed pass is logged and retried after
//! a pause.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::TokenStore;

/// Index entries one pass handles at most.
pub const BATCH: u32 = 256;
/// Longest sleep between passes.
pub const MAX_IDLE: Duration = Duration::from_secs(60);
/// Pause after a failed pass.
const ERROR_PAUSE: Duration = Duration::from_secs(5);

/// The running sweep of a token store.
pub struct Sweeper {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sweeper {
    pub fn start(store: TokenStore) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(store, stopped));
        Sweeper { stop, task }
    }

    /// Stops the sweep; a pass in flight is let finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the token sweep ended abnormally");
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn run(store: TokenStore, mut stopped: watch::Receiver<bool>) {
    loop {
        let pause = match store.sweep_due(BATCH).await {
            Ok((handled, _)) if handled >= BATCH => Duration::ZERO,
            Ok((_, next)) => next.map_or(MAX_IDLE, |due| {
                Duration::from_millis(due.saturating_sub(now_ms())).min(MAX_IDLE)
            }),
            Err(e) => {
                tracing::warn!(error = %e, "the token sweep failed; retrying");
                ERROR_PAUSE
            }
        };
        if *stopped.borrow() {
            return;
        }
        if pause.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = store.sweep_wake().notified() => {}
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    return;
                }
            }
        }
    }
}
