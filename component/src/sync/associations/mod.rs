//! Associations between destinations and KV-v2 secrets: set,
//! remove and read per destination, the list of associated secrets and the
//! destinations of one secret. Records live in [`record`]; the sync of one
//! association ([`sync_association`]) in [`engine`].

pub mod engine;
pub mod record;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use serde_json::{Map, json};

use crate::api::{JsonText, Reply};
use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, Fields};
use crate::kv;
use crate::storage::{Storage, Tx, each_key, in_batches};
use crate::sync::config::SyncConfig;
use crate::sync::destinations::Destination;
use crate::sync::jobs::{self, Sweep};
use crate::sync::keys;
use crate::sync::outbox::{self, EntryId, OutboxOp, Queued};
use crate::sync::status::SyncStatus;
use crate::sync::worker::inline::{self, InlineRun};
use crate::sys::mounts::{MountEntry, MountTable, normalize_path};
use crate::time::{self, Nanos};

pub use engine::{
    KvSecret, SyncOutcome, check_association, sync_association, template_context,
    unsync_association,
};
pub use record::{Association, Row};

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::string("mount")
        .required()
        .describe("Path of the KV-v2 mount that holds the secret."),
    FieldSpec::string("secret_name")
        .required()
        .describe("Path of the secret inside the mount."),
];

/// The body of `set` and `remove`, validated.
struct Target {
    /// The mount path without its trailing slash.
    mount: String,
    secret_name: String,
}

fn parse_target(fields: &Fields) -> ApiResult<Target> {
    let mount = fields.string("mount").unwrap_or_default().trim_matches('/');
    if mount.is_empty() {
        return Err(ApiError::bad_request(
            "\"mount\" is required: the path of the KV-v2 mount that holds the secret",
        ));
    }
    let secret_name = fields.string("secret_name").unwrap_or_default();
    check_secret_name(secret_name)?;
    Ok(Target {
        mount: mount.to_string(),
        secret_name: secret_name.to_string(),
    })
}

fn check_secret_name(secret_name: &str) -> ApiResult<()> {
    if secret_name.is_empty() {
        return Err(ApiError::bad_request(
            "\"secret_name\" is required: the path of the secret inside the mount",
        ));
    }
    // No request path can name such a secret (control characters in a path
    // are a 400), so no association may claim one.
    if secret_name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "\"secret_name\" contains control characters: a secret's path cannot hold them",
        ));
    }
    if secret_name.ends_with('/') {
        return Err(ApiError::bad_request(
            "Secret not found. Please provide full path to existing secret",
        ));
    }
    Ok(())
}

/// The KV-v2 mount at `mount` (with or without slashes), or a 400.
fn kv_mount(table: &MountTable, mount: &str) -> ApiResult<MountEntry> {
    let path = normalize_path(mount);
    if crate::sys::mounts::is_reserved(&path) {
        return Err(ApiError::bad_request(format!(
            "mount \"{path}\" is not a KV version 2 mount: only KV-v2 secrets can be synced"
        )));
    }
    let entry = table.get(&path).ok_or_else(|| {
        ApiError::bad_request(format!(
            "mount \"{path}\" does not exist: give the path of an enabled KV-v2 mount"
        ))
    })?;
    if !entry.is_kv_v2() {
        return Err(ApiError::bad_request(format!(
            "mount \"{path}\" is not a KV version 2 mount: only KV-v2 secrets can be synced"
        )));
    }
    Ok(entry.clone())
}

/// The destination of `set` and `remove`: a missing one is a 400.
fn existing_destination(tx: &mut Tx, kind: &str, name: &str) -> ApiResult<Destination> {
    Destination::load(tx, kind, name)?.ok_or_else(|| {
        ApiError::bad_request(format!(
            "destination {kind}/{name} does not exist: create it with POST sys/sync/destinations/{kind}/{name}"
        ))
    })
}

/// `GET sys/sync/destinations/:type/:name/associations`.
pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let (kind, name) = (call.param("type"), call.param("name"));
    if Destination::load(tx, kind, name)?.is_none() {
        return Err(ApiError::NotFound);
    }
    Ok(Reply::rendered(body(tx, kind, name, &[])?))
}

/// The body of `read`, `set` and `remove`, as JSON text: every
/// association of the destination (Vault's shape), read from its index a
/// page at a time. `touched`: associations this transaction wrote or
/// dropped (lists see committed keys only); they are read as the
/// transaction sees them, the others as committed, without being recorded
/// (no copy of each kept, no condition on each in the commit).
fn body(tx: &Tx, kind: &str, name: &str, touched: &[(String, String)]) -> ApiResult<JsonText> {
    let prefix = keys::associations_of(kind, name);
    let mut touched: BTreeSet<String> = touched
        .iter()
        .map(|(accessor, secret_name)| format!("{accessor}/{}", keys::escape(secret_name)))
        .collect();
    let mut out = JsonText::new("{\"associated_secrets\":{");
    let mut first = true;
    let mut render = |rel: &str| -> ApiResult<()> {
        if let Some(record) = tx.peek_json::<Association>(&format!("{prefix}{rel}"))? {
            render_rows(&mut out, &mut first, &record)?;
        }
        Ok(())
    };
    each_key(tx.storage(), &prefix, None, |rel| {
        // This transaction's new associations, in key order.
        while let Some(new) = touched.pop_first() {
            if new.as_str() >= rel {
                touched.insert(new);
                break;
            }
            render(&new)?;
        }
        touched.remove(rel);
        render(rel)?;
        Ok(ControlFlow::Continue(()))
    })?;
    for new in std::mem::take(&mut touched) {
        render(&new)?;
    }
    out.raw("},\"store_name\":").value(name)?;
    out.raw(",\"store_type\":").value(kind)?.raw("}");
    Ok(out)
}

/// The association of `target` (mount path and secret name) at a
/// destination, looked for a page at a time, read into `tx` once found.
fn find_by_mount_path(
    tx: &mut Tx,
    kind: &str,
    name: &str,
    target: &Target,
) -> ApiResult<Option<Association>> {
    let prefix = keys::associations_of(kind, name);
    let mut found = None;
    each_key(tx.storage(), &prefix, None, |rel| {
        let key = format!("{prefix}{rel}");
        let matches = tx
            .peek_json::<Association>(&key)?
            .is_some_and(|r| r.mount == target.mount && r.secret_name == target.secret_name);
        Ok(if matches {
            found = Some(key);
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    match found {
        Some(key) => tx.get_json(&key),
        None => Ok(None),
    }
}

/// One entry per row of `record`, its fields in alphabetical order (as a
/// value tree renders them).
fn render_rows(out: &mut JsonText, first: &mut bool, record: &Association) -> ApiResult<()> {
    for (sub_key, row) in &record.rows {
        let key = if sub_key.is_empty() {
            format!("{}/{}", record.accessor, record.secret_name)
        } else {
            format!("{}/{}/{sub_key}", record.accessor, record.secret_name)
        };
        out.separate(first).value(&key)?;
        out.raw(":{\"accessor\":").value(&record.accessor)?;
        if row.sync_status.is_error()
            && let Some(error) = &row.error
        {
            out.raw(",\"error\":").value(error)?;
        }
        out.raw(",\"mount\":").value(&record.mount)?;
        out.raw(",\"secret_name\":").value(&record.secret_name)?;
        if !sub_key.is_empty() {
            out.raw(",\"sub_key\":").value(sub_key)?;
        }
        out.raw(",\"sync_status\":").value(&row.sync_status)?;
        out.raw(",\"updated_at\":")
            .value(&time::rfc3339(row.updated_at))?
            .raw("}");
    }
    Ok(())
}

/// The caller must be allowed to read the secret (`read` on
/// `<mount>/data/<secret_name>`) to sync it or to see what syncing it wrote.
pub fn check_secret_read(env: &Env, mount: &str, secret_name: &str) -> ApiResult<()> {
    let mount = mount.trim_matches('/');
    if env
        .authz
        .allowed("read", &format!("{mount}/data/{secret_name}"))
    {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "permission denied to read the content of the secret {secret_name} in mount {mount}"
        )))
    }
}

/// `POST .../associations/set`: creates the association, or refreshes it
/// (re-sync with the destination's current template and granularity). The
/// sync is claimed in the request's commit and made right after it
/// ([`finish_inline`]).
pub fn set(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let (env, kind, name) = (&call.env, call.param("type"), call.param("name"));
    let target = parse_target(&call.fields)?;
    let dest = existing_destination(tx, kind, name)?;
    if dest.purge_initiated_at.is_some() {
        return Err(ApiError::bad_request(format!(
            "destination {kind}/{name} is being purged: no association can be set on it"
        )));
    }
    let table = MountTable::load(tx)?;
    let mount = kv_mount(&table, &target.mount)?;
    let secret_name = target.secret_name.as_str();
    check_secret_read(env, &target.mount, secret_name)?;
    let mount_path = mount.path.trim_end_matches('/').to_string();
    let template = dest.template()?;
    let mut record = match Association::load(tx, kind, name, &mount.accessor, secret_name)? {
        Some(mut r) => {
            r.mount = mount_path;
            r.granularity = dest.granularity;
            r.template = template;
            r
        }
        None => Association::new(
            kind,
            name,
            &mount.accessor,
            &mount_path,
            secret_name,
            dest.granularity,
            template,
        ),
    };
    let secret = kv::read_current(tx, &mount, secret_name)?;
    let secret = secret.as_ref().map(|(v, data)| (*v, data));
    // Whatever cannot sync (a name that cannot be rendered, a collision) is
    // a 400 before anything is committed.
    check_association(tx, &dest, &record, secret)?;
    let touched = [(record.accessor.clone(), record.secret_name.clone())];
    if SyncConfig::load(tx)?.disabled {
        // Sync is disabled: no provider call; the association waits, PENDING.
        let queued = outbox::queue(tx, &mut record, OutboxOp::Sync, time::now(), true)?;
        let warning = outbox::full_warning(usize::from(queued == Queued::Full));
        return Ok(Reply::rendered(body(tx, kind, name, &touched)?).with_warning(warning));
    }
    let run = inline::claim(tx, &mut record, OutboxOp::Sync)?;
    Ok(Reply::rendered(body(tx, kind, name, &touched)?).after_commit(run))
}

/// `POST .../associations/remove`: deletes the external objects, then the
/// association (and its pending work): claimed in the request's commit,
/// made right after it ([`finish_inline`]). Idempotent. Failed deletes keep
/// the association (error rows) and the worker retries them; while sync is
/// disabled the removal is queued (`PENDING`).
pub fn remove(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let (kind, name) = (call.param("type"), call.param("name"));
    let target = parse_target(&call.fields)?;
    let dest = existing_destination(tx, kind, name)?;
    let table = MountTable::load(tx)?;
    let found = match kv_mount(&table, &target.mount) {
        Ok(mount) => Association::load(tx, kind, name, &mount.accessor, &target.secret_name)?,
        // A mount that is gone: find the association by its mount path.
        Err(e) => Some(find_by_mount_path(tx, kind, name, &target)?.ok_or(e)?),
    };
    let mut touched = Vec::new();
    let mut run = None;
    if let Some(mut record) = found {
        touched.push((record.accessor.clone(), record.secret_name.clone()));
        let op = if dest.purge_initiated_at.is_some() {
            OutboxOp::Purge
        } else {
            OutboxOp::UnsyncDrop
        };
        if record.is_clear() {
            // Nothing at the destination: dropping it needs no provider call.
            record.drop_record(tx)?;
            outbox::dequeue(tx, &EntryId::of(&record))?;
            finish_purge(tx, &dest)?;
        } else if SyncConfig::load(tx)?.disabled {
            outbox::queue(tx, &mut record, op, time::now(), true)?;
        } else {
            run = Some(inline::claim(tx, &mut record, op)?);
        }
    }
    let reply = Reply::rendered(body(tx, kind, name, &touched)?);
    Ok(match run {
        Some(run) => reply.after_commit(run),
        None => reply,
    })
}

/// After the intent commit of `set` or `remove` (the reply `intent` answers):
/// runs the provider calls the request claimed (see
/// [`crate::sync::worker::inline`]) and answers with the association's rows
/// as they are then. When that run cannot finish (storage failed), the
/// intent's answer stands (`PENDING`: the worker finishes). Returns whether
/// work remains queued at the destination.
pub fn finish_inline(env: &Env, run: &InlineRun, intent: Reply) -> (Reply, bool) {
    let remains = match inline::run(env, run) {
        Ok(remains) => remains,
        Err(e) => {
            eprintln!(
                "associations: the inline sync of an association of destination {}/{} stopped; the sync worker finishes it: {e}",
                run.id.kind, run.id.name
            );
            return (intent, true);
        }
    };
    match body(&Tx::new(env.storage), &run.id.kind, &run.id.name, &[]) {
        Ok(data) => (
            Reply {
                rendered: Some(data),
                ..intent
            },
            remains,
        ),
        Err(e) => {
            eprintln!(
                "associations: cannot read the associations of destination {}/{} after an inline sync: {e}",
                run.id.kind, run.id.name
            );
            (intent, remains)
        }
    }
}

/// A destination being purged is deleted once its last association is gone.
pub fn finish_purge(tx: &mut Tx, dest: &Destination) -> ApiResult<bool> {
    if dest.purge_initiated_at.is_none() || has_any(tx, &dest.kind, &dest.name)? {
        return Ok(false);
    }
    record::drop_claims(tx, &dest.kind, &dest.name)?;
    jobs::save(
        tx,
        Sweep::Purge {
            kind: dest.kind.clone(),
            name: dest.name.clone(),
        },
        None,
    )?;
    tx.delete(keys::destination(&dest.kind, &dest.name));
    Ok(true)
}

/// `LIST sys/sync/associations`: one key per associated secret, in one
/// answer as Vault gives it. The index is read a page at a time, and the
/// answer is written as JSON text (a value tree would cost several times
/// more memory): about 120 bytes per secret while it is built.
pub fn list_all(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    let table = MountTable::load(tx)?;
    // `mount/secret`, the mount's place in the table, and how many
    // destinations: index keys of one secret are adjacent, so a key like
    // the one before only counts (no allocation: this runs once per key).
    let mut secrets: Vec<(String, usize, u64)> = Vec::new();
    let mut previous = String::new();
    let mut previous_listed = false;
    let mut after: Option<String> = None;
    loop {
        let page = tx
            .storage()
            .list(keys::BY_SECRET, after.as_deref(), None, LIST_PAGE)?;
        for key in &page.keys {
            let mut parts = key.splitn(3, '/');
            let (Some(accessor), Some(escaped), Some(_destination)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let secret_key = key.get(..accessor.len() + 1 + escaped.len()).unwrap_or(key);
            if secret_key == previous {
                if let (true, Some((_, _, count))) = (previous_listed, secrets.last_mut()) {
                    *count += 1;
                }
                continue;
            }
            previous.clear();
            previous.push_str(secret_key);
            // A mount that is gone: its secrets are not listed.
            previous_listed = false;
            let Some(at) = table.entries.iter().position(|m| m.accessor == accessor) else {
                continue;
            };
            previous_listed = true;
            let mount = table
                .entries
                .get(at)
                .map_or("", |m| m.path.trim_end_matches('/'));
            let name = if escaped.contains('%') {
                format!("{mount}/{}", keys::unescape(escaped))
            } else {
                format!("{mount}/{escaped}")
            };
            secrets.push((name, at, 1));
        }
        match page.next {
            Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
            _ => break,
        }
    }
    if secrets.is_empty() {
        return Err(ApiError::NotFound);
    }
    if !secrets.is_sorted() {
        secrets.sort_unstable();
    }
    let total_associations: u64 = secrets.iter().map(|(_, _, n)| n).sum();
    let mut out = JsonText::new("{\"key_info\":{");
    let mut first = true;
    for (name, at, _) in &secrets {
        let path = table.entries.get(*at).map_or("", |m| m.path.as_str());
        let secret = name
            .get(path.trim_end_matches('/').len() + 1..)
            .unwrap_or_default();
        out.separate(&mut first).value(name)?.raw(":[{\"mount\":");
        out.value(path)?
            .raw(",\"secret_path\":")
            .value(secret)?
            .raw("}]");
    }
    out.raw("},\"keys\":[");
    let mut first = true;
    for (name, _, _) in &secrets {
        out.separate(&mut first).value(name)?;
    }
    out.raw(&format!(
        "],\"total_associations\":{total_associations},\"total_secrets\":{}}}",
        secrets.len()
    ));
    drop(secrets);
    Ok(out.into_reply())
}

/// Index keys read per page by [`list_all`].
const LIST_PAGE: u32 = 1_000;

/// `GET sys/sync/associations/destinations?mount=&secret_name=`.
pub fn destinations_of(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let field = |name| call.fields.string(name).unwrap_or_default();
    destinations_of_secret(tx, field("mount"), field("secret_name"))
}

/// `GET sys/sync/associations/:mount/*secret_name`.
pub fn destinations_at(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    destinations_of_secret(tx, call.param("mount"), call.param("secret_name"))
}

/// The destinations a secret is associated with.
fn destinations_of_secret(tx: &mut Tx, mount: &str, secret_name: &str) -> ApiResult<Reply> {
    if mount.trim_matches('/').is_empty() {
        return Err(ApiError::bad_request(
            "\"mount\" is required: the path of the KV-v2 mount that holds the secret",
        ));
    }
    check_secret_name(secret_name)?;
    let table = MountTable::load(tx)?;
    let mount = kv_mount(&table, mount)?;
    let mut destinations = Map::new();
    for key in tx.list(&keys::destinations_of(&mount.accessor, secret_name), None)? {
        let Some((kind, name)) = key.split_once('/') else {
            continue;
        };
        let Some(record) = Association::load(tx, kind, name, &mount.accessor, secret_name)? else {
            continue;
        };
        let (status, updated_at) = aggregate(&record);
        destinations.insert(
            format!("{kind}/{name}"),
            json!({
                "type": kind,
                "name": name,
                "sync_status": status,
                "updated_at": time::rfc3339(updated_at),
            }),
        );
    }
    Ok(Reply::data(
        json!({ "associated_destinations": destinations }),
    ))
}

/// One status for a whole association: the worst row's, and the latest time.
fn aggregate(record: &Association) -> (SyncStatus, Nanos) {
    let status = record
        .rows
        .values()
        .map(|r| r.sync_status)
        .max_by_key(|s| s.severity())
        .unwrap_or(SyncStatus::Unsynced);
    let updated_at = record
        .rows
        .values()
        .map(|r| r.updated_at)
        .max()
        .unwrap_or(0);
    (status, updated_at)
}

/// Whether the destination has any association (this transaction's drops
/// count). Reads keys a page at a time until it finds one that is there.
pub fn has_any(tx: &mut Tx, kind: &str, name: &str) -> ApiResult<bool> {
    let prefix = keys::associations_of(kind, name);
    let mut after: Option<String> = None;
    loop {
        let page = tx
            .storage()
            .list(&prefix, after.as_deref(), None, HAS_ANY_PAGE)?;
        for rel in &page.keys {
            if tx.get(&format!("{prefix}{rel}"))?.is_some() {
                return Ok(true);
            }
        }
        match page.next {
            Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
            _ => return Ok(false),
        }
    }
}

/// Keys [`has_any`] lists at a time: the first is nearly always there.
const HAS_ANY_PAGE: u32 = 16;
/// Associations dropped per commit by [`drop_all`].
const DROP_BATCH: u32 = 500;

/// Drops every association of the destination, its claims and its pending
/// work, without touching external objects (`force_delete`: they are
/// orphaned), in batches committed on their own: an interrupted drop that is
/// run again drops the rest.
pub fn drop_all(store: &dyn Storage, dest: &Destination) -> ApiResult<()> {
    let (kind, name) = (dest.kind.as_str(), dest.name.as_str());
    let prefix = keys::associations_of(kind, name);
    in_batches(store, &prefix, DROP_BATCH, |tx, rel| {
        let Some((accessor, escaped)) = rel.split_once('/') else {
            return Ok(());
        };
        let secret_name = keys::unescape(escaped);
        // Read, so that a concurrent change of the record conflicts.
        tx.get(&format!("{prefix}{rel}"))?;
        tx.delete(format!("{prefix}{rel}"));
        tx.delete(keys::secret_index(accessor, &secret_name, kind, name));
        Ok(())
    })?;
    let claims = keys::claims_of(kind, name);
    in_batches(store, &claims, DROP_BATCH, |tx, rel| {
        tx.delete(format!("{claims}{rel}"));
        Ok(())
    })?;
    outbox::drop_destination(store, kind, name)
}
