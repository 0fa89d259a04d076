//! The token store against real storage (redb under the barrier): the rules
//! of create, TTL math, renewal, the tree (subtree and orphan revocation),
//! use limits, expiry and the sweep, across a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::record::{self, TokenRecord};
use super::*;
use crate::auth::tokens::lease::MAX_TTL;
use crate::storage::{Backend, Barrier, EncryptionKey, RedbBackend};

const SEC: u64 = 1_000_000_000;
/// 2025-01-01T00:00:00.25Z: not on a whole second, as a real clock.
const START: u64 = 1_735_689_600 * SEC + SEC / 4;

struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The ACL of `caller`'s policies, as the built-in ones grant (no named
/// policy exists in these tests). Leaked: a test's scopes borrow it.
fn acl_of(caller: &Caller) -> &'static crate::auth::policy::Acl {
    use crate::auth::policy::{Acl, default_policy, root_policy};
    let policies: Vec<_> = caller
        .policies
        .iter()
        .filter_map(|p| match p.as_str() {
            "root" => Some(root_policy()),
            "default" => Some(default_policy()),
            _ => None,
        })
        .collect();
    Box::leak(Box::new(Acl::new("", &policies)))
}

struct Fixture {
    store: TokenStore,
    backend: SharedBackend,
    clock: Arc<ManualClock>,
    root: Caller,
}

impl Fixture {
    async fn new() -> Self {
        let backend: SharedBackend = Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ));
        Self::on(backend, START).await
    }

    async fn on(backend: SharedBackend, now: u64) -> Self {
        let clock = Arc::new(ManualClock(AtomicU64::new(now)));
        let store = TokenStore::with_clock(backend.clone(), clock.clone());
        let root = store.create_root(None).await.unwrap();
        let root = store.resolve(root.token).await.unwrap().unwrap();
        Fixture {
            store,
            backend,
            clock,
            root,
        }
    }

    fn advance(&self, secs: u64) {
        self.clock.0.fetch_add(secs * SEC, Ordering::SeqCst);
    }

    fn scope<'a>(&self, caller: &'a Caller) -> Scope<'a> {
        Scope {
            namespace_id: "root",
            namespace_path: "",
            caller: Some(caller),
            acl: Some(acl_of(caller)),
        }
    }

    /// A token created by root.
    async fn by_root(&self, req: CreateRequest) -> Issued {
        self.create_as(&self.root, req).await.unwrap()
    }

    async fn create_as(&self, parent: &Caller, req: CreateRequest) -> Result<Issued, TokenError> {
        self.store.create(&self.scope(parent), &req).await
    }

    /// A token created by root, and its caller.
    async fn child_of(&self, parent: &Caller, req: CreateRequest) -> (Issued, Caller) {
        let issued = self.create_as(parent, req).await.unwrap();
        let caller = self.resolve(&issued).await.unwrap();
        (issued, caller)
    }

    async fn resolve(&self, issued: &Issued) -> Option<Caller> {
        self.store.resolve(token(issued)).await.unwrap()
    }

    async fn authenticate(&self, issued: &Issued) -> Option<Authenticated> {
        self.store.authenticate(token(issued)).await.unwrap()
    }

    async fn record(&self, issued: &Issued) -> Option<TokenRecord> {
        let hash = record::hash(token(issued).expose());
        self.backend
            .get(&record::token_key(&hash))
            .await
            .unwrap()
            .map(|e| TokenRecord::decode(&e.value).unwrap())
    }

    async fn keys(&self, prefix: &str) -> Vec<String> {
        self.backend.list(prefix, None, None, 0).await.unwrap().keys
    }
}

fn token(issued: &Issued) -> Token {
    issued.info.id.clone().unwrap()
}

fn req() -> CreateRequest {
    CreateRequest {
        renewable: true,
        ..CreateRequest::default()
    }
}

fn policies(names: &[&str]) -> Option<Vec<String>> {
    Some(names.iter().map(|n| n.to_string()).collect())
}

fn with_policies(names: &[&str]) -> CreateRequest {
    CreateRequest {
        policies: policies(names),
        ..req()
    }
}

fn bad(result: Result<Issued, TokenError>) -> String {
    match result {
        Err(TokenError::BadRequest(m)) => m,
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn root_creates_a_child_with_vault_s_defaults() {
    let f = Fixture::new().await;
    let issued = f.by_root(req()).await;
    let info = &issued.info;
    let id = token(&issued);
    assert!(id.expose().starts_with("hvs.") && id.len() == 28, "{id:?}");
    assert_eq!(info.accessor.len(), 24);
    // No policies given: the parent's, so a root parent gives a root child.
    assert_eq!(info.policies, ["root"]);
    assert_eq!(info.path, "auth/token/create");
    assert_eq!(info.display_name, "token");
    assert!(!info.orphan);
    assert_eq!(info.meta, None);
    // A root token asking no TTL under a root that never expires never
    // expires either, and cannot be renewed.
    assert_eq!(issued.lease_duration, 0);
    assert!(!issued.renewable && !info.lease.renewable);
    assert_eq!(info.creation_ttl, 0);
    assert_eq!(info.lease.issue_time, START);
    assert_eq!(info.lease.expire_time, None);
    assert_eq!(info.lease.ttl, 0);
    assert_eq!(info.creation_time, START / SEC);
    assert!(issued.warnings.is_empty(), "{:?}", issued.warnings);
    assert_eq!(f.keys(record::EXPIRY).await, Vec::<String>::new());
    // Any other token gets the default TTL, 768h.
    let default = f.by_root(with_policies(&["default"])).await;
    assert_eq!(default.lease_duration, MAX_TTL);
    assert!(default.renewable && default.info.lease.renewable);
    assert_eq!(default.info.creation_ttl, MAX_TTL);
    assert_eq!(default.info.lease.expire_time, Some(START + MAX_TTL * SEC));
    assert_eq!(default.info.lease.ttl, i64::try_from(MAX_TTL).unwrap());
    // Its indexes: accessor, place in the tree, expiry.
    let hash = record::hash(id.expose());
    assert!(f.keys(record::ACCESSORS).await.contains(&info.accessor));
    let default_hash = record::hash(token(&default).expose());
    let root_hash = record::hash(f.root.token.expose());
    let mut children = vec![hash.clone(), default_hash.clone()];
    children.sort();
    assert_eq!(f.keys(&record::children_prefix(&root_hash)).await, children);
    let due = (START + MAX_TTL * SEC) / 1_000_000;
    assert_eq!(
        f.keys(record::EXPIRY).await,
        [format!("{due:020}/{default_hash}")]
    );
    // The child is a caller.
    let caller = f.resolve(&issued).await.unwrap();
    assert_eq!(caller.policies, ["root"]);
    assert_eq!(caller.accessor, info.accessor);
}

#[tokio::test]
async fn fields_of_a_create_request() {
    let f = Fixture::new().await;
    let issued = f
        .by_root(CreateRequest {
            policies: policies(&[" B", "a", "A", ""]),
            meta: Some(vec![("team".into(), "x".into())]),
            display_name: "Terraform  x.y--".into(),
            num_uses: 3,
            ttl: 3600,
            renewable: false,
            ..req()
        })
        .await;
    let info = &issued.info;
    // Sanitised, with `default` added for a sudo caller.
    assert_eq!(info.policies, ["a", "b", "default"]);
    assert_eq!(info.display_name, "token-Terraform--x-y-");
    assert_eq!(info.meta, Some(vec![("team".into(), "x".into())]));
    assert_eq!(info.num_uses, 3);
    assert_eq!(issued.lease_duration, 3600);
    assert!(!issued.renewable && !info.lease.renewable);
    assert_eq!(
        issued.warnings,
        ["Policy \"a\" does not exist", "Policy \"b\" does not exist"]
    );
    let no_default = f
        .by_root(CreateRequest {
            policies: policies(&["a", "default"]),
            no_default_policy: true,
            ..req()
        })
        .await;
    assert_eq!(no_default.info.policies, ["a"]);
    let root = f.by_root(with_policies(&["x", "Root"])).await;
    assert_eq!(root.info.policies, ["root"]);
    for name in ["response-wrapping", "control-group"] {
        let e = bad(f.create_as(&f.root, with_policies(&[name])).await);
        assert_eq!(e, format!("cannot assign policy \"{name}\""));
    }
}

#[tokio::test]
async fn ttl_math() {
    let f = Fixture::new().await;
    let create = |r: CreateRequest| f.create_as(&f.root, r);
    let capped = |what: &str, asked: &str, max: &str| {
        format!(
            "{what} of \"{asked}\" exceeded the effective max_ttl of \"{max}\"; {what} value is capped accordingly"
        )
    };
    // (ttl, explicit max, period) -> (TTL granted, warning)
    for ((ttl, explicit_max_ttl, period), (granted, warning)) in [
        (
            (1000 * 3600, 0, 0),
            (MAX_TTL, Some(capped("TTL", "1000h", "768h"))),
        ),
        (
            (10 * 3600, 3600, 0),
            (3600, Some(capped("TTL", "10h", "1h"))),
        ),
        ((0, 3600, 7200), (3600, Some(capped("period", "2h", "1h")))),
        ((0, 0, 7200), (7200, None)),
        ((90, 0, 0), (90, None)),
    ] {
        let issued = create(CreateRequest {
            ttl,
            explicit_max_ttl,
            period,
            policies: policies(&["default"]),
            ..req()
        })
        .await
        .unwrap();
        assert_eq!(
            issued.lease_duration, granted,
            "{ttl} {explicit_max_ttl} {period}"
        );
        assert_eq!(issued.warnings, Vec::from_iter(warning));
        assert_eq!(
            (issued.info.explicit_max_ttl, issued.info.period),
            (explicit_max_ttl, period)
        );
    }
    // A root token with an explicit max only: that is its TTL.
    let bounded = create(CreateRequest {
        policies: policies(&["root"]),
        explicit_max_ttl: 60,
        ..req()
    })
    .await
    .unwrap();
    assert_eq!(bounded.lease_duration, 60);
    assert!(bounded.renewable);
    // An expiring root token cannot make one that never expires.
    let expiring_root = f.resolve(&bounded).await.unwrap();
    let e = bad(f.create_as(&expiring_root, with_policies(&["root"])).await);
    assert_eq!(
        e,
        "expiring root tokens cannot create non-expiring root tokens"
    );
}

#[tokio::test]
async fn a_non_root_parent_gives_at_most_what_it_has() {
    let f = Fixture::new().await;
    let (_, parent) = f
        .child_of(
            &f.root,
            CreateRequest {
                policies: policies(&["p1", "p2"]),
                ttl: 3600,
                ..req()
            },
        )
        .await;
    assert_eq!(parent.policies, ["default", "p1", "p2"]);
    // Nothing asked: the parent's, `default` included because it has it.
    let inherited = f.create_as(&parent, req()).await.unwrap();
    assert_eq!(inherited.info.policies, ["default", "p1", "p2"]);
    assert_eq!(
        inherited.lease_duration, MAX_TTL,
        "not bounded by the parent"
    );
    let subset = f.create_as(&parent, with_policies(&["P1"])).await.unwrap();
    assert_eq!(subset.info.policies, ["default", "p1"]);
    let subset = f
        .create_as(
            &parent,
            CreateRequest {
                policies: policies(&["p1"]),
                no_default_policy: true,
                ..req()
            },
        )
        .await
        .unwrap();
    assert_eq!(subset.info.policies, ["p1"]);
    for (asked, message) in [
        (
            with_policies(&["p1", "other"]),
            "child policies must be subset of parent",
        ),
        (
            with_policies(&["root"]),
            "child policies must be subset of parent",
        ),
        (
            CreateRequest {
                no_parent: true,
                ..req()
            },
            "root or sudo privileges required to create orphan token",
        ),
        (
            CreateRequest {
                period: 60,
                ..req()
            },
            "root or sudo privileges required to create periodic token",
        ),
        (
            CreateRequest {
                id: Some(Token::new("mine".into())),
                ..req()
            },
            "root or sudo privileges required to specify token id",
        ),
    ] {
        assert_eq!(bad(f.create_as(&parent, asked).await), message);
    }
    // `create-orphan` needs no sudo.
    let orphan = f
        .create_as(
            &parent,
            CreateRequest {
                orphan_endpoint: true,
                ..req()
            },
        )
        .await
        .unwrap();
    assert!(orphan.info.orphan);
    assert_eq!(orphan.info.path, "auth/token/create-orphan");
}

#[tokio::test]
async fn chosen_ids() {
    let f = Fixture::new().await;
    let with_id = |id: &str| CreateRequest {
        id: Some(Token::new(id.to_string())),
        ..req()
    };
    let issued = f.by_root(with_id("my-token")).await;
    assert_eq!(token(&issued).expose(), "my-token");
    assert_eq!(issued.warnings.len(), 1);
    for (id, message) in [
        ("hvs.x", "custom token ID cannot have the 'hvs.' prefix"),
        ("s.x", "custom token ID cannot have the 's.' prefix"),
        ("a.b", "custom token ID cannot have a '.' in the value"),
        ("my-token", "cannot create a token with a duplicate ID"),
    ] {
        assert_eq!(bad(f.create_as(&f.root, with_id(id)).await), message);
    }
}

#[tokio::test]
async fn renewal() {
    let f = Fixture::new().await;
    let scope = f.scope(&f.root);
    let issued = f
        .by_root(CreateRequest {
            ttl: 3600,
            explicit_max_ttl: 2 * 3600,
            ..req()
        })
        .await;
    let target = Target::Token(token(&issued));
    f.advance(600);
    let renewed = f.store.renew(&scope, &target, 1800).await.unwrap().unwrap();
    assert_eq!(renewed.lease_duration, 1800);
    assert!(renewed.warnings.is_empty());
    assert_eq!(renewed.info.creation_ttl, 3600, "the creation TTL stays");
    assert_eq!(
        renewed.info.lease.last_renewal_time,
        Some(START + 600 * SEC)
    );
    // No increment: the TTL granted last, again.
    let again = f.store.renew(&scope, &target, 0).await.unwrap().unwrap();
    assert_eq!(again.lease_duration, 1800);
    f.store.renew(&scope, &target, 3600).await.unwrap().unwrap();
    // Capped by the explicit max, counted from the issue time (whole
    // seconds): 7200 - 4000 left.
    f.advance(3400);
    let capped = f.store.renew(&scope, &target, 3600).await.unwrap().unwrap();
    assert_eq!(capped.lease_duration, 3200);
    assert_eq!(
        capped.warnings,
        [
            "TTL of \"1h\" exceeded the effective max_ttl of \"53m20s\"; TTL value is capped accordingly"
        ]
    );
    // The sweep entry follows the lease.
    let hash = record::hash(token(&issued).expose());
    let due = (START + 7200 * SEC) / 1_000_000;
    assert_eq!(f.keys(record::EXPIRY).await, [format!("{due:020}/{hash}")]);
    // By accessor, and the caller's own.
    let by_accessor = Target::Accessor(issued.info.accessor.clone());
    let renewed = f
        .store
        .renew(&scope, &by_accessor, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.info.id, None);
    let caller = f.resolve(&issued).await.unwrap();
    let own = f
        .store
        .renew(&f.scope(&caller), &Target::Caller, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own.info.id, Some(token(&issued)));
    // Past the end of its life, it is gone.
    f.advance(61);
    assert!(f.store.renew(&scope, &target, 0).await.unwrap().is_none());

    // Not renewable: a root token that never expires, a token created so.
    let e = f.store.renew(&scope, &Target::Caller, 0).await.unwrap_err();
    assert!(matches!(e, TokenError::BadRequest(m) if m == "lease is not renewable"));
    let fixed = f
        .by_root(CreateRequest {
            renewable: false,
            ..req()
        })
        .await;
    let e = f
        .store
        .renew(&scope, &Target::Token(token(&fixed)), 0)
        .await
        .unwrap_err();
    assert!(matches!(e, TokenError::BadRequest(m) if m == "lease is not renewable"));
    // A periodic token gets its period, whatever it asks.
    let periodic = f
        .by_root(CreateRequest {
            period: 7200,
            ..req()
        })
        .await;
    let renewed = f
        .store
        .renew(&scope, &Target::Token(token(&periodic)), 5 * 3600)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.lease_duration, 7200);
    assert!(
        f.store
            .renew(&scope, &Target::Token(Token::new("nope".into())), 0)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn revoking_a_token_revokes_its_subtree_at_once() {
    let f = Fixture::new().await;
    let (a, a_caller) = f.child_of(&f.root, req()).await;
    let (b, b_caller) = f.child_of(&a_caller, req()).await;
    let (c, _) = f.child_of(&b_caller, req()).await;
    let (orphan, _) = f
        .child_of(
            &b_caller,
            CreateRequest {
                orphan_endpoint: true,
                ..req()
            },
        )
        .await;
    // Resolved once: cached (a parent is cached again after its children's
    // creation rewrote its record).
    for cached in [&a, &b, &c, &orphan] {
        assert!(f.authenticate(cached).await.is_some());
    }
    assert!(f.store.inner.cache.len() >= 4);
    let scope = f.scope(&f.root);
    assert!(
        f.store
            .revoke(&scope, &Target::Token(token(&a)))
            .await
            .unwrap()
    );
    for gone in [&a, &b, &c] {
        assert!(f.authenticate(gone).await.is_none());
        assert!(f.record(gone).await.is_none());
    }
    assert!(f.authenticate(&orphan).await.is_some(), "orphans survive");
    assert!(f.resolve_root().await);
    // Nothing of them is left in the indexes.
    assert_eq!(f.keys(record::ACCESSORS).await.len(), 2);
    assert_eq!(f.keys(record::PARENTS).await, Vec::<String>::new());
    // Unknown, and revoked already: false.
    assert!(
        !f.store
            .revoke(&scope, &Target::Token(token(&a)))
            .await
            .unwrap()
    );
    let by_accessor = Target::Accessor(orphan.info.accessor.clone());
    assert!(f.store.revoke(&scope, &by_accessor).await.unwrap());
    assert!(f.authenticate(&orphan).await.is_none());
    // A revoked parent cannot create children.
    let e = bad(f.create_as(&b_caller, req()).await);
    assert_eq!(e, "parent token lookup failed: no parent found");
}

impl Fixture {
    async fn resolve_root(&self) -> bool {
        self.store
            .resolve(self.root.token.clone())
            .await
            .unwrap()
            .is_some()
    }
}

/// Two hosts sharing one storage: a token another host revokes is refused
/// on this host's next request, though this host had its caller cached (the
/// storage's change feed).
#[tokio::test]
async fn a_token_another_host_revokes_is_refused_at_once() {
    let f = Fixture::new().await;
    let other = TokenStore::with_clock(f.backend.clone(), f.clock.clone());
    let (a, _) = f.child_of(&f.root, req()).await;
    // Cached on the other host.
    assert!(other.resolve(token(&a)).await.unwrap().is_some());
    assert!(other.inner.cache.len() >= 1);
    let scope = f.scope(&f.root);
    assert!(
        f.store
            .revoke(&scope, &Target::Token(token(&a)))
            .await
            .unwrap()
    );
    assert!(other.resolve(token(&a)).await.unwrap().is_none());
}

#[tokio::test]
async fn revoke_orphan_leaves_the_children_as_orphans() {
    let f = Fixture::new().await;
    let (a, a_caller) = f.child_of(&f.root, with_policies(&["p"])).await;
    let (b, _) = f.child_of(&a_caller, req()).await;
    let scope = f.scope(&f.root);
    // Only root or sudo.
    let e = f
        .store
        .revoke_orphan(&f.scope(&a_caller), &token(&b))
        .await
        .unwrap_err();
    assert!(
        matches!(e, TokenError::BadRequest(m) if m == "root or sudo privileges required to revoke and orphan")
    );
    assert!(f.store.revoke_orphan(&scope, &token(&a)).await.unwrap());
    assert!(f.authenticate(&a).await.is_none());
    let b_info = f
        .store
        .lookup(&scope, &Target::Token(token(&b)))
        .await
        .unwrap()
        .unwrap();
    assert!(b_info.orphan);
    assert!(f.authenticate(&b).await.is_some());
    assert_eq!(f.keys(record::PARENTS).await, Vec::<String>::new());
    assert!(
        !f.store
            .revoke_orphan(&scope, &Token::new("nope".into()))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn use_limits() {
    let f = Fixture::new().await;
    let issued = f
        .by_root(CreateRequest {
            num_uses: 2,
            ..req()
        })
        .await;
    let scope = f.scope(&f.root);
    let first = f.authenticate(&issued).await.unwrap();
    assert!(first.spent.is_none());
    let left = f
        .store
        .lookup(&scope, &Target::Token(token(&issued)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.num_uses, 1);
    // A token with a use limit cannot create tokens.
    let e = bad(f.create_as(&first.caller, req()).await);
    assert_eq!(e, "restricted use token cannot generate child tokens");
    // Resolving without spending (a path served without a token).
    assert!(f.resolve(&issued).await.is_some());
    let last = f.authenticate(&issued).await.unwrap();
    let spent = last.spent.expect("the last use");
    // During its last request it still looks itself up, with -1 uses.
    let own = f
        .store
        .lookup(&f.scope(&last.caller), &Target::Caller)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own.num_uses, -1);
    assert!(f.authenticate(&issued).await.is_none(), "refused at once");
    f.store.finish(spent).await;
    assert!(f.record(&issued).await.is_none());
    assert_eq!(f.keys(record::EXPIRY).await.len(), 0);

    // Should the revocation after the last request not happen, the sweep
    // removes the record after a grace period.
    let once = f
        .by_root(CreateRequest {
            num_uses: 1,
            ..req()
        })
        .await;
    let spent = f.authenticate(&once).await.unwrap().spent;
    assert!(spent.is_some());
    drop(spent);
    assert_eq!(f.store.sweep_due(10).await.unwrap().0, 0);
    f.advance(SPENT_GRACE_MS / 1000 + 1);
    assert_eq!(f.store.sweep_due(10).await.unwrap().0, 1);
    assert!(f.record(&once).await.is_none());
}

#[tokio::test]
async fn expired_tokens_are_refused_at_once_even_when_cached() {
    let f = Fixture::new().await;
    let issued = f.by_root(CreateRequest { ttl: 10, ..req() }).await;
    assert!(f.authenticate(&issued).await.is_some());
    f.advance(9);
    assert!(f.authenticate(&issued).await.is_some());
    f.advance(1);
    assert!(f.authenticate(&issued).await.is_none());
    assert!(f.resolve(&issued).await.is_none());
    let scope = f.scope(&f.root);
    let target = Target::Token(token(&issued));
    assert!(f.store.lookup(&scope, &target).await.unwrap().is_none());
    assert!(f.store.renew(&scope, &target, 0).await.unwrap().is_none());
    // The record stays until the sweep.
    assert!(f.record(&issued).await.is_some());
    let (handled, next) = f.store.sweep_due(10).await.unwrap();
    assert_eq!((handled, next), (1, None));
    assert!(f.record(&issued).await.is_none());
}

#[tokio::test]
async fn the_sweep_revokes_the_subtree_and_works_in_batches() {
    let f = Fixture::new().await;
    let (parent, parent_caller) = f
        .child_of(&f.root, CreateRequest { ttl: 10, ..req() })
        .await;
    // Children outliving their parent go with it.
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(
            f.create_as(&parent_caller, CreateRequest { ttl: 3600, ..req() })
                .await
                .unwrap(),
        );
    }
    let later = f.by_root(CreateRequest { ttl: 20, ..req() }).await;
    let (handled, next) = f.store.sweep_due(10).await.unwrap();
    assert_eq!(handled, 0);
    assert_eq!(next, Some((START + 10 * SEC) / 1_000_000));
    f.advance(10);
    // A batch of one: more may be due, so the next pass is now.
    let (handled, next) = f.store.sweep_due(1).await.unwrap();
    assert_eq!(handled, 1);
    assert_eq!(next, Some((START + 10 * SEC) / 1_000_000));
    assert!(f.record(&parent).await.is_none());
    for child in &children {
        assert!(f.authenticate(child).await.is_none());
        assert!(f.record(child).await.is_none());
    }
    assert!(f.authenticate(&later).await.is_some());
    f.advance(10);
    assert_eq!(f.store.sweep_due(1).await.unwrap().0, 1);
    assert_eq!(f.keys(record::EXPIRY).await, Vec::<String>::new());
    assert_eq!(f.keys(record::ACCESSORS).await.len(), 1, "root's");
}

#[tokio::test]
async fn the_sweep_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kvsync.redb");
    let key = EncryptionKey::generate().unwrap();
    let open = || -> SharedBackend {
        Arc::new(Barrier::new(RedbBackend::open(&file).unwrap(), key.clone()))
    };
    let issued = {
        let f = Fixture::on(open(), START).await;
        f.by_root(CreateRequest { ttl: 30, ..req() }).await
    };
    // A new process, later: the token is refused, and the sweep finds its
    // entry in storage.
    let backend = open();
    let clock = Arc::new(ManualClock(AtomicU64::new(START + 31 * SEC)));
    let store = TokenStore::with_clock(backend.clone(), clock);
    assert!(store.authenticate(token(&issued)).await.unwrap().is_none());
    assert_eq!(store.sweep_due(10).await.unwrap(), (1, None));
    let hash = record::hash(token(&issued).expose());
    assert!(
        backend
            .get(&record::token_key(&hash))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        backend
            .get(&record::accessor_key(&issued.info.accessor))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn lookups_and_accessors() {
    let f = Fixture::new().await;
    let scope = f.scope(&f.root);
    let issued = f
        .by_root(CreateRequest {
            ttl: 600,
            period: 0,
            ..req()
        })
        .await;
    f.clock.0.fetch_add(SEC / 2, Ordering::SeqCst);
    let by_token = f
        .store
        .lookup(&scope, &Target::Token(token(&issued)))
        .await
        .unwrap()
        .unwrap();
    // Seconds left from now rounded to the second.
    assert_eq!(by_token.lease.ttl, 599);
    assert_eq!(by_token.id, Some(token(&issued)));
    let by_accessor = f
        .store
        .lookup(&scope, &Target::Accessor(issued.info.accessor.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_accessor.id, None);
    assert_eq!(by_accessor.accessor, issued.info.accessor);
    let own = f
        .store
        .lookup(&scope, &Target::Caller)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own.policies, ["root"]);
    assert_eq!(own.path, "auth/token/root");
    assert_eq!(own.lease.expire_time, None);
    assert!(!own.lease.renewable);
    let mut accessors = vec![f.root.accessor.clone(), issued.info.accessor.clone()];
    accessors.sort();
    assert_eq!(f.store.list_accessors(&scope).await.unwrap(), accessors);
    // The caller behind an accessor (what `sys/capabilities-accessor` needs).
    let behind = f
        .store
        .lookup_accessor(&issued.info.accessor)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(behind.policies, issued.info.policies);
    assert!(behind.token.is_empty());
    assert!(f.store.lookup_accessor("unknown").await.unwrap().is_none());
    assert!(f.store.lookup_accessor("").await.unwrap().is_none());
    // Another namespace sees none of them.
    let other = Scope {
        namespace_id: "ns1",
        namespace_path: "ns1/",
        caller: Some(&f.root),
        acl: Some(acl_of(&f.root)),
    };
    assert!(
        f.store
            .lookup(&other, &Target::Token(token(&issued)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(f.store.list_accessors(&other).await.unwrap().is_empty());
    // No caller: nothing.
    let nobody = Scope {
        namespace_id: "root",
        namespace_path: "",
        caller: None,
        acl: None,
    };
    assert!(matches!(
        f.store.lookup(&nobody, &Target::Caller).await,
        Err(TokenError::Forbidden(_))
    ));
}

#[tokio::test]
async fn a_root_namespace_admin_minting_for_a_child_namespace() {
    let f = Fixture::new().await;
    let child = Scope {
        namespace_id: "ns1",
        namespace_path: "ns1/",
        caller: Some(&f.root),
        acl: Some(acl_of(&f.root)),
    };
    let e = f
        .store
        .create(&child, &with_policies(&["root"]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, TokenError::BadRequest(m) if m == "root tokens may not be created from a parent namespace")
    );
    let issued = f
        .store
        .create(&child, &with_policies(&["team"]))
        .await
        .unwrap();
    assert_eq!(issued.info.policies, ["default", "team"]);
    assert!(token(&issued).expose().ends_with(".ns1"));
    assert!(issued.info.accessor.ends_with(".ns1"));
    assert_eq!(issued.info.namespace_path, "ns1/");
}

#[tokio::test]
async fn dev_root_tokens_look_like_the_initial_root_token() {
    let f = Fixture::new().await;
    let dev = f.store.create_root(Some("root".into())).await.unwrap();
    let caller = f.store.resolve(dev.token).await.unwrap().unwrap();
    assert_eq!(caller.path, "auth/token/root");
    assert_eq!(caller.display_name, "root");
    assert_eq!(caller.policies, ["root"]);
}

#[tokio::test]
async fn records_of_earlier_versions_stay_readable() {
    let f = Fixture::new().await;
    // A root token as `operator init` stored it before leases and trees.
    let old = serde_json::json!({
        "accessor": "oLdAcCeSsOr0123456789abc",
        "display_name": "root",
        "policies": ["root"],
        "path": "auth/token/root",
        "creation_time": 1_700_000_000u64,
    });
    let hash = record::hash("hvs.old-root");
    f.backend
        .commit(
            Vec::new(),
            vec![Op::Put {
                key: record::token_key(&hash),
                value: serde_json::to_vec(&old).unwrap(),
            }],
        )
        .await
        .unwrap();
    let caller = f
        .store
        .authenticate(Token::new("hvs.old-root".into()))
        .await
        .unwrap()
        .unwrap()
        .caller;
    assert_eq!(caller.creation_time, 1_700_000_000);
    let scope = f.scope(&caller);
    let info = f
        .store
        .lookup(&scope, &Target::Caller)
        .await
        .unwrap()
        .unwrap();
    assert!(info.orphan);
    assert_eq!(info.lease.expire_time, None);
    assert_eq!(info.lease.issue_time, 1_700_000_000 * SEC);
    // The accessor index learns of it once.
    let by_accessor = Target::Accessor("oLdAcCeSsOr0123456789abc".into());
    assert!(
        f.store
            .lookup(&scope, &by_accessor)
            .await
            .unwrap()
            .is_none()
    );
    f.store.upgrade().await.unwrap();
    assert!(
        f.store
            .lookup(&scope, &by_accessor)
            .await
            .unwrap()
            .is_some()
    );
    f.store.upgrade().await.unwrap();
    // It never expires, so it can create root tokens that never do.
    let child = f.create_as(&caller, req()).await.unwrap();
    assert_eq!(child.lease_duration, 0);
    assert_eq!(child.info.lease.expire_time, None);
}

#[tokio::test]
async fn a_cache_fill_that_raced_a_revocation_is_dropped() {
    let f = Fixture::new().await;
    let issued = f.by_root(req()).await;
    let cache = &f.store.inner.cache;
    let generation = cache.generation();
    cache.remove(["unrelated"]);
    let hash = record::hash(token(&issued).expose());
    let entry = super::cache::Cached {
        accessor: String::new(),
        display_name: String::new(),
        policies: Vec::new(),
        path: String::new(),
        creation_time: 0,
        namespace_id: "root".into(),
        expire_time: None,
    };
    cache.put(hash.clone(), entry.clone(), generation);
    assert!(cache.get(&hash).is_none());
    cache.put(hash.clone(), entry, cache.generation());
    assert!(cache.get(&hash).is_some());
}
