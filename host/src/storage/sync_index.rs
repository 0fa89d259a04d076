//! The host's index of tenants with sync work, so that the sync worker finds them without
//! looking at every tenant (there may be tens of thousands, most of them idle).
//!
//! Two host-only records per tenant, outside every tenant's keys, with empty values:
//!
//! * `core/sync/due/<tenant>/due/<type>/<name>`: the tenant has outbox entries of destination
//!   `<type>/<name>` (keys of its due index, `sync/due/<type>/<name>/...`);
//!   `core/sync/due/<tenant>/job/<job>`: it has the sweep `sync/jobs/<job>` in progress. Each
//!   such work item belongs to one sync shard (the engine's shard function), so the loop of a
//!   shard serves exactly the tenants whose items fall in it, whatever the shard count.
//! * `core/sync/reconcile/<tenant>`: the tenant has sync destinations, so reconciliation visits
//!   it; tenants without any are never reconciled.
//!
//! `<tenant>` is the tenant id encoded as in [`tenant_prefix`].
//!
//! **Written atomically with the work.** [`TenantStorage`](super::TenantStorage) adds the index
//! records to the very commit in which the guest writes a due-index key, a job record or a
//! destination ([`index_ops`]), so no acknowledged work is ever missing from the index, whatever
//! crashes. A write of the tenant's sync config (sync enabled again) puts every index record the
//! tenant has again: the change feed then wakes the loops of the shards that hold its work.
//!
//! **Dropped only when provably idle.** A record goes when the work it names is gone
//! ([`forget_idle`]): its version is read first, then the tenant's keys are checked, then the
//! record is deleted on condition that its version did not move. A commit that adds work
//! meanwhile rewrites the record (a new version), so the delete fails and the record stays. A
//! tenant whose prefix is gone (a deleted namespace) has no work left: its records are dropped
//! the first time the worker meets them.

use std::collections::BTreeSet;

use kvsync_component::sync::{jobs, keys, worker::shard_of};

use super::{Backend, Condition, Op, StorageError};

/// Where the index of tenants with queued work lives.
pub const DUE_INDEX: &str = "core/sync/due/";
/// Where the index of tenants with sync destinations lives.
pub const RECONCILE_INDEX: &str = "core/sync/reconcile/";

/// Index records listed per page.
const PAGE: u32 = 1_000;
/// Present once the index covers every tenant (see [`upgrade`]).
const INDEXED: &str = "core/sync/indexed";
/// The one tenant a store written before the index existed can hold.
const ROOT_TENANT: &str = "root";

/// `id` as it appears in storage keys: `%`, `/` and NUL percent-encoded, so the encoded id
/// never contains `/`.
pub fn encode_tenant(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    out
}

/// The tenant id of an [`encode_tenant`]d segment; `None` when it is not one.
pub fn decode_tenant(encoded: &str) -> Option<String> {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(i) = rest.find('%') {
        out.push_str(rest.get(..i)?);
        let code = rest.get(i..i + 3)?;
        out.push(match code {
            "%25" => '%',
            "%2F" => '/',
            "%00" => '\0',
            _ => return None,
        });
        rest = rest.get(i + 3..)?;
    }
    if rest.contains('/') {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// One item of a tenant's queued work, as the index files it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Work {
    /// Outbox entries of destination `<kind>/<name>`.
    Due { kind: String, name: String },
    /// The sweep stored at `sync/jobs/<rel>`.
    Job { rel: String },
}

impl Work {
    /// The work a tenant-relative key written by a guest stands for.
    fn of_key(key: &str) -> Option<Work> {
        if let Some(rel) = key.strip_prefix(keys::DUE) {
            let mut parts = rel.splitn(3, '/');
            let (kind, name) = (parts.next()?, parts.next()?);
            parts.next()?;
            return (!kind.is_empty() && !name.is_empty()).then(|| Work::Due {
                kind: kind.to_string(),
                name: name.to_string(),
            });
        }
        let rel = key.strip_prefix(jobs::JOBS)?;
        jobs::shard_of_job(rel, 1).map(|_| Work::Job {
            rel: rel.to_string(),
        })
    }

    /// The item of an index record (relative to the tenant's part of [`DUE_INDEX`]).
    fn parse(rel: &str) -> Option<Work> {
        if let Some(destination) = rel.strip_prefix("due/") {
            let (kind, name) = destination.split_once('/')?;
            return (!kind.is_empty() && !name.is_empty() && !name.contains('/')).then(|| {
                Work::Due {
                    kind: kind.to_string(),
                    name: name.to_string(),
                }
            });
        }
        let rel = rel.strip_prefix("job/")?;
        jobs::shard_of_job(rel, 1).map(|_| Work::Job {
            rel: rel.to_string(),
        })
    }

    /// The record's key, relative to the tenant's part of [`DUE_INDEX`].
    fn rel(&self) -> String {
        match self {
            Work::Due { kind, name } => format!("due/{kind}/{name}"),
            Work::Job { rel } => format!("job/{rel}"),
        }
    }

    /// The sync shard (of `shards`) whose runs do this work.
    pub fn shard(&self, shards: u32) -> u32 {
        match self {
            Work::Due { kind, name } => shard_of(kind, name, shards),
            Work::Job { rel } => jobs::shard_of_job(rel, shards).unwrap_or(0),
        }
    }

    /// Whether the tenant still holds this work (its due-index keys, or the job record).
    async fn remains(
        &self,
        backend: &dyn Backend,
        tenant_prefix: &str,
    ) -> Result<bool, StorageError> {
        match self {
            Work::Due { kind, name } => {
                let prefix = format!("{tenant_prefix}{}", keys::due_of(kind, name));
                Ok(!backend.list(&prefix, None, None, 1).await?.keys.is_empty())
            }
            Work::Job { rel } => Ok(backend
                .get(&format!("{tenant_prefix}{}{rel}", jobs::JOBS))
                .await?
                .is_some()),
        }
    }
}

/// The index record of `work` of the tenant `encoded` (see [`encode_tenant`]).
pub fn due_key(encoded: &str, work: &Work) -> String {
    format!("{DUE_INDEX}{encoded}/{}", work.rel())
}

/// The reconciliation index record of the tenant `encoded`.
pub fn reconcile_key(encoded: &str) -> String {
    format!("{RECONCILE_INDEX}{encoded}")
}

/// The tenant and work item of a full storage key of [`DUE_INDEX`]; `None` for other keys.
pub fn parse_due_key(key: &str) -> Option<(String, Work)> {
    let rel = key.strip_prefix(DUE_INDEX)?;
    let (encoded, work) = rel.split_once('/')?;
    Some((decode_tenant(encoded)?, Work::parse(work)?))
}

/// What the guest's `ops` (tenant-relative keys) make the index hold: a record per work item
/// and the reconciliation record, as puts to add to the same commit, sorted and without
/// repeats; `touch`: whether the commit writes the tenant's sync config (then the caller puts
/// every record the tenant has again, see the module docs).
pub fn index_ops(encoded: &str, ops: &[Op]) -> (Vec<Op>, bool) {
    let mut records: BTreeSet<String> = BTreeSet::new();
    let mut touch = false;
    for op in ops {
        let Op::Put { key, .. } = op else {
            continue;
        };
        if let Some(work) = Work::of_key(key) {
            records.insert(due_key(encoded, &work));
        } else if key.starts_with(keys::DESTINATIONS) {
            records.insert(reconcile_key(encoded));
        } else if key == keys::CONFIG {
            touch = true;
        }
    }
    let puts = records.into_iter().map(put).collect();
    (puts, touch)
}

/// Every index record of queued work the tenant `encoded` has, as puts (see [`index_ops`]).
pub async fn touch_ops(backend: &dyn Backend, encoded: &str) -> Result<Vec<Op>, StorageError> {
    let prefix = format!("{DUE_INDEX}{encoded}/");
    let mut ops = Vec::new();
    each_key(backend, &prefix, |rel| {
        ops.push(put(format!("{prefix}{rel}")))
    })
    .await?;
    Ok(ops)
}

/// Calls `f` with every key under `prefix` (relative), page by page.
async fn each_key(
    backend: &dyn Backend,
    prefix: &str,
    mut f: impl FnMut(String),
) -> Result<(), StorageError> {
    let mut after: Option<String> = None;
    loop {
        let page = backend.list(prefix, after.as_deref(), None, PAGE).await?;
        page.keys.into_iter().for_each(&mut f);
        match page.next {
            Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
            _ => return Ok(()),
        }
    }
}

/// The tenants with queued work in shard `shard` of `shards`, each once, in index order: what
/// a loop that just took the shard (or lost track of changes) serves. Costs one key per work
/// item of every tenant with work; idle tenants cost nothing.
pub async fn tenants_of_shard(
    backend: &dyn Backend,
    shard: u32,
    shards: u32,
) -> Result<Vec<String>, StorageError> {
    let mut tenants: Vec<String> = Vec::new();
    each_key(backend, DUE_INDEX, |rel| {
        let Some((encoded, work)) = rel.split_once('/') else {
            return;
        };
        let Some(work) = Work::parse(work) else {
            return;
        };
        if work.shard(shards) != shard {
            return;
        }
        if let Some(tenant) = decode_tenant(encoded)
            && tenants.last() != Some(&tenant)
        {
            tenants.push(tenant);
        }
    })
    .await?;
    Ok(tenants)
}

/// Drops the index records of the tenant's work in shard `shard` of `shards` whose work is
/// gone (see the module docs); returns how many records stay (work is left, or someone added
/// some meanwhile).
pub async fn forget_idle(
    backend: &dyn Backend,
    tenant: &str,
    shard: u32,
    shards: u32,
) -> Result<usize, StorageError> {
    let encoded = encode_tenant(tenant);
    let prefix = format!("{DUE_INDEX}{encoded}/");
    let mut items: Vec<Work> = Vec::new();
    each_key(backend, &prefix, |rel| {
        if let Some(work) = Work::parse(&rel)
            && work.shard(shards) == shard
        {
            items.push(work);
        }
    })
    .await?;
    let tenant_prefix = super::tenant_prefix(tenant);
    let mut stay = 0;
    for work in items {
        let key = due_key(&encoded, &work);
        let Some(record) = backend.get(&key).await? else {
            continue;
        };
        if work.remains(backend, &tenant_prefix).await? {
            stay += 1;
            continue;
        }
        if forget(backend, key, record.version).await? {
            stay += 1;
        }
    }
    Ok(stay)
}

/// Deletes the record `key` unless its version moved from `version`; true when it moved.
async fn forget(backend: &dyn Backend, key: String, version: u64) -> Result<bool, StorageError> {
    let conditions = vec![Condition {
        key: key.clone(),
        version: Some(version),
    }];
    match backend.commit(conditions, vec![Op::Delete { key }]).await {
        Ok(_) => Ok(false),
        Err(StorageError::Conflict) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Up to `limit` tenants with sync destinations after the tenant `after` (encoded, as
/// returned), in index order, and the encoded id to continue after (`None`: the end).
pub async fn reconcile_page(
    backend: &dyn Backend,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<String>, Option<String>), StorageError> {
    let page = backend.list(RECONCILE_INDEX, after, None, limit).await?;
    let tenants = page.keys.iter().filter_map(|k| decode_tenant(k)).collect();
    Ok((tenants, page.next))
}

/// Drops the tenant's reconciliation record when it has no sync destination left (see the
/// module docs); true when it was dropped.
pub async fn forget_unreconciled(
    backend: &dyn Backend,
    tenant: &str,
) -> Result<bool, StorageError> {
    let key = reconcile_key(&encode_tenant(tenant));
    let Some(record) = backend.get(&key).await? else {
        return Ok(false);
    };
    let destinations = format!("{}{}", super::tenant_prefix(tenant), keys::DESTINATIONS);
    if !backend
        .list(&destinations, None, None, 1)
        .await?
        .keys
        .is_empty()
    {
        return Ok(false);
    }
    Ok(!forget(backend, key, record.version).await?)
}

/// The index of a store written before it existed, built once: such a store has one tenant,
/// `root`, whose queued work and destinations are filed from its own keys (one key per
/// destination with work, plus its jobs). Later starts read one record and do nothing.
pub async fn upgrade(backend: &dyn Backend) -> Result<(), StorageError> {
    if backend.get(INDEXED).await?.is_some() {
        return Ok(());
    }
    let prefix = super::tenant_prefix(ROOT_TENANT);
    let encoded = encode_tenant(ROOT_TENANT);
    let mut records: Vec<Op> = Vec::new();
    let due = format!("{prefix}{}", keys::DUE);
    let mut kinds = Vec::new();
    each_group(backend, &due, |kind| kinds.push(kind)).await?;
    for kind in kinds {
        each_group(backend, &format!("{due}{kind}"), |name| {
            let work = Work::Due {
                kind: kind.trim_end_matches('/').to_string(),
                name: name.trim_end_matches('/').to_string(),
            };
            records.push(put(due_key(&encoded, &work)));
        })
        .await?;
    }
    each_key(backend, &format!("{prefix}{}", jobs::JOBS), |rel| {
        if jobs::shard_of_job(&rel, 1).is_some() {
            records.push(put(due_key(&encoded, &Work::Job { rel })));
        }
    })
    .await?;
    let destinations = format!("{prefix}{}", keys::DESTINATIONS);
    if !backend
        .list(&destinations, None, None, 1)
        .await?
        .keys
        .is_empty()
    {
        records.push(put(reconcile_key(&encoded)));
    }
    if !records.is_empty() {
        tracing::info!(
            records = records.len(),
            "indexed the sync work of a store written before the index"
        );
    }
    records.push(put(INDEXED.to_string()));
    let conditions = vec![Condition {
        key: INDEXED.to_string(),
        version: None,
    }];
    match backend.commit(conditions, records).await {
        // Another host built it meanwhile.
        Ok(_) | Err(StorageError::Conflict) => Ok(()),
        Err(e) => Err(e),
    }
}

fn put(key: String) -> Op {
    Op::Put {
        key,
        value: Vec::new(),
    }
}

/// Calls `f` with every group (the part up to and including the next `/`) under `prefix`.
async fn each_group(
    backend: &dyn Backend,
    prefix: &str,
    mut f: impl FnMut(String),
) -> Result<(), StorageError> {
    let mut after: Option<String> = None;
    loop {
        let page = backend
            .list(prefix, after.as_deref(), Some('/'), PAGE)
            .await?;
        page.keys
            .into_iter()
            .filter(|k| k.ends_with('/'))
            .for_each(&mut f);
        match page.next {
            Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
