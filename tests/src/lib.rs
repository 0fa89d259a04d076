//! Shared pieces of the end-to-end tests: faithful fakes of the providers that
//! have no emulator (built on one small framework with a fault table and an
//! admin endpoint), and a fault-injecting proxy for the ones that do (moto).

pub mod bench;
pub mod fake;
pub mod parity;
pub mod postgres;
pub mod scale;

/// The caller of a root token, for calls straight into the runtime.
pub fn root_caller() -> kvsync::auth::Caller {
    kvsync::auth::Caller {
        token: kvsync::auth::Token::new("root".into()),
        accessor: "acc".into(),
        display_name: "root".into(),
        policies: vec!["root".into()],
        path: "auth/token/root".into(),
        creation_time: 0,
        namespace_id: "root".into(),
    }
}

/// The root caller with its authority over `backend`'s root namespace, for
/// calls straight into the runtime.
pub async fn root_identity(
    backend: &kvsync::storage::SharedBackend,
) -> anyhow::Result<(kvsync::auth::Caller, kvsync::auth::Authority)> {
    use kvsync::auth::{Authority, Namespace};
    let (tokens, policies) = kvsync::server::identity(backend).await?;
    let caller = root_caller();
    let authority = Authority::of(Namespace::root(), &caller, &policies, &tokens).await?;
    Ok((caller, authority))
}
