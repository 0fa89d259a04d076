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
use super::lease;
use super::record::{self, EXPIRY};
use crate::storage::{Op, StorageError};

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

impl TokenStore {
    /// Asks the sweep to run now.
    pub fn tidy(&self) {
        self.inner.sweep_wake.notify_one();
    }

    /// Removes the records whose expiry index entry is due at the store's
    /// now, at most `limit`, revoking each with its subtree. Returns how many
    /// entries it handled and when the next one is due (ms).
    pub async fn sweep_due(&self, limit: u32) -> Result<(u32, Option<u64>), StorageError> {
        let now = lease::millis(self.now());
        let page = self.backend().list(EXPIRY, None, None, limit).await?;
        let mut handled = 0;
        for rel in &page.keys {
            let Some((due, hash)) = record::parse_expiry(rel) else {
                self.delete_keys(vec![format!("{EXPIRY}{rel}")]).await?;
                continue;
            };
            if due > now {
                return Ok((handled, Some(due)));
            }
            match self.load(hash).await? {
                Some(loaded) if loaded.record.sweep_at == Some(due) => {
                    self.revoke_tree(hash).await?;
                }
                _ => self.delete_keys(vec![format!("{EXPIRY}{rel}")]).await?,
            }
            handled += 1;
        }
        // The page held only due entries: more may follow.
        let next = page.next.map(|_| now);
        Ok((handled, next))
    }

    async fn delete_keys(&self, keys: Vec<String>) -> Result<(), StorageError> {
        let ops = keys.into_iter().map(|key| Op::Delete { key }).collect();
        self.backend().commit(Vec::new(), ops).await.map(|_| ())
    }

    /// The sweep's wake-up: a token's expiry changed, or a tidy was asked.
    pub fn sweep_wake(&self) -> &tokio::sync::Notify {
        &self.inner.sweep_wake
    }
}
