//! "Sync this association now": compute the external objects an association
//! should produce from the current KV data, and converge the destination to
//! them (push what should exist, delete what should not). `set`, `remove` and
//! the sync worker (outbox entries, purges) use it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::connector::{DestinationRef, ExternalSecret, SyncError};
use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::storage::Tx;
use crate::sync::destinations::{Destination, Granularity};
use crate::sync::names::{Template, TemplateContext};
use crate::sync::status::SyncStatus;
use crate::time::{self, Nanos};

use super::record::{self, Association, Row};

/// The current version of a KV secret and its data (`kv::read_current`).
pub type KvSecret<'a> = (u64, &'a Map<String, Value>);

/// One external object the association should produce.
struct Desired {
    /// The row key: `""` for `secret-path`, the sub-key for `secret-key`.
    key: String,
    object: ExternalSecret,
}

/// What the provider calls of one sync or unsync attempt ended in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The worst status a failed call left (`None`: every call succeeded, or
    /// none was needed).
    pub failure: Option<SyncStatus>,
    /// Some call failed in a way worth retrying (`EXTERNAL_SERVICE_ERROR`,
    /// `INTERNAL_VAULT_ERROR`).
    pub retryable: bool,
    /// The longest delay a provider asked for before the next try.
    pub retry_after_ms: Option<u64>,
    /// Some provider write (push or delete) succeeded.
    pub wrote: bool,
}

impl SyncOutcome {
    fn record(&mut self, e: &SyncError) {
        let status = SyncStatus::of_error(e);
        if self
            .failure
            .is_none_or(|f| status.severity() > f.severity())
        {
            self.failure = Some(status);
        }
        match e {
            SyncError::ClientSide(_) => {}
            SyncError::ExternalService { retry_after_ms, .. } => {
                self.retryable = true;
                if let Some(ms) = retry_after_ms {
                    self.retry_after_ms = Some(self.retry_after_ms.map_or(*ms, |m| m.max(*ms)));
                }
            }
            SyncError::Internal(_) | SyncError::Deferred(_) => self.retryable = true,
        }
    }

    /// An attempt that ended in a configuration problem found before any
    /// provider call (a name that cannot be rendered, a collision).
    pub fn client_side() -> Self {
        SyncOutcome {
            failure: Some(SyncStatus::ClientSideError),
            retryable: false,
            retry_after_ms: None,
            wrote: false,
        }
    }
}

/// Syncs `record` now against `secret` (`None`: the secret does not exist or its
/// current version is deleted or destroyed) with the record's granularity and
/// template, then stores the record and its index entry in `tx`.
///
/// Errors (400) before any provider call when a name cannot be rendered or
/// normalised, or collides with a name another association of `dest`
/// produces. Provider failures are not errors: they become the rows' statuses
/// and the returned outcome.
pub fn sync_association(
    tx: &mut Tx,
    env: &Env,
    dest: &Destination,
    record: &mut Association,
    secret: Option<KvSecret>,
) -> ApiResult<SyncOutcome> {
    let desired = plan(tx, dest, record, secret)?;
    let version = secret.map(|(v, _)| v).unwrap_or(0);
    let target = connector_target(tx, dest)?;
    let outcome = converge(env, &target, record, desired, version, true);
    if outcome.wrote {
        record.pushed_at = time::now();
    }
    record.save(tx)?;
    Ok(outcome)
}

/// The checks [`sync_association`] makes before any provider call, alone
/// (for an association queued while sync is disabled).
pub fn check_association(
    tx: &mut Tx,
    dest: &Destination,
    record: &Association,
    secret: Option<KvSecret>,
) -> ApiResult<()> {
    plan(tx, dest, record, secret)?;
    connector_target(tx, dest)?;
    Ok(())
}

/// The objects `record` should produce, checked for names that cannot be
/// rendered and for collisions.
fn plan(
    tx: &mut Tx,
    dest: &Destination,
    record: &Association,
    secret: Option<KvSecret>,
) -> ApiResult<Vec<Desired>> {
    let template = parse_template(record)?;
    let desired = match secret {
        Some((_, data)) => desired_objects(dest, record, &template, data)?,
        None => Vec::new(),
    };
    check_collisions(tx, record, &desired)?;
    Ok(desired)
}

/// Deletes every external object of `record`. When all are gone the record
/// and its index entry are dropped (`true`); otherwise the record is kept
/// with the failed rows in their error status (`false`) for a retry.
pub fn unsync_association(
    tx: &mut Tx,
    env: &Env,
    dest: &Destination,
    record: &mut Association,
) -> ApiResult<(bool, SyncOutcome)> {
    let target = connector_target(tx, dest)?;
    let outcome = converge(env, &target, record, Vec::new(), 0, false);
    if record.rows.is_empty() && record.stale.is_empty() {
        record.drop_record(tx)?;
        Ok((true, outcome))
    } else {
        record.save(tx)?;
        Ok((false, outcome))
    }
}

fn parse_template(record: &Association) -> ApiResult<Template> {
    Template::parse(&record.template).map_err(|e| {
        ApiError::bad_request(format!(
            "secret name template {:?} of destination {}/{} is invalid: {e}",
            record.template, record.kind, record.destination
        ))
    })
}

fn last_segment(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// The values a name template sees for this association (root namespace only).
pub fn template_context(record: &Association, secret_key: Option<&str>) -> TemplateContext {
    TemplateContext {
        destination_type: record.kind.clone(),
        destination_name: record.destination.clone(),
        namespace_path: String::new(),
        namespace_base_name: String::new(),
        namespace_id: "root".to_string(),
        mount_path: format!("{}/", record.mount),
        mount_base_name: last_segment(&record.mount).to_string(),
        mount_accessor: record.accessor.clone(),
        secret_path: record.secret_name.clone(),
        secret_base_name: last_segment(&record.secret_name).to_string(),
        secret_key: secret_key.map(str::to_string),
    }
}

/// The rendered and normalised external name of one object.
fn external_name(
    dest: &Destination,
    record: &Association,
    template: &Template,
    secret_key: Option<&str>,
) -> ApiResult<String> {
    let what = match secret_key {
        Some(k) => format!("key {k:?} of secret {}", record.secret_name),
        None => format!("secret {}", record.secret_name),
    };
    let rendered = template
        .render(&template_context(record, secret_key))
        .map_err(|e| {
            ApiError::bad_request(format!(
                "cannot render the external name of {what} with template {:?}: {e}",
                record.template
            ))
        })?;
    dest.normalize_name(&rendered).map_err(|e| match e {
        ApiError::BadRequest(m) => ApiError::bad_request(format!(
            "the external name {rendered:?} of {what} is not valid at destination {}/{}: {m}",
            record.kind, record.destination
        )),
        other => other,
    })
}

/// Serialises a JSON value with object keys sorted at every level, whatever
/// serde_json's map ordering is.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn desired_objects(
    dest: &Destination,
    record: &Association,
    template: &Template,
    data: &Map<String, Value>,
) -> ApiResult<Vec<Desired>> {
    let tags = dest.tags();
    let desired = match record.granularity {
        Granularity::SecretPath => vec![Desired {
            key: String::new(),
            object: ExternalSecret {
                name: external_name(dest, record, template, None)?,
                value: canonical(&Value::Object(data.clone())).to_string(),
                tags,
            },
        }],
        Granularity::SecretKey => {
            let mut objects = Vec::with_capacity(data.len());
            for (key, value) in data {
                objects.push(Desired {
                    key: key.clone(),
                    object: ExternalSecret {
                        name: external_name(dest, record, template, Some(key))?,
                        value: match value {
                            Value::String(s) => s.clone(),
                            other => canonical(other).to_string(),
                        },
                        tags: tags.clone(),
                    },
                });
            }
            objects
        }
    };
    // Two keys of one secret must not land on one object.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for d in &desired {
        if let Some(other) = seen.insert(&d.object.name, &d.key) {
            return Err(ApiError::bad_request(format!(
                "keys {other:?} and {:?} of secret {} would both be written to the external name {:?} \
                 at destination {}/{}; change the destination's secret_name_template",
                d.key, record.secret_name, d.object.name, record.kind, record.destination
            )));
        }
    }
    Ok(desired)
}

/// Refuses a desired name that another association of the destination already
/// produces (or still has to delete): two secrets must not overwrite each other.
fn check_collisions(tx: &mut Tx, record: &Association, desired: &[Desired]) -> ApiResult<()> {
    // Names the record already holds were checked when it first claimed them
    // (and no other association could claim them since): only new names
    // need a look at who holds them.
    let held = record.claimed_names();
    for d in desired
        .iter()
        .filter(|d| !held.contains(d.object.name.as_str()))
    {
        let Some(other) = record::claim_of(tx, &record.kind, &record.destination, &d.object.name)?
        else {
            continue;
        };
        if other.accessor == record.accessor && other.secret_name == record.secret_name {
            continue;
        }
        return Err(ApiError::bad_request(format!(
            "the external name {:?} is already written by the association of secret {} in mount {} \
             with destination {}/{}; remove that association or change the destination's \
             secret_name_template",
            d.object.name, other.secret_name, other.mount, record.kind, record.destination
        )));
    }
    Ok(())
}

/// Pushes every desired object and deletes every object of the record that is
/// no longer desired, then rewrites the record's rows from the outcomes.
/// `placeholder`: leave an `UNSYNCED` row when nothing else remains (an
/// association without objects is still shown); it remembers `version`, the
/// KV version it stands for (0: none).
fn converge(
    env: &Env,
    target: &DestinationRef,
    record: &mut Association,
    desired: Vec<Desired>,
    version: u64,
    placeholder: bool,
) -> SyncOutcome {
    let now: Nanos = time::now();
    let mut outcome = SyncOutcome::default();
    let desired_names: BTreeSet<String> = desired.iter().map(|d| d.object.name.clone()).collect();
    let old_rows = std::mem::take(&mut record.rows);
    let mut to_delete: BTreeMap<String, String> = std::mem::take(&mut record.stale);
    for (key, row) in &old_rows {
        if row.may_exist() {
            to_delete.insert(row.external_name.clone(), key.clone());
        }
    }
    to_delete.retain(|name, _| !desired_names.contains(name));

    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for d in desired {
        let previous = old_rows
            .get(&d.key)
            .filter(|r| r.external_name == d.object.name);
        let digest = digest(&target.config, &d.object);
        // The digest is kept only while the provider holds what was last
        // pushed; a queued row (PENDING) keeps it, an error row loses it or
        // is pushed again anyway.
        let unchanged = previous.is_some_and(|r| {
            !r.sync_status.is_error() && r.digest.as_deref() == Some(digest.as_str())
        });
        let pushed = if unchanged {
            Ok(())
        } else {
            // An object this association never wrote (or knows is gone) is
            // most likely new at the provider: create first.
            let pushed = if previous.is_some_and(Row::may_exist) {
                env.connector.push(target, &d.object)
            } else {
                env.connector.push_new(target, &d.object)
            };
            outcome.wrote |= pushed.is_ok();
            pushed
        };
        let row = match pushed {
            Ok(()) => Row {
                external_name: d.object.name,
                sync_status: SyncStatus::Synced,
                updated_at: now,
                error: None,
                version,
                digest: Some(digest),
            },
            Err(e) => {
                outcome.record(&e);
                Row {
                    external_name: d.object.name,
                    sync_status: SyncStatus::of_error(&e),
                    updated_at: now,
                    error: Some(describe(&e)),
                    version: previous.map(|r| r.version).unwrap_or(0),
                    digest: None,
                }
            }
        };
        rows.insert(d.key, row);
    }

    let mut stale = BTreeMap::new();
    for (name, key) in to_delete {
        let Err(e) = env.connector.delete(target, &name) else {
            outcome.wrote = true;
            continue;
        };
        outcome.record(&e);
        let status = SyncStatus::of_error(&e);
        match rows.get_mut(&key) {
            // The key lives on under another name: remember the old object and
            // show the failure on the row unless it already shows one.
            Some(row) => {
                if !row.sync_status.is_error() {
                    row.sync_status = status;
                    row.error = Some(format!(
                        "the previous external object {name:?} could not be deleted: {}",
                        describe(&e)
                    ));
                }
                stale.insert(name, key);
            }
            None => {
                let version = old_rows
                    .get(&key)
                    .filter(|r| r.external_name == name)
                    .map(|r| r.version)
                    .unwrap_or(0);
                rows.insert(
                    key,
                    Row {
                        external_name: name,
                        sync_status: status,
                        updated_at: now,
                        error: Some(describe(&e)),
                        version,
                        digest: None,
                    },
                );
            }
        }
    }
    if placeholder && rows.is_empty() {
        rows.insert(
            String::new(),
            Row {
                version,
                ..Row::unsynced(now)
            },
        );
    }
    record.rows = rows;
    record.stale = stale;
    outcome
}

/// What was pushed, as a digest: the same digest means the provider already
/// holds exactly this object, so pushing it again would change nothing.
fn digest(config: &str, object: &ExternalSecret) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    for part in [config, object.name.as_str(), object.value.as_str()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for (k, v) in &object.tags {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A provider failure as shown in a row's `error`, with the retry hint.
fn describe(e: &SyncError) -> String {
    match e {
        SyncError::ExternalService {
            message,
            retry_after_ms: Some(ms),
        } => format!(
            "{message} (the provider asked to retry after {}s)",
            ms.div_ceil(1000)
        ),
        other => other.message().to_string(),
    }
}

/// What the connector gets for `dest`: its configuration plus, for a `gh`
/// destination that authenticates as a GitHub App, the app's ID and key
/// (registered at `sys/sync/github-apps/:name`; the host has no other way to
/// reach them).
pub fn connector_target(tx: &mut Tx, dest: &Destination) -> ApiResult<DestinationRef> {
    let mut target = dest.connector_ref();
    let app = dest
        .connection_details
        .get("app_name")
        .and_then(Value::as_str)
        .filter(|n| dest.kind == "gh" && !n.is_empty());
    if let Some(app) = app {
        let Some(app_config) = crate::sync::github_apps::app_config(tx, app)? else {
            return Err(ApiError::bad_request(format!(
                "GitHub App {app:?} of destination gh/{} is not registered at sys/sync/github-apps/{app}",
                dest.name
            )));
        };
        let mut config: Map<String, Value> = serde_json::from_str(&target.config)
            .map_err(|e| ApiError::Internal(format!("destination config is not JSON: {e}")))?;
        config.insert("app_config".to_string(), app_config);
        target.config = Value::Object(config).to_string();
    }
    Ok(target)
}
