//! Fair scheduling of API calls between tenants (`max_running_requests`): at most `slots`
//! engine calls run at once. When every slot is taken, a call waits in its tenant's queue
//! (first in, first out), and each slot that frees goes to the waiting tenant with the fewest
//! calls running, tenants with as many taking turns (round-robin). So one tenant's hundred
//! queued calls delay another tenant's single call by one call, not by the queue: the waiting
//! calls hold no CPU, and the CPU goes to the calls that run.
//!
//! A running call gives its slot back while a host call of it waits — on a provider, on
//! storage work that runs off the async workers or over the network ([`off_turn`]) — and
//! queues again after: a slot is for running, not for waiting. A host call that is done at
//! once (a read of the embedded storage) keeps it.
//!
//! A tenant with no call running or waiting does not queue at all: its call starts at once
//! on one of `reserve` further slots, even while every slot is taken. Queueing it would make
//! a quiet tenant's single request wait for one of a flooding tenant's calls to give its
//! slot back, and under a flood that call may itself sit in the async runtime's run queue
//! behind the flood's other tasks — so the wait would grow with the flood after all. A tenant
//! that already has a call running or waiting never takes a reserved slot, so a flood cannot
//! use them, and at most `slots + reserve` calls run at once.
//!
//! Only tenants with a call running or waiting have an entry; a waiting call that is dropped
//! (its client went away, its request ran out of time) leaves none behind, and a slot given
//! to a call dropped before it saw it goes to the next waiting call.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// The slots, shared by every API call of a runtime.
#[derive(Clone)]
pub struct FairSlots {
    inner: Arc<Mutex<Inner>>,
}

/// One call's claim on a slot: running (it holds one), paused (it holds none) or waiting
/// in its tenant's queue. Dropped, it gives its slot back or leaves the queue.
pub struct Turn {
    claim: Claim,
}

/// What a [`Turn`] is, shared with the [`GiveWay`] of an epoch yield so the two see one
/// state.
#[derive(Clone)]
struct Claim {
    inner: Arc<Mutex<Inner>>,
    tenant: Arc<str>,
    /// When the call first asked for a turn: its place in its tenant's queue, so a call
    /// that paused queues again ahead of the calls that came after it.
    ticket: u64,
    state: Arc<Mutex<TurnState>>,
}

/// A running call's offer, at an epoch yield, to let a waiting call run first: see
/// [`Turn::give_way`].
pub struct GiveWay {
    claim: Claim,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TurnState {
    Running,
    Paused,
    Waiting,
}

struct Inner {
    slots: usize,
    /// Further slots, for the calls of tenants with nothing running or waiting.
    reserve: usize,
    running: usize,
    tenants: HashMap<Arc<str>, Tenant>,
    /// Tenants with a waiting call, in the order they are served: fewest running first,
    /// then the one whose turn came longest ago.
    ready: BTreeSet<(usize, u64, Arc<str>)>,
    /// Waiting calls by ticket, with the waker of the task that waits (once it has polled).
    waiting: HashMap<u64, Option<Waker>>,
    /// Calls given a slot that have not taken it yet.
    granted: HashSet<u64>,
    next_ticket: u64,
    next_turn: u64,
}

#[derive(Default)]
struct Tenant {
    running: usize,
    /// Its waiting calls' tickets, oldest first.
    queue: VecDeque<u64>,
    /// Its place among the tenants in `ready` (while its queue is not empty).
    turn: u64,
}

impl FairSlots {
    /// `slots` calls running at once (at least 1), and up to `reserve` more of tenants
    /// that had nothing running or waiting.
    pub fn new(slots: u32, reserve: u32) -> Self {
        FairSlots {
            inner: Arc::new(Mutex::new(Inner {
                slots: usize::try_from(slots.max(1)).unwrap_or(usize::MAX),
                reserve: usize::try_from(reserve).unwrap_or(usize::MAX),
                running: 0,
                tenants: HashMap::new(),
                ready: BTreeSet::new(),
                waiting: HashMap::new(),
                granted: HashSet::new(),
                next_ticket: 0,
                next_turn: 0,
            })),
        }
    }

    /// A running turn for a call of `tenant`: at once while a slot is free, else when the
    /// tenant's turn comes. Dropping the future while it waits leaves the queue.
    pub async fn turn(&self, tenant: &str) -> Turn {
        let ticket = {
            let mut inner = lock(&self.inner);
            inner.next_ticket += 1;
            inner.next_ticket
        };
        let mut turn = Turn {
            claim: Claim {
                inner: self.inner.clone(),
                tenant: Arc::from(tenant),
                ticket,
                state: Arc::new(Mutex::new(TurnState::Paused)),
            },
        };
        turn.resume().await;
        turn
    }

    /// Calls running now.
    pub fn running(&self) -> usize {
        lock(&self.inner).running
    }

    /// Calls waiting for a slot now.
    pub fn waiting(&self) -> usize {
        lock(&self.inner).waiting.len()
    }

    /// Tenants with a call running or waiting (entries do not outlive their calls).
    pub fn active_tenants(&self) -> usize {
        lock(&self.inner).tenants.len()
    }
}

impl Turn {
    /// Gives the slot back (or leaves the queue) until [`Turn::resume`].
    pub fn pause(&mut self) {
        self.claim.pause();
    }

    /// Runs again: at once while a slot is free, else when the tenant's turn comes (in its
    /// queue, ahead of the calls that came after this one). Dropped while it waits, the
    /// turn stays queued until it is resumed again, paused or dropped.
    pub async fn resume(&mut self) {
        self.claim.resume().await;
    }

    /// Whether the call holds a slot.
    pub fn is_running(&self) -> bool {
        self.claim.state() == TurnState::Running
    }

    /// At an epoch yield (the call has run a whole tick): while other calls wait for a
    /// slot, the way to hand it to them — the call gives its slot back and queues again,
    /// ahead of its tenant's later calls. A slot is a time slice, so calls that run long
    /// (a runaway template) take turns with the others instead of holding their slots
    /// until their CPU limit. `None` while nobody waits.
    pub fn give_way(&self) -> Option<GiveWay> {
        let someone_waits = !lock(&self.claim.inner).waiting.is_empty();
        (someone_waits && self.is_running()).then(|| GiveWay {
            claim: self.claim.clone(),
        })
    }
}

impl GiveWay {
    /// Gives the slot back and waits for the next turn.
    pub async fn run(self) {
        self.claim.pause();
        self.claim.resume().await;
    }
}

impl Claim {
    fn state(&self) -> TurnState {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_state(&self, state: TurnState) {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    fn pause(&self) {
        let wake = {
            let mut inner = lock(&self.inner);
            let wake = match self.state() {
                TurnState::Running => inner.release(&self.tenant),
                TurnState::Waiting => inner.cancel(&self.tenant, self.ticket),
                TurnState::Paused => Vec::new(),
            };
            self.set_state(TurnState::Paused);
            wake
        };
        wake.into_iter().for_each(Waker::wake);
    }

    async fn resume(&self) {
        let call = self.ticket;
        {
            let mut inner = lock(&self.inner);
            match self.state() {
                TurnState::Running => return,
                TurnState::Waiting => {}
                TurnState::Paused => {
                    if inner.run_now(&self.tenant) {
                        self.set_state(TurnState::Running);
                        return;
                    }
                    inner.enqueue(&self.tenant, call);
                    self.set_state(TurnState::Waiting);
                }
            }
        }
        poll_fn(|cx| {
            let mut inner = lock(&self.inner);
            if inner.granted.remove(&call) {
                return Poll::Ready(());
            }
            if let Some(waker) = inner.waiting.get_mut(&call) {
                *waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        self.set_state(TurnState::Running);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.pause();
    }
}

/// Awaits `work` (a host call of an engine call holding `turn`): the turn is kept while the
/// work is done at once, given back the first time it would wait, and queued for again
/// once the work is done.
pub async fn off_turn<T>(turn: Option<&mut Turn>, work: impl Future<Output = T>) -> T {
    let Some(turn) = turn else {
        return work.await;
    };
    let mut work = pin!(work);
    let mut paused = false;
    let out = poll_fn(|cx| {
        let polled = work.as_mut().poll(cx);
        if polled.is_pending() && !paused {
            turn.pause();
            paused = true;
        }
        polled
    })
    .await;
    if paused {
        turn.resume().await;
    }
    out
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Takes a free slot for `tenant`, if any (a free slot means nobody waits: every
    /// freed slot is given to a waiting call at once), or a reserved one when the tenant
    /// has nothing running or waiting.
    fn run_now(&mut self, tenant: &Arc<str>) -> bool {
        // The tenant is looked up only once every slot is taken.
        let free = self.running < self.slots
            || (self.running < self.slots.saturating_add(self.reserve)
                && self
                    .tenants
                    .get(tenant)
                    .is_none_or(|t| t.running == 0 && t.queue.is_empty()));
        if !free {
            return false;
        }
        self.running += 1;
        self.tenants.entry(tenant.clone()).or_default().running += 1;
        true
    }

    /// Queues the call with ticket `call` of `tenant`, in ticket order.
    fn enqueue(&mut self, tenant: &Arc<str>, call: u64) {
        let entry = self.tenants.entry(tenant.clone()).or_default();
        if entry.queue.is_empty() {
            entry.turn = self.next_turn;
            self.next_turn += 1;
            self.ready
                .insert((entry.running, entry.turn, tenant.clone()));
        }
        let at = entry.queue.partition_point(|c| *c < call);
        entry.queue.insert(at, call);
        self.waiting.insert(call, None);
    }

    /// A running call of `tenant` gives its slot back; the wakers of the calls given a slot.
    fn release(&mut self, tenant: &Arc<str>) -> Vec<Waker> {
        self.running = self.running.saturating_sub(1);
        if let Some(entry) = self.tenants.get_mut(tenant) {
            if entry.queue.is_empty() {
                entry.running = entry.running.saturating_sub(1);
            } else {
                // Fewer running: its place among the waiting tenants moves up.
                self.ready
                    .remove(&(entry.running, entry.turn, tenant.clone()));
                entry.running = entry.running.saturating_sub(1);
                self.ready
                    .insert((entry.running, entry.turn, tenant.clone()));
            }
            if entry.running == 0 && entry.queue.is_empty() {
                self.tenants.remove(tenant);
            }
        }
        self.dispatch()
    }

    /// A waiting call of `tenant` leaves: out of the queue, or, when it was given a slot it
    /// never took, the slot goes on to the next.
    fn cancel(&mut self, tenant: &Arc<str>, call: u64) -> Vec<Waker> {
        if self.granted.remove(&call) {
            return self.release(tenant);
        }
        self.waiting.remove(&call);
        if let Some(entry) = self.tenants.get_mut(tenant) {
            entry.queue.retain(|c| *c != call);
            if entry.queue.is_empty() {
                self.ready
                    .remove(&(entry.running, entry.turn, tenant.clone()));
                if entry.running == 0 {
                    self.tenants.remove(tenant);
                }
            }
        }
        Vec::new()
    }

    /// Gives free slots to waiting calls, tenant by tenant in `ready`'s order.
    fn dispatch(&mut self) -> Vec<Waker> {
        let mut wake = Vec::new();
        while self.running < self.slots {
            let Some((_, _, tenant)) = self.ready.pop_first() else {
                break;
            };
            let Some(entry) = self.tenants.get_mut(&tenant) else {
                continue;
            };
            let Some(call) = entry.queue.pop_front() else {
                continue;
            };
            entry.running += 1;
            self.running += 1;
            if !entry.queue.is_empty() {
                // Served: to the back of the tenants with as many running.
                entry.turn = self.next_turn;
                self.next_turn += 1;
                self.ready.insert((entry.running, entry.turn, tenant));
            }
            self.granted.insert(call);
            if let Some(Some(waker)) = self.waiting.remove(&call) {
                wake.push(waker);
            }
        }
        wake
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::Context;

    use super::*;

    /// A queued call of `tenant`: its future, polled once so it waits.
    type Queued = std::pin::Pin<Box<dyn std::future::Future<Output = Turn>>>;

    fn queue(slots: &FairSlots, tenant: &str) -> Queued {
        let slots = slots.clone();
        let name = tenant.to_string();
        let mut f: Queued = Box::pin(async move { slots.turn(&name).await });
        assert!(poll(&mut f).is_none(), "{tenant}'s call should wait");
        f
    }

    fn poll(f: &mut Queued) -> Option<Turn> {
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(t) => Some(t),
            Poll::Pending => None,
        }
    }

    /// The turn of the only queued call (of `calls`) that has one now; it is removed.
    fn served(calls: &mut Vec<(String, Queued)>) -> (String, Turn) {
        let mut found = None;
        for (i, (tenant, f)) in calls.iter_mut().enumerate() {
            if let Some(turn) = poll(f) {
                assert!(found.is_none(), "two calls were served for one slot");
                found = Some((i, tenant.clone(), turn));
            }
        }
        let (i, tenant, turn) = found.expect("a call was served");
        drop(calls.remove(i));
        (tenant, turn)
    }

    fn now(slots: &FairSlots, tenant: &str) -> Turn {
        let mut f = pin!(slots.turn(tenant));
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(t) => t,
            Poll::Pending => panic!("a slot was free"),
        }
    }

    #[test]
    fn another_tenants_call_is_served_before_a_queue_of_a_hundred() {
        let slots = FairSlots::new(4, 0);
        let mut held: Vec<Turn> = (0..4).map(|_| now(&slots, "a")).collect();
        let mut calls: Vec<(String, Queued)> = (0..100)
            .map(|_| ("a".to_string(), queue(&slots, "a")))
            .collect();
        calls.push(("b".to_string(), queue(&slots, "b")));
        assert_eq!((slots.running(), slots.waiting()), (4, 101));
        drop(held.pop());
        let (tenant, b) = served(&mut calls);
        assert_eq!(tenant, "b");
        // A's calls then take the slots that free.
        let mut running = Vec::new();
        for turn in held {
            drop(turn);
            let (tenant, turn) = served(&mut calls);
            assert_eq!(tenant, "a");
            running.push(turn);
        }
        drop(b);
        let (tenant, _a) = served(&mut calls);
        assert_eq!(tenant, "a");
        assert_eq!((slots.running(), slots.waiting()), (4, 96));
    }

    #[test]
    fn waiting_tenants_take_turns() {
        let slots = FairSlots::new(1, 0);
        let first = now(&slots, "x");
        let mut calls = Vec::new();
        for tenant in ["a", "a", "a", "b", "b", "b", "c", "c", "c"] {
            calls.push((tenant.to_string(), queue(&slots, tenant)));
        }
        let mut order = String::new();
        let mut turn = first;
        for _ in 0..9 {
            drop(turn);
            let (tenant, next) = served(&mut calls);
            order.push_str(&tenant);
            turn = next;
        }
        assert_eq!(order, "abcabcabc");
        drop(turn);
        assert_eq!((slots.running(), slots.active_tenants()), (0, 0));
    }

    #[test]
    fn a_tenant_with_fewer_calls_running_goes_first() {
        let slots = FairSlots::new(3, 0);
        let (_a1, _a2, b1) = (now(&slots, "a"), now(&slots, "a"), now(&slots, "b"));
        // A queued first, but runs two calls to B's none once B's call is done.
        let mut calls = vec![
            ("a".to_string(), queue(&slots, "a")),
            ("b".to_string(), queue(&slots, "b")),
        ];
        drop(b1);
        assert_eq!(served(&mut calls).0, "b");
    }

    #[test]
    fn a_waiting_call_dropped_leaves_no_entry() {
        let slots = FairSlots::new(1, 0);
        let held = now(&slots, "a");
        let waiting = queue(&slots, "b");
        assert_eq!((slots.waiting(), slots.active_tenants()), (1, 2));
        drop(waiting);
        assert_eq!((slots.waiting(), slots.active_tenants()), (0, 1));
        drop(held);
        assert_eq!((slots.running(), slots.active_tenants()), (0, 0));
    }

    #[test]
    fn a_slot_given_to_a_call_dropped_before_it_saw_it_goes_on() {
        let slots = FairSlots::new(1, 0);
        let held = now(&slots, "a");
        let gone = queue(&slots, "b");
        let mut calls = vec![("c".to_string(), queue(&slots, "c"))];
        drop(held);
        // B's call was given the slot but is dropped without polling again.
        drop(gone);
        let (tenant, c) = served(&mut calls);
        assert_eq!(tenant, "c");
        drop(c);
        assert_eq!((slots.running(), slots.active_tenants()), (0, 0));
    }

    #[test]
    fn a_paused_call_frees_its_slot_and_queues_again() {
        let slots = FairSlots::new(1, 0);
        let mut a = now(&slots, "a");
        let mut calls = vec![("b".to_string(), queue(&slots, "b"))];
        a.pause();
        let (_, b) = served(&mut calls);
        {
            let mut resumed = pin!(a.resume());
            let cx = &mut Context::from_waker(Waker::noop());
            assert!(resumed.as_mut().poll(cx).is_pending());
            drop(b);
            assert!(resumed.as_mut().poll(cx).is_ready());
        }
        assert!(a.is_running());
        assert_eq!(slots.running(), 1);
        drop(a);
        assert_eq!((slots.running(), slots.active_tenants()), (0, 0));
    }

    #[test]
    fn a_call_that_paused_queues_ahead_of_its_tenants_later_calls() {
        let slots = FairSlots::new(1, 0);
        let mut first = now(&slots, "a");
        let mut calls = vec![("a-later".to_string(), queue(&slots, "a"))];
        first.pause();
        let (_, later) = served(&mut calls);
        calls.push(("a-even-later".to_string(), queue(&slots, "a")));
        let cx = &mut Context::from_waker(Waker::noop());
        let mut resumed = pin!(first.resume());
        assert!(resumed.as_mut().poll(cx).is_pending());
        drop(later);
        assert!(resumed.as_mut().poll(cx).is_ready());
        assert_eq!(slots.waiting(), 1);
    }

    #[test]
    fn host_work_done_at_once_keeps_the_turn_and_work_that_waits_gives_it_back() {
        let slots = FairSlots::new(1, 0);
        let cx = &mut Context::from_waker(Waker::noop());
        let mut a = now(&slots, "a");
        {
            let mut done = pin!(off_turn(Some(&mut a), async { 1 }));
            assert_eq!(done.as_mut().poll(cx), Poll::Ready(1));
        }
        assert_eq!(slots.running(), 1);
        let mut calls = vec![("b".to_string(), queue(&slots, "b"))];
        let (gate, opened) = tokio::sync::oneshot::channel::<()>();
        {
            let mut waits = pin!(off_turn(Some(&mut a), opened));
            assert!(waits.as_mut().poll(cx).is_pending());
            // While A's host call waits, B runs; A queues again once it is done.
            let (_, b) = served(&mut calls);
            gate.send(()).unwrap();
            assert!(waits.as_mut().poll(cx).is_pending());
            drop(b);
            assert!(waits.as_mut().poll(cx).is_ready());
        }
        assert!(a.is_running());
        drop(a);
        assert_eq!((slots.running(), slots.active_tenants()), (0, 0));
    }

    #[test]
    fn a_quiet_tenants_call_starts_at_once_on_a_reserved_slot() {
        let slots = FairSlots::new(2, 2);
        let held: Vec<Turn> = (0..2).map(|_| now(&slots, "a")).collect();
        let mut calls: Vec<(String, Queued)> = (0..100)
            .map(|_| ("a".to_string(), queue(&slots, "a")))
            .collect();
        // B and C had nothing running: they start although every slot is A's.
        let (b, c) = (now(&slots, "b"), now(&slots, "c"));
        assert_eq!((slots.running(), slots.waiting()), (4, 100));
        // The reserve is spent: D waits, and B's second call waits too (B is running).
        calls.push(("d".to_string(), queue(&slots, "d")));
        calls.push(("b".to_string(), queue(&slots, "b")));
        // Slots free only once fewer than `slots` run; then the waiting tenant with
        // the fewest running goes first: D (none) before A (one left).
        drop((b, c));
        let mut held = held;
        drop(held.pop());
        let (first, _d) = served(&mut calls);
        assert_eq!(first, "d");
        assert_eq!((slots.running(), slots.waiting()), (2, 101));
    }

    #[test]
    fn a_flooding_tenant_never_takes_a_reserved_slot() {
        let slots = FairSlots::new(1, 4);
        let _a = now(&slots, "a");
        let _queued = queue(&slots, "a");
        // A has a call running: its next one waits although reserved slots are free.
        let mut again = Box::pin(slots.turn("a"));
        let cx = &mut Context::from_waker(Waker::noop());
        assert!(again.as_mut().poll(cx).is_pending());
        assert_eq!((slots.running(), slots.waiting()), (1, 2));
    }

    #[test]
    fn a_long_call_gives_way_at_a_yield_only_while_others_wait() {
        let slots = FairSlots::new(1, 0);
        let cx = &mut Context::from_waker(Waker::noop());
        let a = now(&slots, "a");
        assert!(a.give_way().is_none(), "nobody waits: keep running");
        let mut calls = vec![("a-later".to_string(), queue(&slots, "a"))];
        let b = queue(&slots, "b");
        calls.push(("b".to_string(), b));
        // A's runaway call yields: the waiting calls run in turn (A's queue was served
        // longest ago, then B), and A's call runs again after them.
        let mut yielded = Box::pin(a.give_way().expect("others wait").run());
        assert!(yielded.as_mut().poll(cx).is_pending());
        assert!(!a.is_running());
        let (first, later) = served(&mut calls);
        assert_eq!(first, "a-later");
        drop(later);
        assert!(yielded.as_mut().poll(cx).is_pending());
        let (second, b) = served(&mut calls);
        assert_eq!(second, "b");
        drop(b);
        assert!(yielded.as_mut().poll(cx).is_ready());
        assert!(a.is_running());
        drop(yielded);
        drop(a);
        assert_eq!((slots.running(), slots.active_tenants()), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_woken_across_tasks_all_run() {
        let slots = FairSlots::new(2, 0);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let slots = slots.clone();
            tasks.spawn(async move {
                let turn = slots.turn(if i % 2 == 0 { "a" } else { "b" }).await;
                tokio::task::yield_now().await;
                drop(turn);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(
            (slots.running(), slots.waiting(), slots.active_tenants()),
            (0, 0, 0)
        );
    }
}
