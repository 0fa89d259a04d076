use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::*;
use crate::connectors::{Destination, typed};

fn dest(config: Value) -> Destination {
    Destination {
        kind: "gh".into(),
        name: "d".into(),
        config,
        tenant: String::new(),
    }
}

#[tokio::test]
async fn checks_come_before_any_call() {
    // As the registry holds it: it parses each destination.
    let gh = typed(GitHub::default());
    let d = dest(json!({
        "access_token": "ghp_x", "repository_owner": "acme", "repository_name": "web",
        "enterprise_url": "https://127.0.0.1:9/", "disable_strict_networking": false
    }));
    let secret = |name: &str, value: &str| ExternalSecret {
        name: name.into(),
        value: Zeroizing::new(value.into()),
        tags: vec![],
    };
    let e = gh.push(&d, &secret("GITHUB_X", "v")).await.unwrap_err();
    assert!(
        matches!(&e, SyncError::ClientSide(m) if m.contains("GITHUB_")),
        "{e:?}"
    );
    let big = "x".repeat(MAX_VALUE_BYTES + 1);
    let e = gh.push(&d, &secret("A", &big)).await.unwrap_err();
    assert!(
        matches!(&e, SyncError::ClientSide(m) if m.contains("48 KB")),
        "{e:?}"
    );
    // Loopback and port 9 are refused by the default egress rules.
    let e = gh.push(&d, &secret("A", "v")).await.unwrap_err();
    assert!(
        matches!(&e, SyncError::ClientSide(m) if m.contains("egress refused")),
        "{e:?}"
    );
    let e = gh.delete(&d, "A").await.unwrap_err();
    assert!(
        matches!(&e, SyncError::ClientSide(m) if m.contains("egress refused")),
        "{e:?}"
    );
    // A name GitHub could not hold is already gone.
    gh.delete(&d, "GITHUB_X").await.unwrap();
}

#[test]
fn a_token_lifetime_beyond_the_clock_is_capped_not_a_panic() {
    use std::time::{Duration, Instant};

    use super::client::refresh_at;
    use crate::connectors::http::MAX_TOKEN_LIFETIME;
    let now = Instant::now();
    let unix = 1_700_000_000;
    assert_eq!(
        refresh_at(now, unix, Some(unix + 3600)),
        Some(now + Duration::from_secs(3300))
    );
    assert_eq!(
        refresh_at(now, unix, None),
        Some(now + Duration::from_secs(3300))
    );
    assert_eq!(refresh_at(now, unix, Some(unix + 10)), None);
    assert_eq!(refresh_at(now, unix, Some(unix - 10)), None);
    // An expiry a provider (or a man in the middle) sets at the end of time.
    assert_eq!(
        refresh_at(now, unix, Some(u64::MAX)),
        Some(now + MAX_TOKEN_LIFETIME - Duration::from_secs(300))
    );
}
