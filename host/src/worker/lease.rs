//! The tasks that tell the shard loops what to do: the lease keeper (a loop runs its shard only
//! while this host holds the shard's lease), the change-feed follower that queues a tenant in
//! the loop of its shard, and, without a feed, the wake-up that makes every held shard read its
//! index again.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Shared, stopping};
use crate::ha;
use crate::storage::{Change, sync_index};

/// The lease as it is now or, while another host holds it, once this host has taken it;
/// `None` when the loop must end.
pub(super) async fn await_lease(
    lease: &mut watch::Receiver<Option<ha::Held>>,
    stop: &mut watch::Receiver<bool>,
) -> Option<ha::Held> {
    loop {
        if *stop.borrow() {
            return None;
        }
        if let Some(held) = *lease.borrow_and_update() {
            return Some(held);
        }
        tokio::select! {
            changed = lease.changed() => if changed.is_err() { return None },
            end = stopping(stop) => if end { return None },
        }
    }
}

/// Keeps this host's leases: renews what it holds and takes what is free, at once and then
/// every third of the ttl. A shard gained wakes its loop.
pub(super) async fn lease_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = shared.config.lease_ttl / 3;
    while !*stop.borrow() {
        let gained = ha::keep_round(&shared.leases, &shared.table).await;
        for shard in gained {
            shared.wake_shard(shard);
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            end = stopping(&mut stop) => if end { break },
        }
    }
}

/// Follows the storage's change feed: an index record of sync work written (by a request or a
/// run of this host, or of another sharing the storage) queues its tenant in the loop of its
/// shard, when this host holds it; a feed that lost track (`Reset`) makes every held shard read
/// its index again. Only index records are looked at, and only held shards are woken, so
/// another host's busy shard costs this host nothing. Without a feed, the worker's wake-up
/// makes every held shard read its index again.
pub(super) async fn follow_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(mut changes) = shared.backend.watch() else {
        return wake_loop(shared, stop).await;
    };
    let shards = shared.config.workers.max(1);
    loop {
        let change = tokio::select! {
            change = changes.next() => change,
            end = stopping(&mut stop) => if end { return } else { continue },
        };
        let keys = match change {
            None => return,
            Some(Change::Lost) => continue,
            Some(Change::Reset) => {
                shared.rescan_held();
                continue;
            }
            Some(Change::Keys { keys, .. }) => keys,
        };
        for key in keys.iter() {
            let Some((tenant, work)) = sync_index::parse_due_key(key) else {
                continue;
            };
            let shard = work.shard(shards);
            let Some(state) = shared.shard(shard) else {
                continue;
            };
            if shared.table.held(shard).is_none() {
                continue;
            }
            // A record the loop itself dropped (its tenant idle) is reported too: a tenant the
            // queue does not know is queued only when its record exists.
            let known = state.queue().knows(&tenant);
            if !known && let Ok(None) = shared.backend.get(key).await {
                continue;
            }
            state.queue().due_now(&tenant);
            state.wake.notify_one();
        }
    }
}

/// Without a change feed: every wake-up makes every held shard read its index again.
async fn wake_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = shared.wake.notified() => shared.rescan_held(),
            end = stopping(&mut stop) => if end { return },
        }
    }
}
