//! The token auth method's operations, as the engine's `tokens` import asks
//! for them: scoped to the request's namespace and caller ([`Scope`]). The
//! records and their create, lookup, renew and revoke; the child and
//! namespace indexes are walked in `index.rs`, the expiry index in
//! `sweep.rs`.
//!
//! Creating a token (Vault's rules, in Vault's order, for a service token):
//!
//! 1. The parent is the caller. A parent with a use limit cannot create
//!    tokens. The caller is "sudo" when it is root or holds `sudo` on the
//!    request path (`auth/token/create` or `auth/token/create-orphan`).
//! 2. A token for another namespace than the parent's needs sudo and cannot
//!    be root.
//! 3. `display_name` becomes `token-<name>`, every character outside
//!    `[a-zA-Z0-9-]` replaced by `-`, one trailing `-` dropped. A chosen
//!    `id` needs sudo and the root namespace, may not contain `.` nor start
//!    with `hvs.` or `s.`, and may not exist already.
//! 4. Policies: without any, the parent's (with `default` only if the
//!    parent has it); for a caller that is not sudo, a subset of the
//!    parent's, plus `default` if the parent has it; for a sudo caller, any,
//!    plus `default`. `no_default_policy` removes `default`. Names are
//!    trimmed and lower-cased, empty ones dropped, duplicates removed,
//!    sorted; `root` among them leaves only `root`, which only a root parent
//!    may give. `response-wrapping` and `control-group` cannot be given.
//! 5. `no_parent` needs sudo (`create-orphan` does not); a `period` needs
//!    sudo.
//! 6. The TTL ([`super::lease`]): a root token without `ttl` and `period`
//!    never expires (only under a parent that never expires), is not
//!    renewable, and an `explicit_max_ttl` becomes its TTL.
//! 7. Warnings: a capped TTL or period, a chosen ID, and every policy that
//!    does not exist in the namespace.

use std::collections::BTreeSet;

use super::lease::{self, TtlInput};
use super::record::{self, ACCESSORS, LeaseRecord, ROOT_NAMESPACE, TokenRecord, decode_hash};
use super::{
    CreateRequest, Issued, LeaseInfo, Target, TokenError, TokenInfo, TokenStore, random_id,
    retrying,
};
use crate::auth::policy::Acl;
use crate::auth::{Caller, ROOT_POLICY, Token, acl};
use crate::storage::{Condition, Op, StorageError};

/// The namespace and caller an operation runs for.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub namespace_id: &'a str,
    /// The namespace's path (`""` for the root, `team-a/` otherwise).
    pub namespace_path: &'a str,
    pub caller: Option<&'a Caller>,
    /// The caller's compiled ACL (`None` without a caller: no sudo).
    pub acl: Option<&'a Acl>,
}

/// Policies no token may hold.
const NON_ASSIGNABLE: &[&str] = &["response-wrapping", "control-group"];
const DEFAULT_POLICY: &str = "default";
/// Where the `policies` store keeps a namespace's ACL policies.
const POLICY_PREFIX: &str = "core/policies/acl/";

/// A record read from storage with its version.
pub(super) struct Loaded {
    pub(super) hash: String,
    pub(super) version: u64,
    pub(super) record: TokenRecord,
}

impl Scope<'_> {
    fn caller(&self) -> Result<&Caller, TokenError> {
        self.caller
            .ok_or_else(|| TokenError::Forbidden("permission denied".to_string()))
    }

    /// Whether the caller is root or holds `sudo` on `path`.
    fn is_sudo(&self, path: &str) -> bool {
        acl::allowed(self.acl, self.namespace_path, "sudo", path)
    }
}

fn sanitize_display_name(name: &str) -> String {
    let full: String = format!("token-{name}")
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || c == '-' {
            true => c,
            false => '-',
        })
        .collect();
    full.strip_suffix('-').map(str::to_string).unwrap_or(full)
}

/// Vault's policy list sanitising: trimmed, lower-cased, no empty names,
/// `root` alone if present, `default` added when asked (unless root),
/// duplicates removed, sorted.
fn sanitize_policies(policies: &[String], add_default: bool) -> Vec<String> {
    let names: BTreeSet<String> = policies
        .iter()
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    if names.contains(ROOT_POLICY) {
        return vec![ROOT_POLICY.to_string()];
    }
    let mut names = names;
    if add_default {
        names.insert(DEFAULT_POLICY.to_string());
    }
    names.into_iter().collect()
}

fn check_custom_id(id: &str) -> Result<(), TokenError> {
    if id.starts_with("hvs.") {
        return Err(TokenError::bad(
            "custom token ID cannot have the 'hvs.' prefix",
        ));
    }
    if id.starts_with("s.") {
        return Err(TokenError::bad(
            "custom token ID cannot have the 's.' prefix",
        ));
    }
    if id.contains('.') {
        return Err(TokenError::bad(
            "custom token ID cannot have a '.' in the value",
        ));
    }
    Ok(())
}

impl TokenStore {
    pub(super) async fn load(&self, hash: &str) -> Result<Option<Loaded>, StorageError> {
        let Some(entry) = self.backend().get(&record::token_key(hash)).await? else {
            return Ok(None);
        };
        Ok(Some(Loaded {
            hash: hash.to_string(),
            version: entry.version,
            record: TokenRecord::decode(&entry.value)?,
        }))
    }

    /// The hash of the token `which` names (and the token, when known).
    async fn resolve_target(
        &self,
        scope: &Scope<'_>,
        which: &Target,
    ) -> Result<Option<(String, Option<Token>)>, TokenError> {
        Ok(match which {
            Target::Caller => {
                let token = scope.caller()?.token.clone();
                Some((record::hash(token.expose()), Some(token)))
            }
            Target::Token(token) => Some((record::hash(token.expose()), Some(token.clone()))),
            Target::Accessor(accessor) => self
                .backend()
                .get(&record::accessor_key(accessor))
                .await?
                .and_then(|e| decode_hash(&e.value))
                .map(|hash| (hash, None)),
        })
    }

    /// The record `which` names in the scope's namespace. `any_state`: also
    /// a used-up token (a lookup); never an expired one.
    async fn find(
        &self,
        scope: &Scope<'_>,
        which: &Target,
        any_state: bool,
    ) -> Result<Option<(Loaded, Option<Token>)>, TokenError> {
        let Some((hash, token)) = self.resolve_target(scope, which).await? else {
            return Ok(None);
        };
        let Some(loaded) = self.load(&hash).await? else {
            return Ok(None);
        };
        let now = self.now();
        let visible = loaded.record.namespace_id == scope.namespace_id
            && !loaded.record.expired(now)
            && (any_state || loaded.record.usable(now));
        Ok(visible.then_some((loaded, token)))
    }

    /// `rec` as lookups show it; `namespace_path` is its namespace's (the
    /// scope's: a token is only ever seen from its own namespace).
    fn info(&self, rec: &TokenRecord, id: Option<Token>, namespace_path: &str) -> TokenInfo {
        let now = self.now();
        let lease = rec.lease();
        let renewable = match lease.expire_time {
            None => false,
            Some(expire) => expire > now && lease.renewable,
        };
        TokenInfo {
            id,
            accessor: rec.accessor.clone(),
            policies: rec.policies.clone(),
            path: rec.path.clone(),
            meta: rec.meta.as_ref().map(|m| m.clone().into_iter().collect()),
            display_name: rec.display_name.clone(),
            num_uses: rec.num_uses,
            orphan: rec.parent.is_empty(),
            creation_time: rec.creation_time,
            creation_ttl: rec.ttl,
            explicit_max_ttl: rec.explicit_max_ttl,
            period: rec.period,
            lease: LeaseInfo {
                issue_time: lease.issue_time,
                expire_time: lease.expire_time,
                last_renewal_time: lease.last_renewal_time,
                renewable,
                ttl: lease.expire_time.map_or(0, |e| lease::seconds_left(e, now)),
            },
            namespace_path: namespace_path.to_string(),
        }
    }

    /// Whether the ACL policy `name` exists in `namespace` (`default`
    /// always does, `root` in the root namespace).
    async fn policy_exists(&self, namespace: &str, name: &str) -> Result<bool, StorageError> {
        if name == DEFAULT_POLICY || (name == ROOT_POLICY && namespace == ROOT_NAMESPACE) {
            return Ok(true);
        }
        let key = format!("{POLICY_PREFIX}{namespace}/{name}");
        Ok(self.backend().get(&key).await?.is_some())
    }

    /// Creates a token for the scope's caller (see the module documentation
    /// for the rules).
    pub async fn create(
        &self,
        scope: &Scope<'_>,
        req: &CreateRequest,
    ) -> Result<Issued, TokenError> {
        retrying("the parent token kept changing", || {
            self.try_create(scope, req)
        })
        .await
    }

    async fn try_create(
        &self,
        scope: &Scope<'_>,
        req: &CreateRequest,
    ) -> Result<Issued, TokenError> {
        let caller = scope.caller()?;
        let parent_hash = record::hash(caller.token.expose());
        let now = self.now();
        let parent = match self.load(&parent_hash).await? {
            Some(p) if !p.record.expired(now) => p,
            _ => {
                return Err(TokenError::bad(
                    "parent token lookup failed: no parent found",
                ));
            }
        };
        if parent.record.num_uses != 0 {
            return Err(TokenError::bad(
                "restricted use token cannot generate child tokens",
            ));
        }
        let endpoint = match req.orphan_endpoint {
            true => "auth/token/create-orphan",
            false => "auth/token/create",
        };
        let is_sudo = scope.is_sudo(endpoint);
        let namespace = scope.namespace_id;
        let cross_namespace = namespace != parent.record.namespace_id;
        if cross_namespace {
            if !is_sudo {
                return Err(TokenError::bad(
                    "root or sudo privileges required to directly generate a token in a child namespace",
                ));
            }
            if req
                .policies
                .iter()
                .flatten()
                .any(|p| p.trim().eq_ignore_ascii_case(ROOT_POLICY))
            {
                return Err(TokenError::bad(
                    "root tokens may not be created from a parent namespace",
                ));
            }
        }
        let display_name = match req.display_name.as_str() {
            "" => "token".to_string(),
            name => sanitize_display_name(name),
        };
        let mut warnings = Vec::new();
        if let Some(id) = &req.id {
            if !is_sudo {
                return Err(TokenError::bad(
                    "root or sudo privileges required to specify token id",
                ));
            }
            if namespace != ROOT_NAMESPACE {
                return Err(TokenError::bad(
                    "token IDs can only be manually specified in the root namespace",
                ));
            }
            check_custom_id(id.expose())?;
        }
        let policies = self.resolve_policies(req, &parent.record, is_sudo, cross_namespace)?;
        let root = policies.iter().any(|p| p == ROOT_POLICY);
        if root && !parent.record.is_root() {
            return Err(TokenError::bad(
                "root tokens may not be created without parent token being root",
            ));
        }
        if req.no_parent && !is_sudo {
            return Err(TokenError::bad(
                "root or sudo privileges required to create orphan token",
            ));
        }
        let orphan = req.no_parent || req.orphan_endpoint;
        if req.period > 0 && !is_sudo {
            return Err(TokenError::bad(
                "root or sudo privileges required to create periodic token",
            ));
        }
        let creation_time = now / 1_000_000_000;
        let mut ttl = req.ttl;
        if req.period > 0 || ttl > 0 || !root {
            let input = TtlInput {
                increment: 0,
                ttl,
                period: req.period,
                explicit_max_ttl: req.explicit_max_ttl,
                start: creation_time,
            };
            let (granted, capped) = lease::calculate(input, now)?;
            ttl = granted;
            warnings.extend(capped);
        }
        if ttl == 0 && req.explicit_max_ttl > 0 {
            ttl = req.explicit_max_ttl;
        }
        let mut renewable = req.renewable;
        if ttl == 0 {
            if parent.record.ttl != 0 {
                return Err(TokenError::bad(
                    "expiring root tokens cannot create non-expiring root tokens",
                ));
            }
            renewable = false;
        }
        let token = match &req.id {
            Some(id) => {
                warnings.push(
                    "Supplying a custom ID for the token: it is only as hard to guess as the value \
                     chosen, where a generated one has 143 random bits."
                        .to_string(),
                );
                id.clone()
            }
            None => Token::new(format!(
                "hvs.{}{}",
                random_id(24)?,
                namespace_suffix(namespace)
            )),
        };
        let hash = record::hash(token.expose());
        if req.id.is_some() && self.load(&hash).await?.is_some() {
            return Err(TokenError::bad("cannot create a token with a duplicate ID"));
        }
        let accessor = format!("{}{}", random_id(24)?, namespace_suffix(namespace));
        let expire_time = (ttl > 0).then(|| lease::after(now, ttl));
        let sweep_at = expire_time.map(lease::millis);
        let rec = TokenRecord {
            accessor: accessor.clone(),
            display_name,
            policies,
            path: endpoint.to_string(),
            creation_time,
            parent: match orphan {
                true => String::new(),
                false => parent_hash.clone(),
            },
            meta: req.meta.as_ref().map(|m| m.iter().cloned().collect()),
            num_uses: i64::try_from(req.num_uses).unwrap_or(i64::MAX),
            ttl,
            explicit_max_ttl: req.explicit_max_ttl,
            period: req.period,
            namespace_id: namespace.to_string(),
            lease: Some(LeaseRecord {
                issue_time: now,
                expire_time,
                last_renewal_time: None,
                ttl,
                renewable,
            }),
            sweep_at,
        };
        let (mut conditions, mut ops) = record::new_token(&hash, &rec)?;
        if !orphan {
            // Rewriting the parent makes a concurrent revocation of it,
            // which read it before, conflict and see this child.
            let parent_key = record::token_key(&parent_hash);
            conditions.push(Condition {
                key: parent_key.clone(),
                version: Some(parent.version),
            });
            ops.push(Op::Put {
                key: parent_key,
                value: parent.record.encode()?,
            });
            ops.push(Op::Put {
                key: record::child_key(&parent_hash, &hash),
                value: Vec::new(),
            });
        }
        if let Some(key) = rec.sweep_key(&hash) {
            ops.push(Op::Put {
                key,
                value: Vec::new(),
            });
        }
        self.backend().commit(conditions, ops).await?;
        if expire_time.is_some() {
            self.inner.sweep_wake.notify_one();
        }
        for name in &rec.policies {
            if !self.policy_exists(namespace, name).await? {
                warnings.push(format!("Policy \"{name}\" does not exist"));
            }
        }
        Ok(Issued {
            info: self.info(&rec, Some(token), scope.namespace_path),
            lease_duration: ttl,
            renewable,
            warnings,
        })
    }

    /// The final policies of a new token (step 4 of the module's rules).
    fn resolve_policies(
        &self,
        req: &CreateRequest,
        parent: &TokenRecord,
        is_sudo: bool,
        cross_namespace: bool,
    ) -> Result<Vec<String>, TokenError> {
        let given = req.policies.clone().unwrap_or_default();
        let parent_has_default = parent.policies.iter().any(|p| p == DEFAULT_POLICY);
        let (policies, add_default) = if cross_namespace {
            (given, !req.no_default_policy)
        } else if given.is_empty() {
            (sanitize_policies(&parent.policies, false), false)
        } else if !is_sudo {
            let asked = sanitize_policies(&given, false);
            let held = sanitize_policies(&parent.policies, false);
            if !asked.iter().all(|p| held.contains(p)) {
                return Err(TokenError::bad("child policies must be subset of parent"));
            }
            (given, !req.no_default_policy && parent_has_default)
        } else {
            (given, !req.no_default_policy)
        };
        let mut policies = sanitize_policies(&policies, add_default);
        if req.no_default_policy {
            policies.retain(|p| p != DEFAULT_POLICY);
        }
        if let Some(p) = policies
            .iter()
            .find(|p| NON_ASSIGNABLE.contains(&p.as_str()))
        {
            return Err(TokenError::bad(format!("cannot assign policy \"{p}\"")));
        }
        Ok(policies)
    }

    /// The token `which` names; `None` when there is no such token (or it
    /// expired). A used-up token on its last request is shown, with
    /// `num_uses` -1.
    pub async fn lookup(
        &self,
        scope: &Scope<'_>,
        which: &Target,
    ) -> Result<Option<TokenInfo>, TokenError> {
        Ok(self
            .find(scope, which, true)
            .await?
            .map(|(loaded, token)| self.info(&loaded.record, token, scope.namespace_path)))
    }

    /// Renews the token `which` names: `increment` seconds from now, or its
    /// current TTL when 0, within its limits; a periodic token gets its
    /// period. `None` when there is no such valid token.
    pub async fn renew(
        &self,
        scope: &Scope<'_>,
        which: &Target,
        increment: u64,
    ) -> Result<Option<Issued>, TokenError> {
        retrying("the token kept changing", || {
            self.try_renew(scope, which, increment)
        })
        .await
    }

    async fn try_renew(
        &self,
        scope: &Scope<'_>,
        which: &Target,
        increment: u64,
    ) -> Result<Option<Issued>, TokenError> {
        let Some((loaded, token)) = self.find(scope, which, false).await? else {
            return Ok(None);
        };
        let Loaded {
            hash,
            version,
            record: mut rec,
        } = loaded;
        let now = self.now();
        let mut lease = rec.lease();
        if lease.expire_time.is_none() || !lease.renewable {
            return Err(TokenError::bad("lease is not renewable"));
        }
        let input = TtlInput {
            increment,
            ttl: lease.ttl,
            period: rec.period,
            explicit_max_ttl: rec.explicit_max_ttl,
            start: lease.issue_time / 1_000_000_000,
        };
        let (ttl, warnings) = lease::calculate(input, now)?;
        let expire = lease::after(now, ttl);
        lease.ttl = ttl;
        lease.expire_time = Some(expire);
        lease.last_renewal_time = Some(now);
        let renewable = lease.renewable;
        let mut ops = Vec::new();
        if let Some(old) = rec.sweep_key(&hash) {
            ops.push(Op::Delete { key: old });
        }
        rec.lease = Some(lease);
        rec.sweep_at = Some(lease::millis(expire));
        if let Some(key) = rec.sweep_key(&hash) {
            ops.push(Op::Put {
                key,
                value: Vec::new(),
            });
        }
        let key = record::token_key(&hash);
        ops.push(Op::Put {
            key: key.clone(),
            value: rec.encode()?,
        });
        self.backend()
            .commit(
                vec![Condition {
                    key,
                    version: Some(version),
                }],
                ops,
            )
            .await?;
        self.inner.cache.remove([hash.as_str()]);
        self.inner.sweep_wake.notify_one();
        Ok(Some(Issued {
            info: self.info(&rec, token, scope.namespace_path),
            lease_duration: ttl,
            renewable,
            warnings,
        }))
    }

    /// Revokes the token `which` names and every token under it; false when
    /// there was no such token.
    pub async fn revoke(&self, scope: &Scope<'_>, which: &Target) -> Result<bool, TokenError> {
        let Some((hash, _)) = self.resolve_target(scope, which).await? else {
            return Ok(false);
        };
        match self.load(&hash).await? {
            Some(loaded) if loaded.record.namespace_id == scope.namespace_id => {
                self.revoke_tree(&hash).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Revokes the token `hash` and its whole subtree in one commit.
    pub(super) async fn revoke_tree(&self, hash: &str) -> Result<(), StorageError> {
        retrying("the token tree kept changing during its revocation", || {
            self.try_revoke_tree(hash)
        })
        .await
    }

    async fn try_revoke_tree(&self, hash: &str) -> Result<(), StorageError> {
        let Some(root) = self.load(hash).await? else {
            return Ok(());
        };
        let (nodes, stale) = self.subtree(root).await?;
        let mut conditions = Vec::with_capacity(nodes.len());
        let mut ops: Vec<Op> = stale.into_iter().map(|key| Op::Delete { key }).collect();
        for node in &nodes {
            let key = record::token_key(&node.hash);
            conditions.push(Condition {
                key: key.clone(),
                version: Some(node.version),
            });
            ops.push(Op::Delete { key });
            ops.extend(
                self.index_entries(node)
                    .into_iter()
                    .map(|key| Op::Delete { key }),
            );
        }
        self.backend().commit(conditions, ops).await?;
        self.inner
            .cache
            .remove(nodes.iter().map(|n| n.hash.as_str()));
        Ok(())
    }

    /// Revokes only the token (root or sudo on `auth/token/revoke-orphan`);
    /// its children become orphans. False when there is no such valid token.
    pub async fn revoke_orphan(
        &self,
        scope: &Scope<'_>,
        token: &Token,
    ) -> Result<bool, TokenError> {
        if !scope.is_sudo("auth/token/revoke-orphan") {
            return Err(TokenError::bad(
                "root or sudo privileges required to revoke and orphan",
            ));
        }
        retrying("the token kept changing", || {
            self.try_revoke_orphan(scope, token)
        })
        .await
    }

    async fn try_revoke_orphan(
        &self,
        scope: &Scope<'_>,
        token: &Token,
    ) -> Result<bool, TokenError> {
        let Some((loaded, _)) = self
            .find(scope, &Target::Token(token.clone()), false)
            .await?
        else {
            return Ok(false);
        };
        let prefix = record::children_prefix(&loaded.hash);
        let key = record::token_key(&loaded.hash);
        let mut conditions = vec![Condition {
            key: key.clone(),
            version: Some(loaded.version),
        }];
        let mut ops = vec![Op::Delete { key }];
        ops.extend(
            self.index_entries(&loaded)
                .into_iter()
                .map(|key| Op::Delete { key }),
        );
        let mut touched = vec![loaded.hash.clone()];
        for child in self.list_all(&prefix).await? {
            ops.push(Op::Delete {
                key: format!("{prefix}{child}"),
            });
            if let Some(mut c) = self.load(&child).await? {
                c.record.parent.clear();
                let key = record::token_key(&child);
                conditions.push(Condition {
                    key: key.clone(),
                    version: Some(c.version),
                });
                ops.push(Op::Put {
                    key,
                    value: c.record.encode()?,
                });
                touched.push(child);
            }
        }
        self.backend().commit(conditions, ops).await?;
        self.inner.cache.remove(touched.iter().map(String::as_str));
        Ok(true)
    }

    /// The accessors of the namespace's tokens, sorted. Accessors of tokens
    /// outside the root namespace end in `.<namespace id>`.
    pub async fn list_accessors(&self, scope: &Scope<'_>) -> Result<Vec<String>, TokenError> {
        scope.caller()?;
        let suffix = namespace_suffix(scope.namespace_id);
        let mut keys = self.list_all(ACCESSORS).await?;
        keys.retain(|a| match suffix.as_str() {
            "" => !a.contains('.'),
            s => a.ends_with(s),
        });
        Ok(keys)
    }
}

/// What a token or accessor of a namespace ends with: nothing in the root
/// namespace, `.<id>` elsewhere.
fn namespace_suffix(namespace: &str) -> String {
    match namespace {
        ROOT_NAMESPACE => String::new(),
        other => format!(".{other}"),
    }
}
