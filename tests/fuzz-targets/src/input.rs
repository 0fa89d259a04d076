//! Building blocks of structured inputs: words the engine knows (so the
//! fuzzer reaches deep paths quickly) mixed with arbitrary text, and JSON.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

/// A word of `words` most of the time, else arbitrary text.
pub fn word(u: &mut Unstructured, words: &[&str]) -> Result<String> {
    if u.ratio(7u8, 8u8)? {
        Ok((*u.choose(words)?).to_string())
    } else {
        u.arbitrary()
    }
}

/// Up to `max` items of `item`.
pub fn list<T>(
    u: &mut Unstructured,
    max: usize,
    mut item: impl FnMut(&mut Unstructured) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(0..=max)?;
    (0..n).map(|_| item(u)).collect()
}

/// Object keys the engine's bodies use.
const KEYS: &[&str] = &[
    "type",
    "data",
    "options",
    "cas",
    "version",
    "versions",
    "max_versions",
    "cas_required",
    "delete_version_after",
    "custom_metadata",
    "description",
    "config",
    "default_lease_ttl",
    "max_lease_ttl",
    "mount",
    "secret_name",
    "granularity",
    "secret_name_template",
    "custom_tags",
    "tags_to_remove",
    "connection_details",
    "access_key_id",
    "secret_access_key",
    "region",
    "role_arn",
    "external_id",
    "key_vault_uri",
    "tenant_id",
    "client_id",
    "client_secret",
    "cloud",
    "credentials",
    "project_id",
    "access_token",
    "repository_owner",
    "repository_name",
    "secrets_location",
    "environment_name",
    "app_name",
    "installation_id",
    "team_id",
    "deployment_environments",
    "allowed_ipv4_addresses",
    "allowed_ipv6_addresses",
    "allowed_ports",
    "disable_strict_networking",
    "disabled",
    "queue_capacity",
    "policy",
    "policies",
    "rules",
    "paths",
    "path",
    "token",
    "accessor",
    "ttl",
    "num_uses",
    "renewable",
    "display_name",
    "meta",
    "no_parent",
    "explicit_max_ttl",
    "period",
    "role_name",
    "purge",
    "force",
    "list",
];

/// String values that mean something somewhere.
const STRINGS: &[&str] = &[
    "",
    "kv",
    "kv-v2",
    "2",
    "1",
    "0",
    "-1",
    "true",
    "false",
    "secret",
    "secret/",
    "app",
    "app/db",
    "secret-path",
    "secret-key",
    "in-mem",
    "aws-sm",
    "azure-kv",
    "gcp-sm",
    "gh",
    "vercel-project",
    "us-east-1",
    "10s",
    "1h",
    "768h",
    "-5s",
    "999999999999999999999h",
    "{{ .SecretPath }}",
    "{{ .SecretKey | uppercase }}",
    "{{ replace \"\" \"xx\" .SecretPath }}",
    "a/../b",
    "*",
    "+",
    "root",
    "default",
    "path \"*\" { capabilities = [\"read\"] }",
    "repository",
    "organization",
    "development",
    "10.0.0.0/8",
    "::1/128",
    "443",
];

/// A JSON value at most `depth` levels deep.
pub fn json(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let kinds = if depth == 0 { 4 } else { 6 };
    Ok(match u.int_in_range(0..=kinds)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Number(number(u)?),
        3 | 4 => Value::String(word(u, STRINGS)?),
        5 => Value::Array(list(u, 4, |u| json(u, depth - 1))?),
        _ => Value::Object(object(u, depth - 1)?),
    })
}

/// A JSON object at most `depth` levels deep below its values.
pub fn object(u: &mut Unstructured, depth: u32) -> Result<Map<String, Value>> {
    let mut map = Map::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let key = word(u, KEYS)?;
        let value = json(u, depth)?;
        map.insert(key, value);
    }
    Ok(map)
}

fn number(u: &mut Unstructured) -> Result<Number> {
    const EDGES: &[i64] = &[0, 1, -1, 2, 10, 100, i32::MAX as i64, i64::MAX, i64::MIN];
    Ok(match u.int_in_range(0..=3)? {
        0 => Number::from(*u.choose(EDGES)?),
        1 => Number::from(u.arbitrary::<i64>()?),
        2 => Number::from(u.arbitrary::<u64>()?),
        _ => Number::from_f64(u.arbitrary()?).unwrap_or_else(|| Number::from(0)),
    })
}
