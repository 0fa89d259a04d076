//! Rate-limit quota enforcement in the HTTP front, before a request reaches an engine instance.
//!
//! The rules are the engine's records (`sys/quotas/...`, kept in the root tenant's storage;
//! matching is [`QuotaSet::find`]). The host keeps them in memory and reads storage again only
//! after a commit touched them — its own or, with shared storage, another host's, as
//! [`Backend::watch`](crate::storage::Backend::watch) reports — so a request costs no engine
//! call and no storage read. While the change feed is lost the rules are read per request.
//!
//! Each quota is a token bucket per client IP address, as Vault's (per node: buckets are not
//! shared between hosts): it holds `rate` requests, refills at `rate` per `interval`, and a
//! request finding it empty is refused with 429 (Vault's message, `Retry-After`). With a
//! `block_interval`, a client that emptied it is refused for that long. Paths of the
//! configuration's `rate_limit_exempt_paths` are never limited; with
//! `enable_rate_limit_response_headers`, admitted and refused responses carry
//! `X-Ratelimit-Limit`, `-Remaining` and `-Reset`. Buckets that are full again (and not blocking)
//! are dropped, so memory follows the active clients only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kvsync_component::sys::quotas::{self, QuotaConfig, QuotaSet, RateLimitQuota};

use crate::http::{AppState, ClientAddr, HostError};
use crate::storage::{
    Follower, MAX_LIST_LIMIT, SharedBackend, StorageError, TenantStorage, tenant_prefix,
};

/// The tenant whose storage holds the quota records (quotas are managed in the root namespace).
const RULES_TENANT: &str = crate::http::ROOT_TENANT;

/// Without a change feed (a backend that reports none), how long rules read from storage are
/// used before they are read again.
const UNWATCHED_TTL: Duration = Duration::from_secs(1);

/// How often idle buckets are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What the front's quota check let through: headers for the response.
#[derive(Debug, Default)]
pub struct Admitted(Vec<(&'static str, String)>);

impl Admitted {
    /// Adds the quota's headers (when the configuration enables them) to a response.
    pub fn annotate(self, headers: &mut hyper::HeaderMap) {
        for (name, value) in self.0 {
            if let (Ok(name), Ok(value)) = (
                hyper::header::HeaderName::from_bytes(name.as_bytes()),
                hyper::header::HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
    }
}

/// The front's check of one request in namespace `ns` for `path` (relative to the namespace,
/// decoded once by the front for every later step): admitted, or refused with 429. The refusal names the path as the client sent
/// it (with the namespace prefix when it came in the path, without when it came in the
/// header), as Vault's does.
pub async fn admit<B>(
    state: &AppState,
    req: &hyper::Request<B>,
    ns: &str,
    path: &str,
) -> Result<Admitted, HostError> {
    let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
    let decode = |path: &str| {
        kvsync_component::api::request_path(path, kvsync_component::api::Operation::Read)
            .unwrap_or_else(|_| path.to_string())
    };
    match state.quotas.check(ns, path, client).await {
        Ok(Verdict::Admitted { headers }) => Ok(Admitted(headers)),
        Ok(Verdict::Refused {
            retry_after,
            headers,
            ..
        }) => Err(HostError::RateLimited {
            path: decode(req.uri().path().strip_prefix("/v1/").unwrap_or(path)),
            retry_after,
            headers,
        }),
        Err(e) => Err(HostError::Storage(e.to_string())),
    }
}

/// What the quota check decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Served; `headers` go on the response.
    Admitted {
        headers: Vec<(&'static str, String)>,
    },
    /// Refused (429): the full request path for the message, the quota's name for the log,
    /// the seconds after which to retry, and the headers of the response.
    Refused {
        path: String,
        quota: String,
        retry_after: u64,
        headers: Vec<(&'static str, String)>,
    },
}

/// The rules and buckets of one host.
#[derive(Clone)]
pub struct Quotas {
    inner: Arc<Inner>,
}

struct Inner {
    storage: TenantStorage,
    /// Full storage keys under this prefix are quota records.
    watched: String,
    follower: Follower,
    has_feed: bool,
    /// Bumped whenever the stored rules may have changed.
    generation: AtomicU64,
    /// The rules, with the generation current when their read began.
    rules: RwLock<Option<Cached>>,
    buckets: Mutex<Buckets>,
}

#[derive(Clone)]
struct Cached {
    generation: u64,
    read_at: Instant,
    rules: Arc<Rules>,
}

#[derive(Debug, Default, PartialEq)]
struct Rules {
    set: QuotaSet,
    config: QuotaConfig,
}

struct Buckets {
    /// Per quota name and client address (`None`: the caller is unknown).
    live: HashMap<(String, Option<IpAddr>), Bucket>,
    /// The quotas the buckets were filled for: a changed quota starts with fresh buckets.
    rules: Arc<Rules>,
    swept: Instant,
}

/// One client's token bucket of one quota.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
    blocked_until: Option<Instant>,
}

/// A quota's bucket arithmetic.
struct Shape {
    capacity: f64,
    /// Tokens per second.
    refill: f64,
    block: Duration,
}

impl Shape {
    fn of(q: &RateLimitQuota) -> Shape {
        let interval = q.interval.max(1) as f64;
        Shape {
            capacity: q.rate.round().max(1.0),
            refill: q.rate / interval,
            block: Duration::from_secs(q.block_interval),
        }
    }

    /// Seconds until `tokens` grows to `target`, rounded up.
    fn seconds_until(&self, tokens: f64, target: f64) -> u64 {
        if tokens >= target || self.refill <= 0.0 {
            return 0;
        }
        ((target - tokens) / self.refill).ceil() as u64
    }
}

impl Bucket {
    fn full(shape: &Shape, now: Instant) -> Bucket {
        Bucket {
            tokens: shape.capacity,
            at: now,
            blocked_until: None,
        }
    }

    fn refill(&mut self, shape: &Shape, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * shape.refill).min(shape.capacity);
        self.at = now;
    }

    /// Takes one token: `Ok(remaining)` or `Err(seconds to wait)`.
    fn take(&mut self, shape: &Shape, now: Instant) -> Result<u64, u64> {
        if let Some(until) = self.blocked_until {
            if until > now {
                return Err(until.duration_since(now).as_secs_f64().ceil() as u64);
            }
            self.blocked_until = None;
        }
        self.refill(shape, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(self.tokens.floor() as u64);
        }
        if !shape.block.is_zero() {
            self.blocked_until = Some(now + shape.block);
            return Err(shape.block.as_secs().max(1));
        }
        Err(shape.seconds_until(self.tokens, 1.0).max(1))
    }

    /// Whether it is as good as a new one: full and not blocking.
    fn is_idle(&self, shape: &Shape, now: Instant) -> bool {
        let blocking = self.blocked_until.is_some_and(|until| until > now);
        let mut b = self.clone();
        b.refill(shape, now);
        !blocking && b.tokens >= shape.capacity
    }
}

impl Quotas {
    pub fn new(backend: SharedBackend) -> Self {
        let changes = backend.watch();
        let has_feed = changes.is_some();
        Quotas {
            inner: Arc::new(Inner {
                watched: format!("{}{}", tenant_prefix(RULES_TENANT), "core/quotas/"),
                storage: TenantStorage::new(backend, RULES_TENANT),
                follower: Follower::new(changes),
                has_feed,
                generation: AtomicU64::new(0),
                rules: RwLock::new(None),
                buckets: Mutex::new(Buckets {
                    live: HashMap::new(),
                    rules: Arc::new(Rules::default()),
                    swept: Instant::now(),
                }),
            }),
        }
    }

    /// Checks one request of namespace `ns` (`""` or `team-a/`) for `path` (relative to the
    /// namespace) from `client`, and spends a token of the quota that applies.
    pub async fn check(
        &self,
        ns: &str,
        path: &str,
        client: Option<IpAddr>,
    ) -> Result<Verdict, StorageError> {
        let rules = self.rules().await?;
        let path = path.trim_start_matches('/');
        let full = format!("{ns}{path}");
        let admitted = Verdict::Admitted { headers: vec![] };
        if rules.set.is_empty() || rules.config.exempts(&full) {
            return Ok(admitted);
        }
        let Some(quota) = rules.set.find(ns, path) else {
            return Ok(admitted);
        };
        let shape = Shape::of(quota);
        let now = Instant::now();
        let taken = {
            let mut buckets = self.inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
            buckets.follow(&rules, now);
            let bucket = buckets
                .live
                .entry((quota.name.clone(), client))
                .or_insert_with(|| Bucket::full(&shape, now));
            let taken = bucket.take(&shape, now);
            (taken, bucket.tokens)
        };
        let headers = |remaining: u64, tokens: f64| {
            if !rules.config.enable_rate_limit_response_headers {
                return vec![];
            }
            vec![
                ("x-ratelimit-limit", format!("{}", shape.capacity as u64)),
                ("x-ratelimit-remaining", remaining.to_string()),
                (
                    "x-ratelimit-reset",
                    shape.seconds_until(tokens, shape.capacity).to_string(),
                ),
            ]
        };
        Ok(match taken {
            (Ok(remaining), tokens) => Verdict::Admitted {
                headers: headers(remaining, tokens),
            },
            (Err(retry_after), tokens) => {
                if rules.config.enable_rate_limit_audit_logging {
                    tracing::info!(
                        quota = %quota.name,
                        namespace = %ns,
                        "a request was refused by a rate limit quota"
                    );
                }
                Verdict::Refused {
                    path: full,
                    quota: quota.name.clone(),
                    retry_after,
                    headers: headers(0, tokens),
                }
            }
        })
    }

    /// The current rules: the cached ones unless a change was reported since they were read.
    async fn rules(&self) -> Result<Arc<Rules>, StorageError> {
        let inner = &self.inner;
        let bump = || {
            inner.generation.fetch_add(1, Ordering::AcqRel);
        };
        let serving = inner.follower.catch_up(
            |keys| {
                if keys.iter().any(|k| k.starts_with(&inner.watched)) {
                    bump();
                }
            },
            bump,
        );
        let generation = inner.generation.load(Ordering::Acquire);
        let cached = inner
            .rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(cached) = cached
            && serving
            && cached.generation == generation
            && (inner.has_feed || cached.read_at.elapsed() < UNWATCHED_TTL)
        {
            return Ok(cached.rules);
        }
        let rules = Arc::new(self.read().await?);
        if serving {
            let mut slot = inner.rules.write().unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_none_or(|c| c.generation <= generation) {
                *slot = Some(Cached {
                    generation,
                    read_at: Instant::now(),
                    rules: rules.clone(),
                });
            }
        }
        Ok(rules)
    }

    /// Reads every quota and the configuration from storage.
    async fn read(&self) -> Result<Rules, StorageError> {
        let storage = &self.inner.storage;
        let corrupt = |e: serde_json::Error| {
            StorageError::Unavailable(format!("a quota record does not decode: {e}"))
        };
        let mut quotas = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = storage
                .list(
                    quotas::keys::RATE_LIMIT,
                    after.as_deref(),
                    Some('/'),
                    MAX_LIST_LIMIT,
                )
                .await?;
            for name in page.keys.iter().filter(|k| !k.ends_with('/')) {
                if let Some(entry) = storage.get(&quotas::keys::rate_limit(name)).await? {
                    quotas.push(serde_json::from_slice(&entry.value).map_err(corrupt)?);
                }
            }
            match page.next {
                Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
                _ => break,
            }
        }
        let config = match storage.get(quotas::keys::CONFIG).await? {
            Some(entry) => serde_json::from_slice(&entry.value).map_err(corrupt)?,
            None => QuotaConfig::default(),
        };
        Ok(Rules {
            set: QuotaSet::new(quotas),
            config,
        })
    }
}

impl Buckets {
    /// Forgets the buckets of quotas that changed or went since they were filled, and, now and
    /// then, buckets as good as new.
    fn follow(&mut self, rules: &Arc<Rules>, now: Instant) {
        if !Arc::ptr_eq(&self.rules, rules) {
            if self.rules.set != rules.set {
                let same = |name: &str| {
                    let find = |r: &Rules| r.set.quotas().iter().find(|q| q.name == name).cloned();
                    find(&self.rules).is_some_and(|old| Some(old) == find(rules))
                };
                let keep: Vec<String> = self
                    .live
                    .keys()
                    .map(|(name, _)| name.clone())
                    .filter(|name| same(name))
                    .collect();
                self.live.retain(|(name, _), _| keep.contains(name));
            }
            self.rules = rules.clone();
        }
        if now.saturating_duration_since(self.swept) >= SWEEP_EVERY {
            self.swept = now;
            let shapes: HashMap<&str, Shape> = rules
                .set
                .quotas()
                .iter()
                .map(|q| (q.name.as_str(), Shape::of(q)))
                .collect();
            self.live.retain(|(name, _), bucket| {
                shapes
                    .get(name.as_str())
                    .is_some_and(|shape| !bucket.is_idle(shape, now))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Backend, Barrier, Condition, EncryptionKey, Op, RedbBackend};

    fn backend() -> SharedBackend {
        Arc::new(Barrier::new(
            RedbBackend::in_memory().unwrap(),
            EncryptionKey::generate().unwrap(),
        ))
    }

    fn quota(name: &str, ns: &str, mount: &str, rate: f64, block: u64) -> RateLimitQuota {
        RateLimitQuota {
            name: name.into(),
            namespace_path: ns.into(),
            mount_path: mount.into(),
            path_suffix: String::new(),
            rate,
            interval: 3600,
            block_interval: block,
            inheritable: false,
        }
    }

    /// Stores records as the engine does (JSON under the root tenant).
    async fn put(backend: &SharedBackend, key: &str, value: &impl serde::Serialize) {
        let key = format!("{}{key}", tenant_prefix(RULES_TENANT));
        backend
            .commit(
                Vec::<Condition>::new(),
                vec![Op::Put {
                    key,
                    value: serde_json::to_vec(value).unwrap(),
                }],
            )
            .await
            .unwrap();
    }

    async fn store(backend: &SharedBackend, q: &RateLimitQuota) {
        put(backend, &quotas::keys::rate_limit(&q.name), q).await;
    }

    fn refused(v: &Verdict) -> bool {
        matches!(v, Verdict::Refused { .. })
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    #[tokio::test]
    async fn past_the_rate_requests_are_refused_per_client_and_per_quota() {
        let backend = backend();
        let quotas = Quotas::new(backend.clone());
        // No quota: everything passes, and changes made later are seen.
        assert!(!refused(
            &quotas.check("", "secret/data/x", A).await.unwrap()
        ));
        store(&backend, &quota("kv", "", "secret/", 2.0, 0)).await;
        for _ in 0..2 {
            assert!(!refused(
                &quotas.check("", "secret/data/x", A).await.unwrap()
            ));
        }
        let third = quotas.check("", "secret/data/x", A).await.unwrap();
        let Verdict::Refused {
            path,
            quota: name,
            retry_after,
            headers,
        } = third
        else {
            panic!("{third:?}")
        };
        assert_eq!((path.as_str(), name.as_str()), ("secret/data/x", "kv"));
        assert!(retry_after >= 1);
        assert!(headers.is_empty());
        // Another client, another path outside the mount, exempt paths: unaffected.
        assert!(!refused(
            &quotas.check("", "secret/data/x", B).await.unwrap()
        ));
        assert!(!refused(
            &quotas.check("", "other/data/x", A).await.unwrap()
        ));
        // Another namespace's mount of the same name is another scope.
        assert!(!refused(
            &quotas.check("team-b/", "secret/data/x", A).await.unwrap()
        ));
        // A changed quota starts with a full bucket.
        store(&backend, &quota("kv", "", "secret/", 3.0, 0)).await;
        assert!(!refused(
            &quotas.check("", "secret/data/x", A).await.unwrap()
        ));
        // Deleted: no limit.
        let key = format!(
            "{}{}",
            tenant_prefix(RULES_TENANT),
            quotas::keys::rate_limit("kv")
        );
        backend
            .commit(vec![], vec![Op::Delete { key }])
            .await
            .unwrap();
        for _ in 0..5 {
            assert!(!refused(
                &quotas.check("", "secret/data/x", A).await.unwrap()
            ));
        }
    }

    #[tokio::test]
    async fn a_namespace_quota_throttles_that_namespace_only() {
        let backend = backend();
        let quotas = Quotas::new(backend.clone());
        store(&backend, &quota("a", "team-a/", "", 1.0, 0)).await;
        assert!(!refused(
            &quotas.check("team-a/", "secret/data/x", A).await.unwrap()
        ));
        assert!(refused(
            &quotas.check("team-a/", "sys/mounts", A).await.unwrap()
        ));
        for ns in ["", "team-b/", "team-a/ci/"] {
            for _ in 0..3 {
                let v = quotas.check(ns, "secret/data/x", A).await.unwrap();
                assert!(!refused(&v), "{ns}");
            }
        }
    }

    #[tokio::test]
    async fn block_interval_blocks_and_exempt_paths_and_headers_follow_the_config() {
        let backend = backend();
        let quotas = Quotas::new(backend.clone());
        store(&backend, &quota("global", "", "", 1.0, 600)).await;
        assert!(!refused(&quotas.check("", "sys/mounts", A).await.unwrap()));
        let Verdict::Refused { retry_after, .. } = quotas.check("", "sys/mounts", A).await.unwrap()
        else {
            panic!("not refused")
        };
        assert!(retry_after > 500, "{retry_after}");
        assert!(
            quotas.check("", "sys/health", A).await.unwrap()
                == Verdict::Admitted { headers: vec![] }
        );
        put(
            &backend,
            quotas::keys::CONFIG,
            &QuotaConfig {
                enable_rate_limit_audit_logging: true,
                enable_rate_limit_response_headers: true,
                rate_limit_exempt_paths: vec!["sys/mounts".into()],
            },
        )
        .await;
        assert!(!refused(&quotas.check("", "sys/mounts", A).await.unwrap()));
        let Verdict::Refused { headers, .. } = quotas.check("", "sys/health", A).await.unwrap()
        else {
            panic!("sys/health is no longer exempt")
        };
        let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset"
            ]
        );
        let Verdict::Admitted { headers } = quotas.check("", "sys/mounts", B).await.unwrap() else {
            panic!("exempt")
        };
        assert!(headers.is_empty());
    }

    #[test]
    fn buckets_refill_at_the_rate_and_idle_ones_are_as_new() {
        let q = RateLimitQuota {
            interval: 10,
            ..quota("q", "", "", 5.0, 0)
        };
        let shape = Shape::of(&q);
        let t0 = Instant::now();
        let mut b = Bucket::full(&shape, t0);
        for left in (0..5).rev() {
            assert_eq!(b.take(&shape, t0), Ok(left));
        }
        assert_eq!(b.take(&shape, t0), Err(2));
        assert!(!b.is_idle(&shape, t0));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(b.take(&shape, t1), Ok(0));
        assert!(b.is_idle(&shape, t1 + Duration::from_secs(10)));
    }
}
