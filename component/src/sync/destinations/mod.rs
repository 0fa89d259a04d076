//! Secrets Sync destinations: the types (one module each, declared as data in
//! a [`DestinationType`]), the stored [`Destination`] record and the
//! `sys/sync/destinations` endpoints (read, create/update, patch, delete with
//! purge/force, lists, and kvsync's `in-mem/:name/objects`).

pub mod aws_sm;
pub mod azure_kv;
pub mod gcp_sm;
pub mod gh;
pub mod in_mem;
pub mod networking;
pub mod schema;
pub mod vercel_project;

#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::api::Reply;
use crate::connector::DestinationRef;
use crate::error::{ApiError, ApiResult};
use crate::framework::{Call, FieldSpec, FieldTables, FieldType, Fields};
use crate::storage::Tx;
use crate::sync::associations;
use crate::sync::jobs::{self, Sweep};
use crate::sync::keys;
use crate::sync::names::{NameRule, Template};
use crate::sync::outbox;
use crate::time::{self, Nanos};

pub use in_mem::TYPE as IN_MEM;
pub use networking::Networking;
use schema::Details;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    SecretPath,
    SecretKey,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::SecretPath => "secret-path",
            Granularity::SecretKey => "secret-key",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Granularity::SecretPath, Granularity::SecretKey]
            .into_iter()
            .find(|g| g.as_str() == s)
    }
}

/// A stored destination. Credentials are kept in clear here (the storage
/// barrier encrypts every value) and masked on every read.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// Type-specific fields, coerced and validated; unset fields are absent.
    pub connection_details: Map<String, Value>,
    pub granularity: Granularity,
    /// `None`: the type's default template.
    pub secret_name_template: Option<String>,
    pub custom_tags: BTreeMap<String, String>,
    pub networking: Networking,
    pub purge_initiated_at: Option<Nanos>,
    pub purge_error: Option<String>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("connection_details", &"*****")
            .field("granularity", &self.granularity)
            .finish()
    }
}

/// Cross-field rules of a type: the merged details, and the stored ones on update.
pub type Rules = fn(&mut Tx, &Details, Option<&Details>) -> ApiResult<()>;

/// One destination type, declared as data.
pub struct DestinationType {
    pub kind: &'static str,
    pub default_granularity: Granularity,
    /// Default templates for `secret-path` and `secret-key`.
    pub default_template_path: &'static str,
    pub default_template_key: &'static str,
    pub name_rule: &'static NameRule,
    /// Cloud types take `custom_tags` and write tags.
    pub cloud: bool,
    /// The `connection_details` fields, in the order reads show them.
    pub fields: &'static [FieldSpec],
    /// Rules spanning fields: mutually exclusive, required together, conditional.
    pub rules: Rules,
    /// Fields whose value names an object the caller must be allowed to
    /// read to use it, with the path prefix of those objects: a write that
    /// sets such a field needs `read` on `<prefix><value>`.
    pub reads: &'static [(&'static str, &'static str)],
}

/// Every destination type kvsync knows.
pub const TYPES: &[&DestinationType] = &[
    &aws_sm::TYPE,
    &azure_kv::TYPE,
    &gcp_sm::TYPE,
    &gh::TYPE,
    &vercel_project::TYPE,
    &in_mem::TYPE,
];

/// The names of [`TYPES`], in the same order.
#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build"
)]
pub const TYPE_NAMES: [&str; TYPES.len()] = {
    let mut names = [""; TYPES.len()];
    let mut i = 0;
    while i < TYPES.len() {
        names[i] = TYPES[i].kind;
        i += 1;
    }
    names
};

pub fn type_of(kind: &str) -> Option<&'static DestinationType> {
    TYPES.iter().copied().find(|t| t.kind == kind)
}

fn known_type(kind: &str) -> ApiResult<&'static DestinationType> {
    type_of(kind).ok_or_else(|| ApiError::bad_request(format!("unknown destination type {kind:?}")))
}

/// `[A-Za-z0-9._-]+`, not ending with `.` (Vault path parameters cannot).
fn check_name(name: &str) -> ApiResult<()> {
    let valid = !name.is_empty()
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid destination name {name:?}: use letters, digits, '.', '_' and '-', and do not end with '.'"
        )))
    }
}

impl Destination {
    pub fn load(tx: &mut Tx, kind: &str, name: &str) -> ApiResult<Option<Destination>> {
        known_type(kind)?;
        tx.get_json(&keys::destination(kind, name))
    }

    pub fn save(&self, tx: &mut Tx) -> ApiResult<()> {
        tx.put_json(keys::destination(&self.kind, &self.name), self)
    }

    pub fn spec(&self) -> ApiResult<&'static DestinationType> {
        type_of(&self.kind).ok_or_else(|| {
            ApiError::Internal(format!("stored destination of unknown type {}", self.kind))
        })
    }

    /// The template in force: the stored one, else the type's default.
    pub fn template(&self) -> ApiResult<String> {
        if let Some(t) = &self.secret_name_template {
            return Ok(t.clone());
        }
        let spec = self.spec()?;
        Ok(match self.granularity {
            Granularity::SecretPath => spec.default_template_path,
            Granularity::SecretKey => spec.default_template_key,
        }
        .to_string())
    }

    /// What the connector needs: connection details (in clear) and networking as JSON.
    pub fn connector_ref(&self) -> DestinationRef {
        let mut config = self.connection_details.clone();
        if let Ok(Value::Object(net)) = serde_json::to_value(&self.networking) {
            config.extend(net);
        }
        DestinationRef {
            kind: self.kind.clone(),
            name: self.name.clone(),
            config: Value::Object(config).to_string(),
        }
    }

    /// Tags for external objects: `hashicorp:vault` plus `custom_tags` on cloud types.
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![(BUILTIN_TAG.to_string(), String::new())];
        if type_of(&self.kind).is_some_and(|t| t.cloud) {
            tags.extend(self.custom_tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        tags
    }

    /// Normalises a rendered external name to the type's character set.
    pub fn normalize_name(&self, rendered: &str) -> ApiResult<String> {
        self.spec()?
            .name_rule
            .apply(rendered)
            .map_err(ApiError::BadRequest)
    }

    fn new(spec: &DestinationType, name: &str) -> Self {
        Destination {
            kind: spec.kind.to_string(),
            name: name.to_string(),
            connection_details: Map::new(),
            granularity: spec.default_granularity,
            secret_name_template: None,
            custom_tags: BTreeMap::new(),
            networking: Networking::default(),
            purge_initiated_at: None,
            purge_error: None,
        }
    }

    /// The `data` of a read: masked details, networking, options, purge state.
    pub fn body(&self) -> ApiResult<Value> {
        let spec = self.spec()?;
        let mut details = schema::render(spec.fields, &self.connection_details);
        self.networking.render(&mut details);
        let mut options = Map::new();
        options.insert("granularity_level".into(), json!(self.granularity.as_str()));
        options.insert("secret_name_template".into(), json!(self.template()?));
        if spec.cloud {
            options.insert("custom_tags".into(), json!(self.custom_tags));
        }
        let mut data = Map::new();
        data.insert("name".into(), json!(self.name));
        data.insert("type".into(), json!(self.kind));
        data.insert("connection_details".into(), Value::Object(details));
        data.insert("options".into(), Value::Object(options));
        if let Some(at) = self.purge_initiated_at {
            data.insert("purge_initiated_at".into(), json!(time::rfc3339(at)));
        }
        if let Some(e) = &self.purge_error {
            data.insert("purge_error".into(), json!(e));
        }
        Ok(Value::Object(data))
    }
}

/// The tag every external object carries.
pub const BUILTIN_TAG: &str = "hashicorp:vault";

/// Request fields every type takes, besides its own.
const COMMON: &[FieldSpec] = &[
    FieldSpec::string("granularity").describe(
        "secret-path writes one external secret per KV secret, secret-key one per key of it.",
    ),
    FieldSpec::string("secret_name_template")
        .describe("Template of the external names; empty restores the type's default."),
];

/// Request fields of the cloud types (`tags_to_remove` is used by PATCH only).
const CLOUD: &[FieldSpec] = &[
    FieldSpec::new("custom_tags", FieldType::KvPairs)
        .null_removes_entries()
        .describe("Tags written on every external secret besides hashicorp:vault; in a PATCH, null removes a tag."),
    FieldSpec::new("tags_to_remove", FieldType::CommaStringSlice)
        .describe("PATCH only: keys of custom_tags to remove."),
];

pub const DELETE_FIELDS: &[FieldSpec] = &[
    FieldSpec::new("purge", FieldType::Bool).describe(
        "Unsync every association first; the destination is deleted once the last one is gone.",
    ),
    FieldSpec::new("force_delete", FieldType::Bool).describe(
        "Delete at once, dropping the associations without deleting their external secrets.",
    ),
];

impl DestinationType {
    /// The fields a write of this type takes: its own, the common ones,
    /// networking, and the tags of cloud types.
    pub fn request_fields(&self) -> [&'static [FieldSpec]; 4] {
        let cloud = if self.cloud { CLOUD } else { &[] };
        [self.fields, COMMON, networking::FIELDS, cloud]
    }
}

/// `LIST sys/sync/destinations`: bare type names (Vault 1.16 and later append `/` to each).
pub fn list_all(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in tx.list(keys::DESTINATIONS, None)? {
        if let Some((kind, name)) = key.split_once('/') {
            by_type
                .entry(kind.to_string())
                .or_default()
                .push(name.to_string());
        }
    }
    if by_type.is_empty() {
        return Err(ApiError::NotFound);
    }
    by_type.values_mut().for_each(|names| names.sort());
    let total: usize = by_type.values().map(Vec::len).sum();
    Ok(Reply::data(json!({
        "keys": by_type.keys().collect::<Vec<_>>(),
        "key_info": by_type,
        "total_destinations": total,
    })))
}

/// `LIST sys/sync/destinations/:type`.
pub fn list_type(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let kind = call.param("type");
    known_type(kind)?;
    let mut names: Vec<String> = tx
        .list(&keys::destination(kind, ""), None)?
        .into_iter()
        .filter(|n| !n.contains('/'))
        .collect();
    if names.is_empty() {
        return Err(ApiError::NotFound);
    }
    names.sort();
    Ok(Reply::data(
        json!({ "keys": names, "total_destinations": names.len() }),
    ))
}

/// The type and name of `sys/sync/destinations/:type/:name`, checked.
fn target<'c>(call: &Call<'c>) -> ApiResult<(&'static DestinationType, &'c str)> {
    let spec = known_type(call.param("type"))?;
    let name = call.param("name");
    check_name(name)?;
    Ok((spec, name))
}

/// The fields a write of the destination type `kind` takes.
pub fn request_tables(kind: &str) -> ApiResult<FieldTables> {
    Ok(known_type(kind)?.request_fields())
}

/// The existence check of `sys/sync/destinations/:type/:name`.
pub fn exists(tx: &mut Tx, call: &Call) -> ApiResult<bool> {
    let (spec, name) = target(call)?;
    Ok(tx.get(&keys::destination(spec.kind, name))?.is_some())
}

/// `GET sys/sync/destinations/:type/:name`.
pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let (spec, name) = target(call)?;
    let dest = Destination::load(tx, spec.kind, name)?.ok_or(ApiError::NotFound)?;
    Ok(Reply::data(dest.body()?))
}

/// `POST sys/sync/destinations/:type/:name`: creates the destination, or
/// merges the request into it.
pub fn write(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    save(tx, call, false)
}

/// `PATCH sys/sync/destinations/:type/:name`.
pub fn patch(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    save(tx, call, true)
}

/// Create or update (POST/PUT), or PATCH; both merge into the stored record.
fn save(tx: &mut Tx, call: &Call, patch: bool) -> ApiResult<Reply> {
    let (spec, name) = target(call)?;
    // An explicit `null` clears a field, as Vault's parser reads it as the
    // zero value; `null` tags inside `custom_tags` are removals (PATCH).
    let fields = call.fields.nulls_as_zero(&spec.request_fields());
    let old = Destination::load(tx, spec.kind, name)?;
    if let Some(old) = &old
        && old.purge_initiated_at.is_some()
    {
        return Err(ApiError::bad_request(format!(
            "destination {}/{name} is being purged and cannot be changed; delete it again with purge=true to retry",
            spec.kind
        )));
    }
    if patch && old.is_none() {
        return Err(ApiError::NotFound);
    }
    for (field, prefix) in spec.reads {
        if let Some(value) = fields.string(field).filter(|v| !v.is_empty()) {
            let path = format!("{prefix}{value}");
            if !call.env.authz.allowed("read", &path) {
                return Err(ApiError::Forbidden(format!(
                    "{field}: permission denied to read {path}"
                )));
            }
        }
    }
    // `tags_to_remove` (and merge-patch's `null` tags) are for PATCH only.
    let removed = patch.then(|| {
        let mut keys = fields.strings("tags_to_remove").unwrap_or_default();
        keys.extend_from_slice(fields.removed("custom_tags"));
        keys
    });
    let dest = merge(tx, spec, name, old.as_ref(), &fields, removed)?;
    dest.save(tx)?;
    Ok(Reply::data(dest.body()?))
}

/// The record after applying the request to the stored one (`old`; `None` on
/// create). `tags_removed` is `Some` for a PATCH, which merges `custom_tags`
/// into the stored map, then removes these keys; a POST replaces the map.
fn merge(
    tx: &mut Tx,
    spec: &DestinationType,
    name: &str,
    old: Option<&Destination>,
    fields: &Fields,
    tags_removed: Option<Vec<String>>,
) -> ApiResult<Destination> {
    let old_details = old.map(|d| &d.connection_details);
    let details = schema::merge(spec.fields, fields, old_details)?;
    (spec.rules)(tx, &Details(&details), old_details.map(Details).as_ref())?;
    let mut dest = old.cloned().unwrap_or_else(|| Destination::new(spec, name));
    dest.connection_details = details;
    if let Some(g) = fields.string("granularity") {
        dest.granularity = match g {
            "" => spec.default_granularity,
            g => Granularity::parse(g).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid granularity {g:?}: use secret-path or secret-key"
                ))
            })?,
        };
    }
    if let Some(t) = fields.string("secret_name_template") {
        dest.secret_name_template = Some(t.to_string()).filter(|t| !t.is_empty());
    }
    check_template(&dest)?;
    dest.networking.apply(fields)?;
    schema::check_https_endpoints(
        spec.fields,
        &dest.connection_details,
        !dest.networking.disable_strict_networking,
    )?;
    if spec.cloud {
        if let Some(tags) = fields.string_map("custom_tags") {
            if let Some(key) = tags.keys().find(|k| k.is_empty() || *k == BUILTIN_TAG) {
                return Err(ApiError::bad_request(format!(
                    "custom_tags: invalid tag key {key:?}: keys must not be empty or {BUILTIN_TAG}"
                )));
            }
            if tags_removed.is_some() {
                dest.custom_tags.extend(tags);
            } else {
                dest.custom_tags = tags;
            }
        }
        for key in tags_removed.unwrap_or_default() {
            dest.custom_tags.remove(&key);
        }
    }
    Ok(dest)
}

/// A custom template must parse, and refer to `.SecretKey` exactly when the
/// granularity is `secret-key` (the key exists only then).
fn check_template(dest: &Destination) -> ApiResult<()> {
    let Some(source) = &dest.secret_name_template else {
        return Ok(());
    };
    let template = Template::parse(source)
        .map_err(|e| ApiError::bad_request(format!("secret_name_template is invalid: {e}")))?;
    match (dest.granularity, template.uses("SecretKey")) {
        (Granularity::SecretKey, false) => Err(ApiError::bad_request(
            "secret name template is invalid: external name template should contain reference to the secret key \
             (secret_name_template must use {{ .SecretKey }} with granularity secret-key)",
        )),
        (Granularity::SecretPath, true) => Err(ApiError::bad_request(
            "secret_name_template is invalid: .SecretKey is only defined with granularity secret-key",
        )),
        _ => Ok(()),
    }
}

/// `DELETE ...?purge=&force_delete=`. `force_delete` drops the
/// associations at once (their external objects are orphaned); `purge`
/// starts a background job: every association is queued for unsync, reads
/// show `purge_initiated_at` (and `purge_error` while unsyncs fail), and the
/// worker deletes the destination once the last association is gone.
pub fn delete(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let (spec, name) = target(call)?;
    let fields = &call.fields;
    let done = || Ok(Reply::no_content());
    let Some(mut dest) = Destination::load(tx, spec.kind, name)? else {
        return done();
    };
    let purge = fields.bool("purge").unwrap_or(false);
    let force = fields.bool("force_delete").unwrap_or(false);
    if force {
        // In batches of their own, before the destination goes in `tx`: an
        // interrupted force delete leaves the destination, and running it
        // again finishes.
        associations::drop_all(tx.storage(), &dest)?;
    } else if associations::has_any(tx, spec.kind, name)? {
        if purge {
            // Purging again restarts the job (a retry now, for every association).
            dest.purge_initiated_at = Some(time::now());
            dest.purge_error = None;
            dest.save(tx)?;
            outbox::purge_destination(tx, &dest)?;
            return done();
        } else {
            return Err(ApiError::bad_request(format!(
                "destination {}/{name} still has associations; retry with purge=true",
                spec.kind
            )));
        }
    }
    outbox::drop_destination(tx.storage(), spec.kind, name)?;
    crate::sync::associations::record::drop_claims(tx, spec.kind, name)?;
    // A purge in progress ends with its destination.
    jobs::save(
        tx,
        Sweep::Purge {
            kind: spec.kind.to_string(),
            name: name.to_string(),
        },
        None,
    )?;
    tx.delete(keys::destination(spec.kind, name));
    done()
}

/// `GET sys/sync/destinations/in-mem/:name/objects` (kvsync extension): the
/// external objects as the connector holds them. They are secret values: the
/// caller needs `read` on the secret behind every object shown (an object
/// whose association is gone counts as unreadable), or `sudo` on this path.
pub fn objects(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let (kind, name) = (IN_MEM.kind, call.param("name"));
    check_name(name)?;
    let dest = Destination::load(tx, kind, name)?.ok_or(ApiError::NotFound)?;
    let found = call
        .env
        .connector
        .inspect(&dest.connector_ref())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "cannot list the objects of destination {kind}/{name}: {}",
                e.message()
            ))
        })?;
    if !call.env.authz.allowed("sudo", &call.req.path) {
        for object in &found {
            let claim = associations::record::claim_of(tx, kind, name, &object.name)?
                .ok_or(ApiError::PermissionDenied)?;
            associations::check_secret_read(&call.env, &claim.mount, &claim.secret_name)?;
        }
    }
    let objects: Map<String, Value> = found
        .into_iter()
        .map(|s| {
            let tags: Map<String, Value> = s
                .tags
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect();
            (s.name, json!({ "value": s.value, "tags": tags }))
        })
        .collect();
    Ok(Reply::data(json!({ "objects": objects })))
}

#[cfg(test)]
mod tests;
