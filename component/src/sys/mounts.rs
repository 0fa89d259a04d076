//! `sys/mounts`: the mount table. kvsync mounts one engine type, KV version 2.
//! The table is one storage record, so resolving a path costs one read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::api::{Reply, random_bytes};
use crate::effects::Change;
use crate::error::{ApiError, ApiResult};
use crate::framework::{self, Call, FieldSpec, FieldType};
use crate::storage::{Tx, in_batches};
use crate::sys::builtin_entry;

pub const MOUNT_TABLE_KEY: &str = "core/mounts";

/// Paths that belong to the server itself.
const RESERVED: &[&str] = &["sys/", "auth/", "cubbyhole/", "identity/"];

const KV_RUNNING_VERSION: &str = "v0.25.0+builtin";

/// The lease TTLs a mount that sets none has (Vault's system defaults, 768h),
/// as `sys/mounts/<path>/tune` shows them.
pub const SYSTEM_DEFAULT_LEASE_TTL: i64 = 768 * 3600;
pub const SYSTEM_MAX_LEASE_TTL: i64 = 768 * 3600;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountConfig {
    pub default_lease_ttl: i64,
    pub max_lease_ttl: i64,
    pub force_no_cache: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountEntry {
    /// With a trailing slash: `secret/`.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub accessor: String,
    pub uuid: String,
    pub description: String,
    pub options: BTreeMap<String, String>,
    pub config: MountConfig,
    pub local: bool,
    pub seal_wrap: bool,
    pub external_entropy_access: bool,
}

impl MountEntry {
    pub fn is_kv_v2(&self) -> bool {
        self.kind == "kv" && self.options.get("version").map(String::as_str) == Some("2")
    }

    /// Where the engine mounted here keeps its data.
    pub fn storage_prefix(&self) -> String {
        format!("logical/{}/", self.uuid)
    }

    /// The body Vault shows for a mount in `sys/mounts`.
    pub fn to_json(&self) -> Value {
        json!({
            "accessor": self.accessor,
            "config": self.config,
            "deprecation_status": "supported",
            "description": self.description,
            "external_entropy_access": self.external_entropy_access,
            "local": self.local,
            "options": self.options,
            "plugin_version": "",
            "running_plugin_version": KV_RUNNING_VERSION,
            "running_sha256": "",
            "seal_wrap": self.seal_wrap,
            "type": self.kind,
            "uuid": self.uuid,
        })
    }
}

/// The `sys/` entry, as Vault shows it: the system backend is no plugin, so it
/// has no `deprecation_status`, and it passes the `Accept` header through
/// (for `sys/metrics`).
pub fn system_mount_json() -> Value {
    let mut config = Map::new();
    config.insert("passthrough_request_headers".into(), json!(["Accept"]));
    builtin_entry(
        (
            "system",
            "system_00000000",
            "00000000-0000-0000-0000-000000000000",
        ),
        "system endpoints used for control, policy and debugging",
        config,
        true,
    )
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MountTable {
    pub entries: Vec<MountEntry>,
}

impl MountTable {
    pub fn load(tx: &mut Tx) -> ApiResult<Self> {
        Ok(tx.get_json(MOUNT_TABLE_KEY)?.unwrap_or_default())
    }

    pub fn save(&self, tx: &mut Tx) -> ApiResult<()> {
        tx.put_json(MOUNT_TABLE_KEY, self)
    }

    /// The mount serving `path` (longest prefix) and the path inside it.
    pub fn find<'p>(&self, path: &'p str) -> Option<(&MountEntry, &'p str)> {
        self.entries
            .iter()
            .filter_map(|m| {
                if let Some(rest) = path.strip_prefix(m.path.as_str()) {
                    Some((m, rest))
                } else if m.path.strip_suffix('/') == Some(path) {
                    Some((m, ""))
                } else {
                    None
                }
            })
            .max_by_key(|(m, _)| m.path.len())
    }

    pub fn get(&self, path: &str) -> Option<&MountEntry> {
        self.entries.iter().find(|m| m.path == path)
    }
}

/// Whether `path` (normalised) belongs to the server itself (`sys/`, `auth/`, ...).
pub fn is_reserved(path: &str) -> bool {
    RESERVED.iter().any(|r| path.starts_with(r))
}

/// `a/b`, `/a/b/` → `a/b/`.
pub fn normalize_path(path: &str) -> String {
    format!("{}/", path.trim_matches('/'))
}

/// `GET sys/mounts`.
pub fn read_table(tx: &mut Tx, _call: &Call) -> ApiResult<Reply> {
    let table = MountTable::load(tx)?;
    let mut data = serde_json::Map::new();
    for m in &table.entries {
        data.insert(m.path.clone(), m.to_json());
    }
    data.insert("sys/".to_string(), system_mount_json());
    Ok(Reply::data(Value::Object(data)).with_data_at_top_level())
}

pub const ENABLE_FIELDS: &[FieldSpec] = &[
    FieldSpec::string("type")
        .required()
        .describe("Type of the secrets engine: kv-v2, or kv with options.version 2."),
    FieldSpec::string("description").describe("Human-friendly description of the mount."),
    FieldSpec::new("config", FieldType::Map)
        .describe("Mount settings: default_lease_ttl, max_lease_ttl, force_no_cache."),
    FieldSpec::new("options", FieldType::KvPairs)
        .describe("Options of the engine; KV takes version."),
    FieldSpec::new("local", FieldType::Bool)
        .describe("Whether the mount is local to this cluster (kept and shown)."),
    FieldSpec::new("seal_wrap", FieldType::Bool)
        .describe("Kept and shown; every stored value is encrypted anyway."),
    FieldSpec::new("external_entropy_access", FieldType::Bool).describe("Kept and shown."),
    FieldSpec::string("plugin_name").describe("Accepted for compatibility and ignored."),
    FieldSpec::string("plugin_version").describe("Accepted for compatibility and ignored."),
];

/// `GET sys/mounts/<path>`.
pub fn read(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let path = normalize_path(call.param("path"));
    let table = MountTable::load(tx)?;
    if path == "sys/" {
        return Ok(Reply::data(system_mount_json()).with_data_at_top_level());
    }
    let mount = table
        .get(&path)
        .ok_or_else(|| ApiError::bad_request(format!("no matching mount at \"{path}\"")))?;
    Ok(Reply::data(mount.to_json()).with_data_at_top_level())
}

/// `POST sys/mounts/<path>`.
pub fn enable(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let fields = &call.fields;
    let path = normalize_path(call.param("path"));
    if path == "/" {
        return Err(ApiError::bad_request("a mount path is required"));
    }
    if is_reserved(&path) {
        return Err(ApiError::bad_request(format!(
            "cannot mount at \"{path}\": the path is reserved"
        )));
    }
    let mut options = fields.string_map("options").unwrap_or_default();
    let requested = fields.string("type").unwrap_or_default().to_string();
    let kind = match requested.as_str() {
        "kv-v2" => {
            options.insert("version".to_string(), "2".to_string());
            "kv"
        }
        "kv" if options.get("version").map(String::as_str) == Some("2") => "kv",
        "kv" | "kv-v1" | "generic" => {
            return Err(ApiError::bad_request(
                "KV version 1 is not supported; use version 2 (type \"kv-v2\", or type \"kv\" with options {\"version\":\"2\"})",
            ));
        }
        "" => {
            return Err(ApiError::bad_request(
                "the mount type is required (\"kv-v2\")",
            ));
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "secrets engine type \"{other}\" is not supported; kvsync mounts KV version 2 (\"kv-v2\") only"
            )));
        }
    };
    let mut table = MountTable::load(tx)?;
    if let Some(existing) = table
        .entries
        .iter()
        .find(|m| path.starts_with(m.path.as_str()) || m.path.starts_with(path.as_str()))
    {
        return Err(ApiError::bad_request(if existing.path == path {
            format!("existing mount at {path}")
        } else {
            format!("path is already in use at {}", existing.path)
        }));
    }
    let config = match fields.map("config") {
        Some(c) => MountConfig {
            default_lease_ttl: ttl(c.get("default_lease_ttl"))?,
            max_lease_ttl: ttl(c.get("max_lease_ttl"))?,
            force_no_cache: c
                .get("force_no_cache")
                .and_then(|v| {
                    v.as_bool()
                        .or_else(|| v.as_str().and_then(framework::parse_bool))
                })
                .unwrap_or(false),
        },
        None => MountConfig::default(),
    };
    let accessor = loop {
        let b = random_bytes::<4>();
        let candidate = format!("{kind}_{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3]);
        if !table.entries.iter().any(|m| m.accessor == candidate) {
            break candidate;
        }
    };
    table.entries.push(MountEntry {
        path,
        kind: kind.to_string(),
        accessor,
        uuid: crate::api::new_uuid(),
        description: fields.string("description").unwrap_or_default().to_string(),
        options,
        config,
        local: fields.bool("local").unwrap_or(false),
        seal_wrap: fields.bool("seal_wrap").unwrap_or(false),
        external_entropy_access: fields.bool("external_entropy_access").unwrap_or(false),
    });
    table.save(tx)?;
    Ok(Reply::no_content())
}

fn ttl(v: Option<&Value>) -> ApiResult<i64> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("lease TTLs must be whole seconds")),
        Some(Value::String(s)) if s == "system" || s.is_empty() => Ok(0),
        Some(Value::String(s)) => crate::time::parse_duration(s).map_err(ApiError::BadRequest),
        Some(_) => Err(ApiError::bad_request(
            "lease TTLs must be durations like \"1h\"",
        )),
    }
}

/// How many keys one unmount batch deletes.
const UNMOUNT_BATCH: u32 = 500;

/// `DELETE sys/mounts/<path>`.
pub fn disable(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let path = normalize_path(call.param("path"));
    if is_reserved(&path) {
        return Err(ApiError::bad_request(format!("cannot unmount \"{path}\"")));
    }
    let mut table = MountTable::load(tx)?;
    let Some(index) = table.entries.iter().position(|m| m.path == path) else {
        // Vault: "disabled the secrets engine (if it existed)".
        return Ok(Reply::no_content());
    };
    let mount = table.entries.remove(index);
    // What the disable causes elsewhere (secrets sync unsyncs and drops the
    // mount's associations: they keep their external names, so that needs
    // no KV data) is recorded here and done before this transaction commits.
    // The data goes first, in separate batches; the table entry last, in
    // this transaction, so an interrupted disable leaves a mount that a
    // second disable finishes.
    tx.record(Change::MountDisabled {
        accessor: mount.accessor.clone(),
    });
    let prefix = mount.storage_prefix();
    in_batches(tx.storage(), &prefix, UNMOUNT_BATCH, |batch, key| {
        batch.delete(format!("{prefix}{key}"));
        Ok(())
    })?;
    table.save(tx)?;
    Ok(Reply::no_content())
}

/// `GET sys/mounts/<path>/tune`: the TTLs in effect, the system defaults
/// where the mount sets none.
pub fn read_tune(tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
    let path = normalize_path(call.param("path"));
    let table = MountTable::load(tx)?;
    let mount = table
        .get(&path)
        .ok_or_else(|| ApiError::bad_request(format!("no mount entry found at \"{path}\"")))?;
    let effective = |ttl: i64, default: i64| if ttl == 0 { default } else { ttl };
    Ok(Reply::data(json!({
        "default_lease_ttl": effective(mount.config.default_lease_ttl, SYSTEM_DEFAULT_LEASE_TTL),
        "max_lease_ttl": effective(mount.config.max_lease_ttl, SYSTEM_MAX_LEASE_TTL),
        "force_no_cache": mount.config.force_no_cache,
        "description": mount.description,
        "options": mount.options,
    }))
    .with_data_at_top_level())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::env::Fakes;
    use crate::testing;

    fn call(fakes: &Fakes, method: &str, path: &str, body: Value) -> (u16, Value) {
        testing::call(&fakes.env(), method, path, &body)
    }

    #[test]
    fn a_mount_has_the_description_it_was_given() {
        let fakes = Fakes::default();
        assert_eq!(
            call(&fakes, "POST", "sys/mounts/a", json!({"type": "kv-v2"})).0,
            204
        );
        let body = json!({"type": "kv-v2", "description": "mine"});
        assert_eq!(call(&fakes, "POST", "sys/mounts/b", body).0, 204);
        let (_, a) = call(&fakes, "GET", "sys/mounts/a", Value::Null);
        assert_eq!(a["data"]["description"], "");
        let (_, b) = call(&fakes, "GET", "sys/mounts/b/tune", Value::Null);
        assert_eq!(b["data"]["description"], "mine");
    }

    #[test]
    fn tune_shows_the_ttls_in_effect() {
        let fakes = Fakes::default();
        let body = json!({"type": "kv-v2", "config": {"default_lease_ttl": "1h"}});
        assert_eq!(call(&fakes, "POST", "sys/mounts/a", body).0, 204);
        let (status, tune) = call(&fakes, "GET", "sys/mounts/a/tune", Value::Null);
        assert_eq!(status, 200);
        assert_eq!(tune["data"]["default_lease_ttl"], 3600);
        assert_eq!(tune["data"]["max_lease_ttl"], 2_764_800);
        assert_eq!(tune["max_lease_ttl"], 2_764_800);
        // The mount itself still shows what was set.
        let (_, mount) = call(&fakes, "GET", "sys/mounts/a", Value::Null);
        assert_eq!(mount["data"]["config"]["max_lease_ttl"], 0);
    }

    #[test]
    fn the_system_entry_is_vaults() {
        let fakes = Fakes::default();
        let (status, table) = call(&fakes, "GET", "sys/mounts", Value::Null);
        assert_eq!(status, 200);
        let sys = &table["data"]["sys/"];
        assert_eq!(sys["type"], "system");
        assert!(sys.get("deprecation_status").is_none());
        assert_eq!(
            sys["config"]["passthrough_request_headers"],
            json!(["Accept"])
        );
        assert_eq!(table["sys/"], *sys);
    }

    #[test]
    fn reads_warn_of_unknown_parameters_and_check_known_ones() {
        let fakes = Fakes::default();
        call(&fakes, "POST", "sys/mounts/a", json!({"type": "kv-v2"}));
        let warned = json!(["Endpoint ignored these unrecognized parameters: [bogus]"]);
        for path in [
            "sys/mounts?bogus=1",
            "sys/mounts/a?bogus=1",
            "sys/mounts/a/tune?bogus=1",
            "sys/internal/ui/mounts/a?bogus=1",
        ] {
            let (status, body) = call(&fakes, "GET", path, Value::Null);
            assert_eq!((status, &body["warnings"]), (200, &warned), "{path}");
        }
        // The mount's own fields are known (and coerced, as Vault does on every operation).
        let (status, body) = call(&fakes, "GET", "sys/mounts/a?type=kv", Value::Null);
        assert_eq!((status, &body["warnings"]), (200, &Value::Null));
        assert_eq!(
            call(&fakes, "GET", "sys/mounts/a?local=maybe", Value::Null).0,
            400
        );
    }
}
