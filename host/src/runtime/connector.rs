//! The host side of the `connector` import: converts the WIT records to the
//! registry's types, calls [`Connectors`](crate::connectors::Connectors) and
//! converts back. Time spent here is the provider's, not the guest's: it is
//! charged to the CPU meter as host time, like storage calls.
//!
//! This is the connectors' boundary: a connector that panics (a bug, or a
//! provider answer no one foresaw) fails its one call as `internal`, logged
//! with the panic's message; the panic never unwinds into the engine call,
//! so neither the request nor the sync loop that made the call dies with it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use zeroize::Zeroizing;

use super::bindings::kvsync::engine::connector as wit;
use super::state::ConnectorView;
use crate::connectors::{Connectors, Destination, ExternalSecret, SyncError};

/// The guest's destination, as the tenant `tenant`'s.
fn destination(d: wit::Destination, tenant: &str) -> Result<Destination, SyncError> {
    Destination::parse(d.kind, d.name, d.config).map(|d| d.in_tenant(tenant))
}

fn from_wit(s: wit::ExternalSecret) -> ExternalSecret {
    ExternalSecret {
        name: s.name,
        value: Zeroizing::new(s.value),
        tags: s.tags,
    }
}

fn to_wit(mut s: ExternalSecret) -> wit::ExternalSecret {
    wit::ExternalSecret {
        name: std::mem::take(&mut s.name),
        // Moves the buffer out; the emptied `Zeroizing` has nothing left to wipe.
        value: std::mem::take(&mut *s.value),
        tags: std::mem::take(&mut s.tags),
    }
}

fn error_to_wit(e: SyncError) -> wit::SyncError {
    match e {
        SyncError::ClientSide(m) => wit::SyncError::ClientSide(m),
        SyncError::ExternalService {
            message,
            retry_after,
        } => wit::SyncError::ExternalService(wit::ExternalFailure {
            message,
            retry_after_ms: retry_after.map(millis),
        }),
        SyncError::Internal(m) => wit::SyncError::Internal(m),
    }
}

/// Runs a connector call, turning a panic into [`SyncError::Internal`].
async fn guarded<T>(
    kind: &str,
    call: impl Future<Output = Result<T, SyncError>>,
) -> Result<T, SyncError> {
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(out) => out,
        Err(panic) => {
            let what = super::panic_message(panic.as_ref());
            tracing::error!(kind, panic = %what, "a destination connector panicked; the call failed as internal");
            Err(SyncError::Internal(format!(
                "the {kind} connector failed unexpectedly; see the server log"
            )))
        }
    }
}

/// Runs a provider call; within an API request (`bound` set, running out at
/// `deadline`), the request's provider calls share the bound: one that does
/// not finish by the deadline is abandoned, and one that would start after
/// it is not made; both are reported `deferred`: the engine shows the
/// association `PENDING` and its worker makes the call again, unbounded.
async fn bounded(
    bound: Option<(Duration, Instant)>,
    call: impl std::future::Future<Output = Result<(), SyncError>>,
) -> Result<(), wit::SyncError> {
    let Some((bound, deadline)) = bound else {
        return call.await.map_err(error_to_wit);
    };
    let deferred = || {
        Err(wit::SyncError::Deferred(format!(
            "the provider did not answer within {}s; the sync worker finishes this",
            bound.as_secs_f64()
        )))
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return deferred();
    }
    match tokio::time::timeout(left, call).await {
        Ok(out) => out.map_err(error_to_wit),
        Err(_) => deferred(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<'a> ConnectorView<'a> {
    /// One write the guest asks of a destination (`push`, `push-new`,
    /// `delete`): the destination decoded, the call bounded within an API
    /// request, its time charged as host time.
    async fn write_call<F, Fut>(
        &mut self,
        dest: wit::Destination,
        call: F,
    ) -> Result<(), wit::SyncError>
    where
        F: FnOnce(&'a Connectors, Destination) -> Fut,
        Fut: std::future::Future<Output = Result<(), SyncError>>,
    {
        match destination(dest, self.tenant) {
            Ok(dest) => {
                let kind = dest.kind.clone();
                let call = guarded(&kind, call(self.connectors, dest));
                let bound = self.inline_bound.zip(self.inline_deadline);
                super::state::waiting(self.cpu, self.turn.as_deref_mut(), bounded(bound, call))
                    .await
            }
            Err(e) => Err(error_to_wit(e)),
        }
    }
}

impl wit::Host for ConnectorView<'_> {
    async fn push(
        &mut self,
        dest: wit::Destination,
        secret: wit::ExternalSecret,
    ) -> wasmtime::Result<Result<(), wit::SyncError>> {
        let secret = from_wit(secret);
        Ok(self
            .write_call(dest, |c, d| async move { c.push(&d, &secret).await })
            .await)
    }

    async fn push_new(
        &mut self,
        dest: wit::Destination,
        secret: wit::ExternalSecret,
    ) -> wasmtime::Result<Result<(), wit::SyncError>> {
        let secret = from_wit(secret);
        Ok(self
            .write_call(dest, |c, d| async move { c.push_new(&d, &secret).await })
            .await)
    }

    async fn delete(
        &mut self,
        dest: wit::Destination,
        name: String,
    ) -> wasmtime::Result<Result<(), wit::SyncError>> {
        Ok(self
            .write_call(dest, |c, d| async move { c.delete(&d, &name).await })
            .await)
    }

    async fn inspect(
        &mut self,
        dest: wit::Destination,
    ) -> wasmtime::Result<Result<Vec<wit::ExternalSecret>, wit::SyncError>> {
        let out = match destination(dest, self.tenant) {
            Ok(dest) => {
                let inspect = guarded(&dest.kind, self.connectors.inspect(&dest));
                super::state::waiting(self.cpu, self.turn.as_deref_mut(), inspect).await
            }
            Err(e) => Err(e),
        };
        Ok(out
            .map(|list| list.into_iter().map(to_wit).collect())
            .map_err(error_to_wit))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::super::bindings::kvsync::engine::authz::{self, Host as _};
    use super::super::limits::Limits;
    use super::super::state::State;
    use super::wit::Host as _;
    use super::*;
    use crate::auth::{Authority, Caller, Namespace, PolicyStore, Token, TokenStore};
    use crate::connectors::{Connectors, DestinationConnector, Op, Outcome};
    use crate::storage::{Barrier, EncryptionKey, RedbBackend, SharedBackend, TenantStorage};

    fn backend() -> SharedBackend {
        Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ))
    }

    fn state(connectors: Connectors, authority: Option<Authority>) -> State {
        State::new(
            TenantStorage::new(backend(), "root"),
            Arc::new(connectors),
            None,
            (None, authority),
            None,
            &Limits::default(),
        )
    }

    fn caller(policy: &str) -> Caller {
        Caller {
            token: Token::new("t".into()),
            accessor: "a".into(),
            display_name: "d".into(),
            policies: vec![policy.into()],
            path: "auth/token/root".into(),
            creation_time: 0,
            namespace_id: "root".into(),
        }
    }

    fn dest(kind: &str, config: &str) -> wit::Destination {
        wit::Destination {
            kind: kind.into(),
            name: "demo".into(),
            config: config.into(),
        }
    }

    fn secret(name: &str, value: &str) -> wit::ExternalSecret {
        wit::ExternalSecret {
            name: name.into(),
            value: value.into(),
            tags: vec![("hashicorp:vault".into(), "".into())],
        }
    }

    /// Slow, then throttled with a retry-after.
    struct Throttled;

    #[async_trait]
    impl DestinationConnector for Throttled {
        fn kind(&self) -> &'static str {
            "gh"
        }
        async fn push(&self, _: &Destination, _: &ExternalSecret) -> Result<(), SyncError> {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err(SyncError::ExternalService {
                message: "rate limited".into(),
                retry_after: Some(Duration::from_secs(2)),
            })
        }
        async fn delete(&self, _: &Destination, _: &str) -> Result<(), SyncError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn in_mem_round_trip_through_the_import() {
        let mut state = state(Connectors::new(), None);
        let mut s = state.connector_view();
        s.push(dest("in-mem", "{}"), secret("b", "2"))
            .await
            .unwrap()
            .unwrap();
        s.push(dest("in-mem", ""), secret("a", "1"))
            .await
            .unwrap()
            .unwrap();
        let listed = s.inspect(dest("in-mem", "{}")).await.unwrap().unwrap();
        let names: Vec<_> = listed
            .iter()
            .map(|o| (o.name.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(names, vec![("a", "1"), ("b", "2")]);
        assert_eq!(
            listed[0].tags,
            vec![("hashicorp:vault".to_string(), String::new())]
        );
        s.delete(dest("in-mem", "{}"), "a".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s.inspect(dest("in-mem", "{}"))
                .await
                .unwrap()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(s.connectors.calls("in-mem", Op::Push, Outcome::Ok), 2);
    }

    #[tokio::test]
    async fn errors_map_to_the_wit_variant_and_host_time_is_not_the_guests() {
        let mut state = state(Connectors::from_list(vec![Arc::new(Throttled)]), None);
        let mut s = state.connector_view();
        let out = s
            .push(dest("gh", r#"{"token":"x"}"#), secret("A", "v"))
            .await
            .unwrap();
        match out {
            Err(wit::SyncError::ExternalService(f)) => {
                assert_eq!(f.message, "rate limited");
                assert_eq!(f.retry_after_ms, Some(2000));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            s.cpu.guest_time() < Duration::from_millis(200),
            "{:?}",
            s.cpu.guest_time()
        );
        assert!(matches!(
            s.push(dest("aws-sm", "{}"), secret("A", "v"))
                .await
                .unwrap(),
            Err(wit::SyncError::ClientSide(_))
        ));
        assert!(matches!(
            s.delete(dest("gh", "not json"), "A".into()).await.unwrap(),
            Err(wit::SyncError::Internal(_))
        ));
        assert!(matches!(
            s.inspect(dest("gh", "{}")).await.unwrap(),
            Err(wit::SyncError::ClientSide(_))
        ));
    }

    /// A connector with a bug: every call panics.
    struct Panicking;

    #[async_trait]
    impl DestinationConnector for Panicking {
        fn kind(&self) -> &'static str {
            "gh"
        }
        async fn push(&self, _: &Destination, _: &ExternalSecret) -> Result<(), SyncError> {
            panic!("a connector bug");
        }
        async fn delete(&self, _: &Destination, _: &str) -> Result<(), SyncError> {
            panic!("a connector bug");
        }
        async fn inspect(&self, _: &Destination) -> Result<Vec<ExternalSecret>, SyncError> {
            panic!("a connector bug");
        }
    }

    #[tokio::test]
    async fn a_panicking_connector_is_an_internal_error_not_a_dead_caller() {
        let mut state = state(Connectors::from_list(vec![Arc::new(Panicking)]), None);
        let mut s = state.connector_view();
        let gh = || {
            dest(
                "gh",
                r#"{"access_token":"x","repository_owner":"o","repository_name":"r"}"#,
            )
        };
        let internal = |out: Result<(), wit::SyncError>| matches!(out, Err(wit::SyncError::Internal(m)) if m.contains("connector failed") && !m.contains("bug"));
        assert!(internal(s.push(gh(), secret("A", "v")).await.unwrap()));
        assert!(internal(s.push_new(gh(), secret("A", "v")).await.unwrap()));
        assert!(internal(s.delete(gh(), "A".into()).await.unwrap()));
        assert!(matches!(
            s.inspect(gh()).await.unwrap(),
            Err(wit::SyncError::Internal(_))
        ));
    }

    #[tokio::test]
    async fn authz_asks_the_callers_policies() {
        let backend = backend();
        let policies = PolicyStore::new(backend.clone());
        let tokens = TokenStore::new(backend);
        let path = "my-kv/data/app/db".to_string();
        let allowed = |policy: Option<&str>| {
            let (path, policies, tokens) = (path.clone(), policies.clone(), tokens.clone());
            let policy = policy.map(str::to_string);
            async move {
                let authority = match policy {
                    Some(p) => Some(
                        Authority::of(Namespace::root(), &caller(&p), &policies, &tokens)
                            .await
                            .unwrap(),
                    ),
                    None => None,
                };
                let mut state = state(Connectors::new(), authority);
                let mut view = state.authz_view();
                let read = view.allowed("read".into(), path.clone()).await.unwrap();
                let exact = view
                    .authorize(authz::Operation::Read, path, false)
                    .await
                    .unwrap();
                assert_eq!(read, exact);
                read
            }
        };
        assert!(allowed(Some("root")).await);
        assert!(!allowed(Some("default")).await);
        assert!(!allowed(None).await);
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    fn within(ms: u64) -> Option<(Duration, Instant)> {
        let bound = Duration::from_millis(ms);
        Some((bound, Instant::now() + bound))
    }

    #[tokio::test]
    async fn a_slow_inline_call_is_deferred_and_an_unbounded_one_waits() {
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        };
        let out = bounded(within(20), slow()).await;
        assert!(matches!(out, Err(wit::SyncError::Deferred(m)) if m.contains("sync worker")));
        assert!(bounded(None, slow()).await.is_ok());
        let failing = async { Err(SyncError::ClientSide("no".into())) };
        assert!(matches!(
            bounded(within(5_000), failing).await,
            Err(wit::SyncError::ClientSide(_))
        ));
    }

    /// The calls of one request share its bound: once it has run out (a
    /// secret with thousands of keys against a slow provider), no further
    /// call is made, so the request answers within the bound.
    #[tokio::test]
    async fn the_inline_bound_is_shared_by_the_calls_of_a_request() {
        let bound = within(20);
        let slow = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        };
        assert!(matches!(
            bounded(bound, slow).await,
            Err(wit::SyncError::Deferred(_))
        ));
        let made = std::sync::atomic::AtomicBool::new(false);
        let next = async {
            made.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        };
        assert!(matches!(
            bounded(bound, next).await,
            Err(wit::SyncError::Deferred(_))
        ));
        assert!(
            !made.load(std::sync::atomic::Ordering::SeqCst),
            "no call after the bound"
        );
    }
}
