//! `in-mem`: a destination kept in the server's own memory (a kvsync extension for
//! tests and demos). Objects are keyed by tenant and destination name, then
//! external name, so the same destination name in two tenants is two unrelated
//! stores; they are gone when the server stops. Its config is ignored (the networking
//! fields must still be well-formed).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::fields::Ignored;
use super::{Connector, Dest, ExternalSecret, SyncError};

struct Stored {
    value: Zeroizing<String>,
    tags: Vec<(String, String)>,
}

/// (tenant, destination name) → external name → object.
type Objects = BTreeMap<(String, String), BTreeMap<String, Stored>>;

/// The key of a destination's objects.
fn store_of(dest: &Dest<Ignored>) -> (String, String) {
    (dest.tenant.clone(), dest.name.clone())
}

#[derive(Default)]
pub struct InMemory {
    objects: Mutex<Objects>,
}

impl InMemory {
    fn objects(&self) -> MutexGuard<'_, Objects> {
        // Every update is a single insert or remove, so a panic elsewhere while
        // the lock was held cannot have left the map half-written.
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Connector for InMemory {
    const KIND: &'static str = "in-mem";
    type Config = Ignored;

    async fn push(&self, dest: &Dest<Ignored>, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.objects().entry(store_of(dest)).or_default().insert(
            secret.name.clone(),
            Stored {
                value: secret.value.clone(),
                tags: secret.tags.clone(),
            },
        );
        Ok(())
    }

    async fn delete(&self, dest: &Dest<Ignored>, name: &str) -> Result<(), SyncError> {
        let mut objects = self.objects();
        let store = store_of(dest);
        if let Some(held) = objects.get_mut(&store) {
            held.remove(name);
            if held.is_empty() {
                objects.remove(&store);
            }
        }
        Ok(())
    }

    async fn inspect(&self, dest: &Dest<Ignored>) -> Result<Vec<ExternalSecret>, SyncError> {
        Ok(self
            .objects()
            .get(&store_of(dest))
            .map(|held| {
                held.iter()
                    .map(|(name, stored)| ExternalSecret {
                        name: name.clone(),
                        value: stored.value.clone(),
                        tags: stored.tags.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests;
