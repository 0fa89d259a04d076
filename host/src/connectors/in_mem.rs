//! `in-mem`: a destination kept in the server's own memory (a kvsync extension for
//! tests and demos). Objects are keyed by destination name, then external name,
//! and are gone when the server stops. Its config is ignored.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{Destination, DestinationConnector, ExternalSecret, SyncError};

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
impl DestinationConnector for InMemory {
    fn kind(&self) -> &'static str {
        "in-mem"
    }

    async fn push(&self, dest: &Destination, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.objects().entry(dest.name.clone()).or_default().insert(
            secret.name.clone(),
            Stored {
                value: secret.value.clone(),
                tags: secret.tags.clone(),
            },
        );
        Ok(())
    }

    async fn delete(&self, dest: &Destination, name: &str) -> Result<(), SyncError> {
        let mut objects = self.objects();
        if let Some(held) = objects.get_mut(&dest.name) {
            held.remove(name);
            if held.is_empty() {
                objects.remove(&dest.name);
            }
        }
        Ok(())
    }

    async fn inspect(&self, dest: &Destination) -> Result<Vec<ExternalSecret>, SyncError> {
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
mod tests {
    use super::*;

    fn dest(name: &str) -> Destination {
        Destination::parse("in-mem".into(), name.into(), "{}".into()).unwrap()
    }

    fn secret(name: &str, value: &str, tag: &str) -> ExternalSecret {
        ExternalSecret {
            name: name.into(),
            value: Zeroizing::new(value.into()),
            tags: vec![("hashicorp:vault".into(), tag.into())],
        }
    }

    #[tokio::test]
    async fn push_overwrites_value_and_tags_and_inspect_sorts_by_name() {
        let c = InMemory::default();
        let d = dest("d");
        c.push(&d, &secret("zeta", "1", "t1")).await.unwrap();
        c.push(&d, &secret("alpha", "2", "t2")).await.unwrap();
        c.push(&d, &secret("zeta", "3", "t3")).await.unwrap();
        let names: Vec<_> = c
            .inspect(&d)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.value.to_string(), s.tags[0].1.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("alpha".to_string(), "2".to_string(), "t2".to_string()),
                ("zeta".to_string(), "3".to_string(), "t3".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn delete_of_a_missing_object_or_destination_succeeds() {
        let c = InMemory::default();
        let d = dest("d");
        c.delete(&d, "nothing").await.unwrap();
        c.push(&d, &secret("a", "1", "")).await.unwrap();
        c.delete(&d, "a").await.unwrap();
        c.delete(&d, "a").await.unwrap();
        assert!(c.inspect(&d).await.unwrap().is_empty());
        assert!(c.objects().is_empty());
    }
}
