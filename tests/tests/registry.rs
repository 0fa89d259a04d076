//! What the host and the engine each list, held equal: every destination type
//! the engine declares (`component/src/sync/destinations/`) has exactly one
//! connector registered on the host (`host/src/connectors/mod.rs`), and the
//! paths the host serves without a token, or leaves to the engine's check by
//! access under a mount (`host/src/http/access.rs`), are the ones the
//! engine's path tables flag `unauthenticated` and `access_by_mount`.

use kvsync::connectors::{ConnectorEnv, Connectors, DEFAULT_TIMEOUT};
use kvsync::http::access::{ACCESS_BY_MOUNT, UNAUTHENTICATED};
use kvsync_component::framework::Path;
use kvsync_component::router::BACKENDS;
use kvsync_component::sync::destinations::TYPES;

#[test]
fn every_destination_type_of_the_engine_has_one_connector() {
    let mut engine: Vec<&str> = TYPES.iter().map(|t| t.kind).collect();
    engine.sort_unstable();
    let registry = Connectors::with_env(ConnectorEnv::default(), DEFAULT_TIMEOUT);
    assert_eq!(registry.kinds(), engine);
}

/// The full paths (or, for a pattern with parameters, the prefix before the
/// first parameter) of the engine's paths that `flagged` selects, sorted.
fn engine_paths(flagged: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut out: Vec<String> = BACKENDS
        .iter()
        .flat_map(|b| b.paths.iter().map(move |p| (b.root, p)))
        .filter(|(_, p)| flagged(p))
        .map(|(root, p)| {
            let full = format!("{root}{}", p.pattern);
            match full.split_once('{') {
                Some((prefix, _)) => prefix.to_string(),
                None => full.trim_matches('/').to_string(),
            }
        })
        .collect();
    out.sort_unstable();
    out
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    out.sort_unstable();
    out
}

#[test]
fn the_hosts_open_paths_are_the_engines_unauthenticated_paths() {
    assert_eq!(engine_paths(|p| p.unauthenticated), sorted(UNAUTHENTICATED));
    assert_eq!(engine_paths(|p| p.access_by_mount), sorted(ACCESS_BY_MOUNT));
}
