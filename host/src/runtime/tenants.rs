//! The per-tenant cap on concurrent API calls (`tenant_max_concurrent_requests`): one tenant's
//! flood cannot take every instance slot. A call past its tenant's cap waits up to
//! [`TENANT_SLOT_WAIT`](super::TENANT_SLOT_WAIT) for one of the tenant's calls to finish, then
//! fails with [`CallError::TenantBusy`] (503); other tenants' calls never wait on it.
//!
//! Only tenants with a call running or waiting have an entry (one semaphore), dropped when the
//! last such call is done: idle tenants cost nothing here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::CallError;

/// The slots of every tenant.
pub struct TenantSlots {
    cap: usize,
    wait: Duration,
    active: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// A running call's slot, given back when dropped.
pub struct TenantSlot {
    permit: Option<OwnedSemaphorePermit>,
    tenant: String,
    active: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl TenantSlots {
    /// `cap` calls of one tenant at once (at least 1); a call past it waits up to `wait`.
    pub fn new(cap: u32, wait: Duration) -> Self {
        TenantSlots {
            cap: usize::try_from(cap.max(1)).unwrap_or(usize::MAX),
            wait,
            active: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot of `tenant`, or [`CallError::TenantBusy`] when none freed within the wait.
    pub async fn acquire(&self, tenant: &str) -> Result<TenantSlot, CallError> {
        let semaphore = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.cap)))
            .clone();
        // The slot owns its entry from here: dropped without a permit, it still cleans up.
        let mut slot = TenantSlot {
            permit: None,
            tenant: tenant.to_string(),
            active: self.active.clone(),
        };
        match tokio::time::timeout(self.wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => {
                slot.permit = Some(permit);
                Ok(slot)
            }
            _ => Err(CallError::TenantBusy),
        }
    }

    /// Tenants with a call running or waiting (tests: entries do not outlive their calls).
    pub fn active_tenants(&self) -> usize {
        self.active.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        // Every holder of the semaphore (a waiting call, a permit) cloned it under this lock,
        // so only the map's own reference left means no call of the tenant remains.
        if active
            .get(&self.tenant)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            active.remove(&self.tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_at_its_cap_waits_then_is_busy_and_others_go_on() {
        let slots = TenantSlots::new(2, Duration::from_millis(20));
        let a1 = slots.acquire("a").await.unwrap();
        let a2 = slots.acquire("a").await.unwrap();
        assert!(matches!(
            slots.acquire("a").await,
            Err(CallError::TenantBusy)
        ));
        let b = slots.acquire("b").await.unwrap();
        assert_eq!(slots.active_tenants(), 2);
        drop(a1);
        let a3 = slots.acquire("a").await.unwrap();
        drop((a2, a3, b));
        assert_eq!(slots.active_tenants(), 0);
    }

    #[tokio::test]
    async fn a_waiting_call_gets_the_slot_that_frees() {
        let slots = Arc::new(TenantSlots::new(1, Duration::from_secs(30)));
        let held = slots.acquire("a").await.unwrap();
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire("a").await.map(drop) })
        };
        tokio::task::yield_now().await;
        drop(held);
        waiter.await.unwrap().unwrap();
        assert_eq!(slots.active_tenants(), 0);
    }
}
