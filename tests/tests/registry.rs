//! The host's connector registry against the engine's destination types: every
//! type the engine declares (`component/src/sync/destinations/`) has exactly
//! one connector registered on the host (`host/src/connectors/mod.rs`).

use kvsync::connectors::{ConnectorEnv, Connectors, DEFAULT_TIMEOUT};
use kvsync_component::sync::destinations::TYPES;

#[test]
fn every_destination_type_of_the_engine_has_one_connector() {
    let mut engine: Vec<&str> = TYPES.iter().map(|t| t.kind).collect();
    engine.sort_unstable();
    let registry = Connectors::with_env(ConnectorEnv::default(), DEFAULT_TIMEOUT);
    assert_eq!(registry.kinds(), engine);
}
