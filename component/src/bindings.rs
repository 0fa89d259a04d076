//! The wit-bindgen adapter: converts WIT records to the engine's types and
//! implements the engine's import traits with the host's imports. Only built
//! for wasm32.

use crate::api::Operation;
use crate::authz::Authz;
use crate::connector::{Connector, DestinationRef, ExternalSecret, SyncError};
use crate::effects::SyncDue;
use crate::env::Env;
use crate::keyring::{KeyStatus, Keyring, KeyringError};
use crate::namespaces::{NamespaceError, NamespaceInfo, Namespaces};
use crate::policies::{Policies, PolicyError, PolicyText, Subject};
use crate::storage::{Condition, Entry, Op, Page, Storage, StorageError};
use crate::tokens::{CreateRequest, Issued, Lease, Target, TokenError, TokenInfo, Tokens};

wit_bindgen::generate!({
    world: "engine",
    path: "../wit",
});

use exports::kvsync::engine::api::Guest as ApiGuest;
use exports::kvsync::engine::sync as sync_export;
use kvsync::engine::authz as host_authz;
use kvsync::engine::connector as host_connector;
use kvsync::engine::keyring as host_keyring;
use kvsync::engine::namespaces as host_namespaces;
use kvsync::engine::policies as host_policies;
use kvsync::engine::storage as host;
use kvsync::engine::tokens as host_tokens;
use kvsync::engine::types;

struct Component;

/// The engine's imports as the host provides them.
fn host_env() -> Env<'static> {
    Env {
        storage: &HostStorage,
        connector: &HostConnector,
        authz: &HostAuthz,
        policies: &HostPolicies,
        tokens: &HostTokens,
        keyring: &HostKeyring,
        namespaces: &HostNamespaces,
    }
}

impl sync_export::Guest for Component {
    fn run(
        shard: u32,
        shards: u32,
        limit: u32,
        settings: sync_export::Settings,
    ) -> sync_export::RunReport {
        let settings = crate::sync::worker::Settings {
            backoff_base_ms: settings.backoff_base_ms,
            backoff_cap_ms: settings.backoff_cap_ms,
            coalesce_window_ms: settings.coalesce_window_ms,
        };
        let report = crate::sync::worker::run(&host_env(), shard, shards, limit, &settings);
        sync_export::RunReport {
            processed: report.processed,
            failed: report.failed,
            next_due_ms: report.next_due_ms,
        }
    }

    fn reconcile() -> u32 {
        crate::sync::reconcile::reconcile(&host_env())
    }
}

impl ApiGuest for Component {
    fn handle(req: types::Request) -> types::Outcome {
        let caller = req.caller.map(|c| crate::Caller {
            token: c.token,
            accessor: c.accessor,
            display_name: c.display_name,
            policies: c.policies,
            path: c.path,
            creation_time: c.creation_time,
        });
        let req = crate::Request {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
            caller,
        };
        let out = crate::handle(&host_env(), req);
        types::Outcome {
            response: types::Response {
                status: out.response.status,
                headers: out.response.headers,
                body: out.response.body,
            },
            effects: types::Effects {
                sync_due: match out.effects.sync_due {
                    SyncDue::None => types::SyncDue::None,
                    SyncDue::Destinations(d) => types::SyncDue::Destinations(d),
                    SyncDue::All => types::SyncDue::All,
                },
            },
        }
    }
}

export!(Component);

struct HostStorage;

fn from_host(e: host::StorageError) -> StorageError {
    match e {
        host::StorageError::Conflict => StorageError::Conflict,
        host::StorageError::Invalid(m) => StorageError::Invalid(m),
        host::StorageError::Unavailable(m) => StorageError::Unavailable(m),
    }
}

impl Storage for HostStorage {
    fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        host::get(key)
            .map(|e| {
                e.map(|e| Entry {
                    value: e.value,
                    version: e.version,
                })
            })
            .map_err(from_host)
    }

    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        host::list(prefix, after, delimiter, limit)
            .map(|p| Page {
                keys: p.keys,
                next: p.next,
            })
            .map_err(from_host)
    }

    fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        let conditions: Vec<host::Condition> = conditions
            .into_iter()
            .map(|c| host::Condition {
                key: c.key,
                version: c.version,
            })
            .collect();
        let ops: Vec<host::Op> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => host::Op::Put(host::Put { key, value }),
                Op::Delete { key } => host::Op::Delete(key),
            })
            .collect();
        host::commit(&conditions, &ops).map_err(from_host)
    }
}

struct HostConnector;

fn to_host_dest(d: &DestinationRef) -> host_connector::Destination {
    host_connector::Destination {
        kind: d.kind.clone(),
        name: d.name.clone(),
        config: d.config.clone(),
    }
}

fn to_host_secret(s: &ExternalSecret) -> host_connector::ExternalSecret {
    host_connector::ExternalSecret {
        name: s.name.clone(),
        value: s.value.clone(),
        tags: s.tags.clone(),
    }
}

fn from_host_sync_error(e: host_connector::SyncError) -> SyncError {
    match e {
        host_connector::SyncError::ClientSide(m) => SyncError::ClientSide(m),
        host_connector::SyncError::ExternalService(f) => SyncError::ExternalService {
            message: f.message,
            retry_after_ms: f.retry_after_ms,
        },
        host_connector::SyncError::Internal(m) => SyncError::Internal(m),
        host_connector::SyncError::Deferred(m) => SyncError::Deferred(m),
    }
}

impl Connector for HostConnector {
    fn push(&self, dest: &DestinationRef, secret: &ExternalSecret) -> Result<(), SyncError> {
        host_connector::push(&to_host_dest(dest), &to_host_secret(secret))
            .map_err(from_host_sync_error)
    }

    fn push_new(&self, dest: &DestinationRef, secret: &ExternalSecret) -> Result<(), SyncError> {
        host_connector::push_new(&to_host_dest(dest), &to_host_secret(secret))
            .map_err(from_host_sync_error)
    }

    fn delete(&self, dest: &DestinationRef, name: &str) -> Result<(), SyncError> {
        host_connector::delete(&to_host_dest(dest), name).map_err(from_host_sync_error)
    }

    fn inspect(&self, dest: &DestinationRef) -> Result<Vec<ExternalSecret>, SyncError> {
        host_connector::inspect(&to_host_dest(dest))
            .map(|objects| {
                objects
                    .into_iter()
                    .map(|o| ExternalSecret {
                        name: o.name,
                        value: o.value,
                        tags: o.tags,
                    })
                    .collect()
            })
            .map_err(from_host_sync_error)
    }
}

struct HostAuthz;

impl Authz for HostAuthz {
    fn authorize(&self, operation: Operation, path: &str, sudo: bool) -> bool {
        let operation = match operation {
            // HEAD reads nothing more than GET: it needs what GET needs.
            Operation::Read | Operation::Header => host_authz::Operation::Read,
            Operation::List => host_authz::Operation::List,
            Operation::Create => host_authz::Operation::Create,
            Operation::Update => host_authz::Operation::Update,
            Operation::Patch => host_authz::Operation::Patch,
            Operation::Delete => host_authz::Operation::Delete,
        };
        host_authz::authorize(operation, path, sudo)
    }

    fn allowed(&self, capability: &str, path: &str) -> bool {
        host_authz::allowed(capability, path)
    }

    fn can_reach(&self, prefix: &str) -> bool {
        host_authz::can_reach(prefix)
    }
}

struct HostPolicies;

fn from_host_policy_error(e: host_policies::PolicyError) -> PolicyError {
    match e {
        host_policies::PolicyError::BadRequest(m) => PolicyError::BadRequest(m),
        host_policies::PolicyError::Forbidden(m) => PolicyError::Forbidden(m),
        host_policies::PolicyError::Unavailable(m) => PolicyError::Unavailable(m),
    }
}

impl Policies for HostPolicies {
    fn read(&self, name: &str) -> Result<Option<PolicyText>, PolicyError> {
        host_policies::read(name)
            .map(|p| {
                p.map(|p| PolicyText {
                    name: p.name,
                    text: p.text,
                })
            })
            .map_err(from_host_policy_error)
    }

    fn write(&self, name: &str, text: &str) -> Result<(), PolicyError> {
        host_policies::write(name, text).map_err(from_host_policy_error)
    }

    fn delete(&self, name: &str) -> Result<(), PolicyError> {
        host_policies::delete(name).map_err(from_host_policy_error)
    }

    fn list(&self) -> Result<Vec<String>, PolicyError> {
        host_policies::list().map_err(from_host_policy_error)
    }

    fn capabilities(
        &self,
        subject: &Subject,
        paths: &[String],
    ) -> Result<Vec<Vec<String>>, PolicyError> {
        let subject = match subject {
            Subject::Caller => host_policies::Subject::Caller,
            Subject::Token(t) => host_policies::Subject::Token(t.clone()),
            Subject::Accessor(a) => host_policies::Subject::Accessor(a.clone()),
        };
        host_policies::capabilities(&subject, paths).map_err(from_host_policy_error)
    }
}

struct HostKeyring;

fn from_host_keyring(
    out: Result<host_keyring::KeyStatus, host_keyring::KeyringError>,
) -> Result<KeyStatus, KeyringError> {
    match out {
        Ok(s) => Ok(KeyStatus {
            term: s.term,
            install_time: s.install_time,
            encryptions: s.encryptions,
        }),
        Err(host_keyring::KeyringError::BadRequest(m)) => Err(KeyringError::BadRequest(m)),
        Err(host_keyring::KeyringError::Forbidden(m)) => Err(KeyringError::Forbidden(m)),
        Err(host_keyring::KeyringError::Unavailable(m)) => Err(KeyringError::Unavailable(m)),
    }
}

impl Keyring for HostKeyring {
    fn status(&self) -> Result<KeyStatus, KeyringError> {
        from_host_keyring(host_keyring::status())
    }

    fn rotate(&self) -> Result<KeyStatus, KeyringError> {
        from_host_keyring(host_keyring::rotate())
    }
}

struct HostNamespaces;

fn from_host_namespace_error(e: host_namespaces::NamespaceError) -> NamespaceError {
    match e {
        host_namespaces::NamespaceError::BadRequest(m) => NamespaceError::BadRequest(m),
        host_namespaces::NamespaceError::Forbidden(m) => NamespaceError::Forbidden(m),
        host_namespaces::NamespaceError::Unavailable(m) => NamespaceError::Unavailable(m),
    }
}

fn from_host_namespace(n: host_namespaces::Namespace) -> NamespaceInfo {
    NamespaceInfo {
        id: n.id,
        path: n.path,
        uuid: n.uuid,
        custom_metadata: n.custom_metadata.into_iter().collect(),
    }
}

impl Namespaces for HostNamespaces {
    fn list(&self) -> Result<Vec<NamespaceInfo>, NamespaceError> {
        host_namespaces::list()
            .map(|all| all.into_iter().map(from_host_namespace).collect())
            .map_err(from_host_namespace_error)
    }

    fn read(&self, path: &str) -> Result<Option<NamespaceInfo>, NamespaceError> {
        host_namespaces::read(path)
            .map(|n| n.map(from_host_namespace))
            .map_err(from_host_namespace_error)
    }

    fn create(
        &self,
        path: &str,
        custom_metadata: Option<std::collections::BTreeMap<String, String>>,
    ) -> Result<NamespaceInfo, NamespaceError> {
        let metadata = custom_metadata.map(|m| m.into_iter().collect::<Vec<_>>());
        host_namespaces::create(path, metadata.as_deref())
            .map(from_host_namespace)
            .map_err(from_host_namespace_error)
    }

    fn patch(
        &self,
        path: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<Option<NamespaceInfo>, NamespaceError> {
        host_namespaces::patch(path, &changes)
            .map(|n| n.map(from_host_namespace))
            .map_err(from_host_namespace_error)
    }

    fn delete(&self, path: &str) -> Result<bool, NamespaceError> {
        host_namespaces::delete(path).map_err(from_host_namespace_error)
    }
}

struct HostTokens;

fn from_host_token_error(e: host_tokens::TokenError) -> TokenError {
    match e {
        host_tokens::TokenError::BadRequest(m) => TokenError::BadRequest(m),
        host_tokens::TokenError::Forbidden(m) => TokenError::Forbidden(m),
        host_tokens::TokenError::Unavailable(m) => TokenError::Unavailable(m),
    }
}

fn to_host_target(t: &Target) -> host_tokens::Target {
    match t {
        Target::Caller => host_tokens::Target::Caller,
        Target::Token(id) => host_tokens::Target::Token(id.clone()),
        Target::Accessor(a) => host_tokens::Target::Accessor(a.clone()),
    }
}

fn from_host_info(i: host_tokens::TokenInfo) -> TokenInfo {
    TokenInfo {
        id: i.id,
        accessor: i.accessor,
        policies: i.policies,
        path: i.path,
        meta: i.meta,
        display_name: i.display_name,
        num_uses: i.num_uses,
        orphan: i.orphan,
        creation_time: i.creation_time,
        creation_ttl: i.creation_ttl,
        explicit_max_ttl: i.explicit_max_ttl,
        period: i.period,
        lease: Lease {
            issue_time: i.lease.issue_time,
            expire_time: i.lease.expire_time,
            last_renewal_time: i.lease.last_renewal_time,
            renewable: i.lease.renewable,
            ttl: i.lease.ttl,
        },
        namespace_path: i.namespace_path,
    }
}

fn from_host_issued(i: host_tokens::Issued) -> Issued {
    Issued {
        info: from_host_info(i.info),
        lease_duration: i.lease_duration,
        renewable: i.renewable,
        warnings: i.warnings,
    }
}

impl Tokens for HostTokens {
    fn create(&self, req: &CreateRequest) -> Result<Issued, TokenError> {
        let req = host_tokens::CreateRequest {
            orphan_endpoint: req.orphan_endpoint,
            policies: req.policies.clone(),
            meta: req.meta.clone(),
            no_parent: req.no_parent,
            no_default_policy: req.no_default_policy,
            renewable: req.renewable,
            ttl: req.ttl,
            explicit_max_ttl: req.explicit_max_ttl,
            period: req.period,
            display_name: req.display_name.clone(),
            num_uses: req.num_uses,
            id: req.id.clone(),
        };
        host_tokens::create(&req)
            .map(from_host_issued)
            .map_err(from_host_token_error)
    }

    fn lookup(&self, which: &Target) -> Result<Option<TokenInfo>, TokenError> {
        host_tokens::lookup(&to_host_target(which))
            .map(|i| i.map(from_host_info))
            .map_err(from_host_token_error)
    }

    fn renew(&self, which: &Target, increment: u64) -> Result<Option<Issued>, TokenError> {
        host_tokens::renew(&to_host_target(which), increment)
            .map(|i| i.map(from_host_issued))
            .map_err(from_host_token_error)
    }

    fn revoke(&self, which: &Target) -> Result<bool, TokenError> {
        host_tokens::revoke(&to_host_target(which)).map_err(from_host_token_error)
    }

    fn revoke_orphan(&self, token: &str) -> Result<bool, TokenError> {
        host_tokens::revoke_orphan(token).map_err(from_host_token_error)
    }

    fn list_accessors(&self) -> Result<Vec<String>, TokenError> {
        host_tokens::list_accessors().map_err(from_host_token_error)
    }

    fn tidy(&self) -> Result<(), TokenError> {
        host_tokens::tidy().map_err(from_host_token_error)
    }
}
