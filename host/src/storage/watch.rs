//! [`Changes`]: the feed of [`Backend::watch`](super::Backend::watch), for caches that must
//! forget what another commit (of this host or, with shared storage, of another) changed.

use std::sync::Arc;

use tokio::sync::broadcast;

/// How many reports a subscriber may fall behind before it is told [`Change::Reset`].
const FEED_CAPACITY: usize = 1024;

/// What a commit changed, as the feed reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The commit `version` wrote (put or deleted) exactly these keys.
    Keys { version: u64, keys: Arc<[String]> },
    /// Anything may have changed: drop everything cached. Reported when the feed resumes after
    /// a loss, when a subscriber fell behind, and for a commit too large to list.
    Reset,
    /// The feed stopped hearing other hosts' commits (a lost connection): until the next
    /// [`Change::Reset`], a cache shared across hosts must not serve what it holds.
    Lost,
}

/// One subscriber's view of the feed.
#[derive(Debug)]
pub struct Changes {
    rx: broadcast::Receiver<Change>,
}

impl Changes {
    /// The next change; a subscriber that fell behind gets [`Change::Reset`]. `None` when the
    /// backend is gone.
    pub async fn next(&mut self) -> Option<Change> {
        match self.rx.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::Reset),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next change if one is already there (as [`Changes::next`], without waiting).
    pub fn try_next(&mut self) -> Option<Change> {
        match self.rx.try_recv() {
            Ok(change) => Some(change),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(Change::Reset),
            Err(_) => None,
        }
    }
}

/// The sending side, kept by a backend.
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    tx: broadcast::Sender<Change>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl Feed {
    /// Reports a change to every subscriber (none listening is fine).
    pub(crate) fn send(&self, change: Change) {
        let _ = self.tx.send(change);
    }

    /// Whether anyone subscribed (a commit need not collect its keys otherwise).
    pub(crate) fn is_watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Reports the keys a commit wrote.
    pub(crate) fn committed(&self, version: u64, keys: impl IntoIterator<Item = String>) {
        if self.is_watched() {
            self.send(Change::Keys {
                version,
                keys: keys.into_iter().collect(),
            });
        }
    }

    pub(crate) fn subscribe(&self) -> Changes {
        Changes {
            rx: self.tx.subscribe(),
        }
    }
}

/// A cache's hold on the feed. Before a cache answers, [`Follower::catch_up`] applies every
/// change reported so far, in the calling thread: no background task, so a change the feed has
/// delivered is never served stale, whichever host committed it.
#[derive(Debug, Default)]
pub struct Follower {
    /// `None`: the backend reports no changes (then every change goes through this process's
    /// own store, which forgets what it changes itself).
    changes: Option<std::sync::Mutex<Changes>>,
    /// Set by [`Change::Lost`], cleared by [`Change::Reset`].
    lost: std::sync::atomic::AtomicBool,
}

impl Follower {
    pub fn new(changes: Option<Changes>) -> Self {
        Follower {
            changes: changes.map(std::sync::Mutex::new),
            lost: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Applies the changes reported since the last call: `keys` with the keys of each commit,
    /// `reset` when anything may have changed. Returns whether the cache may serve what it holds
    /// (not while the feed is lost).
    pub fn catch_up(&self, mut keys: impl FnMut(&[String]), mut reset: impl FnMut()) -> bool {
        use std::sync::atomic::Ordering;
        let Some(changes) = &self.changes else {
            return true;
        };
        let mut changes = changes.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(change) = changes.try_next() {
            match change {
                Change::Keys { keys: changed, .. } => keys(&changed),
                Change::Reset => {
                    self.lost.store(false, Ordering::Release);
                    reset();
                }
                Change::Lost => {
                    self.lost.store(true, Ordering::Release);
                    reset();
                }
            }
        }
        !self.lost.load(Ordering::Acquire)
    }

    /// Whether the feed is lost (a cache must neither serve nor keep entries).
    pub fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Acquire)
    }
}
