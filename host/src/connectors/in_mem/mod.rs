//! `in-mem`: a destination kept in the server's own memory (a kvsync extension for
//! tests and demos). Objects are keyed by destination name, then external name,
//! and are gone when the server stops. Its config is ignored (the networking
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

/// destination name → external name → object.
type Objects = BTreeMap<String, BTreeMap<String, Stored>>;

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
        self.objects().entry(dest.name.clone()).or_default().insert(
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
        if let Some(held) = objects.get_mut(&dest.name) {
            held.remove(name);
            if held.is_empty() {
                objects.remove(&dest.name);
            }
        }
        Ok(())
    }

    async fn inspect(&self, dest: &Dest<Ignored>) -> Result<Vec<ExternalSecret>, SyncError> {
        Ok(self
            .objects()
            .get(&dest.name)
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
