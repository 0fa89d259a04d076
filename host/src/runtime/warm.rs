//! Warm instances: an instance that finished a call cleanly is kept, idle,
//! for the next call of the **same tenant**, so a request pays neither the
//! instantiation nor the reset and page faults of a fresh linear memory.
//!
//! Isolation holds: an instance only ever serves one tenant (it sees that
//! tenant's storage and nothing else, and the engine keeps no state between
//! calls), and it is discarded — never reused — after any trap, any limit hit
//! (CPU or memory), when its memory grew past [`KEEP_MEMORY_MAX`] (one large
//! request does not pin a large heap), after [`MAX_USES`] calls, or after
//! [`IDLE_TTL`] unused. At most `warm_instances` are kept in all, so an idle
//! tenant costs nothing once its instances expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::bindings;
use super::state::State;

pub use kvsync_host_core::settings::DEFAULT_WARM_INSTANCES;
/// An instance whose memory grew past this is not kept.
pub const KEEP_MEMORY_MAX: usize = 8 << 20;
/// Calls one instance serves at most.
pub const MAX_USES: u32 = 10_000;
/// How long an idle instance is kept.
pub const IDLE_TTL: Duration = Duration::from_secs(30);

/// An instantiated engine and its store.
pub struct Warm {
    pub store: Store<State>,
    pub instance: bindings::Engine,
    pub uses: u32,
    idle_since: Instant,
}

impl Warm {
    pub fn new(store: Store<State>, instance: bindings::Engine) -> Self {
        Warm {
            store,
            instance,
            uses: 0,
            idle_since: Instant::now(),
        }
    }

    /// Whether this instance may serve another call after the one it just
    /// finished (`ok`: the call returned without a trap).
    fn reusable(&self, ok: bool) -> bool {
        let s = self.store.data();
        ok && !s.cpu.exceeded()
            && !s.memory.exceeded
            && s.memory.size <= KEEP_MEMORY_MAX
            && self.uses < MAX_USES
    }
}

/// The idle instances, per tenant (keyed by the tenant's storage prefix).
pub struct WarmPool {
    capacity: usize,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    by_tenant: HashMap<String, Vec<Warm>>,
    count: usize,
    last_sweep: Option<Instant>,
}

impl WarmPool {
    pub fn new(capacity: u32) -> Self {
        WarmPool {
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            idle: Mutex::new(Idle::default()),
        }
    }

    /// An idle instance of `tenant`, if one is kept.
    pub fn take(&self, tenant: &str) -> Option<Warm> {
        if self.capacity == 0 {
            return None;
        }
        let mut expired = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let found = idle.by_tenant.get_mut(tenant).and_then(Vec::pop);
            if found.is_some() {
                idle.count -= 1;
            }
            idle.sweep(&mut expired);
            found
        };
        drop(expired);
        found
    }

    /// Returns an instance after a call (`ok`: it returned without a trap):
    /// kept for its tenant when it may serve again and there is room, dropped
    /// otherwise.
    pub fn give_back(&self, mut warm: Warm, ok: bool) {
        warm.uses = warm.uses.saturating_add(1);
        if self.capacity == 0 || !warm.reusable(ok) {
            return;
        }
        warm.idle_since = Instant::now();
        let mut expired = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.count < self.capacity {
                idle.count += 1;
                let tenant = warm.store.data().tenant();
                match idle.by_tenant.get_mut(tenant) {
                    Some(list) => list.push(warm),
                    None => {
                        let tenant = tenant.to_string();
                        idle.by_tenant.insert(tenant, vec![warm]);
                    }
                }
            } else {
                expired.push(warm);
            }
            idle.sweep(&mut expired);
        }
        // Stores are dropped outside the lock.
        drop(expired);
    }

    /// Idle instances kept now (all tenants).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|i| i.count).unwrap_or(0)
    }
}

impl Idle {
    /// At most once a second: moves instances idle longer than [`IDLE_TTL`]
    /// to `out` (to be dropped by the caller, outside the lock).
    fn sweep(&mut self, out: &mut Vec<Warm>) {
        let now = Instant::now();
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let mut removed = 0;
        self.by_tenant.retain(|_, list| {
            let before = list.len();
            let (keep, old): (Vec<Warm>, Vec<Warm>) = list
                .drain(..)
                .partition(|w| now.duration_since(w.idle_since) < IDLE_TTL);
            *list = keep;
            removed += before - list.len();
            out.extend(old);
            !list.is_empty()
        });
        self.count -= removed;
    }
}
