//! [`TenantQueue`]: which tenant a shard loop runs next. Tenants take turns: each run does one
//! bounded batch of one tenant's work, and a tenant with more goes to the back of the queue, so
//! a tenant with a hundred thousand queued entries delays another tenant's one change by at most
//! one batch.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// Where a tenant stands in its shard's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Waiting for its turn.
    Ready,
    /// Its next work falls due then (ms since the Unix epoch).
    Waiting(u64),
    /// Being run; `woken` when work was queued for it meanwhile.
    Running { woken: bool },
}

/// What a run of a tenant came to, for [`TenantQueue::finished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// It did something: more may be due at once (its turn comes again after the others').
    Again,
    /// Nothing due before then (ms since the Unix epoch).
    At(u64),
    /// Nothing left in the shard.
    Idle,
}

/// The tenants of one shard with work, in turn order.
#[derive(Debug, Default)]
pub struct TenantQueue {
    ready: VecDeque<String>,
    waiting: BTreeSet<(u64, String)>,
    slots: HashMap<String, Slot>,
}

impl TenantQueue {
    /// Work of `tenant` may be due now: it joins the back of the queue (a tenant already there
    /// keeps its place; one being run goes on once its run ends).
    pub fn due_now(&mut self, tenant: &str) {
        match self.slots.get_mut(tenant) {
            Some(Slot::Ready) => {}
            Some(Slot::Running { woken }) => *woken = true,
            Some(Slot::Waiting(at)) => {
                self.waiting.remove(&(*at, tenant.to_string()));
                self.slots.insert(tenant.to_string(), Slot::Ready);
                self.ready.push_back(tenant.to_string());
            }
            None => {
                self.slots.insert(tenant.to_string(), Slot::Ready);
                self.ready.push_back(tenant.to_string());
            }
        }
    }

    /// Whether the queue knows `tenant` (ready, waiting or being run).
    pub fn knows(&self, tenant: &str) -> bool {
        self.slots.contains_key(tenant)
    }

    /// Moves the tenants whose time has come (`now`) to the back of the queue; returns when the
    /// next waiting one is due.
    pub fn promote(&mut self, now: u64) -> Option<u64> {
        while let Some((at, _)) = self.waiting.first() {
            if *at > now {
                return Some(*at);
            }
            if let Some((_, tenant)) = self.waiting.pop_first() {
                self.slots.insert(tenant.clone(), Slot::Ready);
                self.ready.push_back(tenant);
            }
        }
        None
    }

    /// The tenant whose turn it is, now being run.
    pub fn take_turn(&mut self) -> Option<String> {
        let tenant = self.ready.pop_front()?;
        self.slots
            .insert(tenant.clone(), Slot::Running { woken: false });
        Some(tenant)
    }

    /// Records how the run of `tenant` ended. Returns true when the tenant left the queue.
    pub fn finished(&mut self, tenant: &str, next: Next) -> bool {
        let woken = matches!(self.slots.get(tenant), Some(Slot::Running { woken: true }));
        match next {
            Next::Again => self.requeue(tenant),
            _ if woken => self.requeue(tenant),
            Next::At(at) => {
                self.slots.insert(tenant.to_string(), Slot::Waiting(at));
                self.waiting.insert((at, tenant.to_string()));
            }
            Next::Idle => {
                self.slots.remove(tenant);
                return true;
            }
        }
        false
    }

    fn requeue(&mut self, tenant: &str) {
        self.slots.insert(tenant.to_string(), Slot::Ready);
        self.ready.push_back(tenant.to_string());
    }

    /// Forgets every tenant (the shard's lease was lost).
    pub fn clear(&mut self) {
        *self = TenantQueue::default();
    }

    /// Tenants ready to run now.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated shard: tenant `a` has `a_entries` queued, `b` one; each run processes up to
    /// `batch` entries of the tenant whose turn it is. Returns the entries of `a` processed
    /// before `b`'s entry was.
    fn a_before_b(a_entries: u64, batch: u64) -> u64 {
        let mut queue = TenantQueue::default();
        let mut left: HashMap<&str, u64> = HashMap::from([("a", a_entries), ("b", 0)]);
        queue.due_now("a");
        // The first batch of `a` is under way when `b`'s change is queued.
        let first = queue.take_turn().unwrap();
        assert_eq!(first, "a");
        *left.get_mut("b").unwrap() = 1;
        queue.due_now("b");
        let mut a_done = 0;
        let mut current = first;
        loop {
            let slot = left.get_mut(current.as_str()).unwrap();
            let processed = (*slot).min(batch);
            *slot -= processed;
            if current == "a" {
                a_done += processed;
            } else if processed > 0 {
                return a_done;
            }
            let next = if processed > 0 {
                Next::Again
            } else {
                Next::Idle
            };
            queue.finished(&current, next);
            current = queue
                .take_turn()
                .expect("b is served before the queue runs dry");
        }
    }

    #[test]
    fn one_tenants_flood_delays_anothers_change_by_one_batch_at_most() {
        assert_eq!(a_before_b(100_000, 256), 256);
        assert_eq!(a_before_b(100, 256), 100);
    }

    #[test]
    fn tenants_take_turns_and_wait_for_their_time() {
        let mut q = TenantQueue::default();
        for t in ["a", "b", "c"] {
            q.due_now(t);
        }
        q.due_now("a");
        assert_eq!(q.ready_len(), 3, "a tenant already queued keeps its place");
        let a = q.take_turn().unwrap();
        assert!(!q.finished(&a, Next::Again));
        let b = q.take_turn().unwrap();
        assert!(!q.finished(&b, Next::At(1_000)));
        let c = q.take_turn().unwrap();
        assert!(q.finished(&c, Next::Idle));
        assert!(!q.knows("c"));
        assert_eq!(q.take_turn().as_deref(), Some("a"));
        assert_eq!(q.take_turn(), None);
        assert_eq!(q.promote(999), Some(1_000));
        assert_eq!(q.take_turn(), None);
        assert_eq!(q.promote(1_000), None);
        assert_eq!(q.take_turn().as_deref(), Some("b"));
    }

    #[test]
    fn work_queued_during_a_run_is_not_lost() {
        let mut q = TenantQueue::default();
        q.due_now("a");
        let a = q.take_turn().unwrap();
        q.due_now("a");
        assert!(!q.finished(&a, Next::Idle), "woken while running: stays");
        assert_eq!(q.take_turn().as_deref(), Some("a"));
        // A waiting tenant woken is due at once.
        assert!(!q.finished("a", Next::At(u64::MAX)));
        q.due_now("a");
        assert_eq!(q.take_turn().as_deref(), Some("a"));
        q.clear();
        assert_eq!(q.take_turn(), None);
    }
}
