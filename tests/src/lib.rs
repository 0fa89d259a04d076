//! Shared pieces of the end-to-end tests: faithful fakes of the providers that
//! have no emulator (built on one small framework with a fault table and an
//! admin endpoint), and a fault-injecting proxy for the ones that do (moto).

pub mod bench;
pub mod fake;
pub mod parity;

/// The caller of a root token, for calls straight into the runtime.
pub fn root_caller() -> kvsync::auth::Caller {
    kvsync::auth::Caller {
        token: kvsync::auth::Token::new("root".into()),
        accessor: "acc".into(),
        display_name: "root".into(),
        policies: vec!["root".into()],
        path: "auth/token/root".into(),
        creation_time: 0,
    }
}
