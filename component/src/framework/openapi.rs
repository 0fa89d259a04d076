//! The OpenAPI 3.0.2 document of the API (`sys/internal/specs/openapi`),
//! built from nothing but the path tables the router serves: every operation
//! of every table appears, and nothing else can.
//!
//! It follows the conventions of Vault's own document, so that client
//! generators and API explorers written for Vault read it:
//!
//! - paths are below `/v1/`; a pattern's captures are path parameters
//!   (`data/{path*}` is `data/{path}`), described by the path's parameter specs;
//! - a secrets engine's paths appear once per mount (`/secret/data/{path}`),
//!   or once under a mount-path parameter (`/{kv_v2_mount_path}/data/{path}`);
//! - a LIST is a `get` of the path ending in `/` with the required query
//!   parameter `list=true`; a read is a `get` of the path without it;
//! - POST serves create and update alike, marked `x-vault-createSupported`
//!   where an existence check tells them apart; PATCH takes a JSON merge
//!   patch; HEAD is Vault's header operation;
//! - a path whose fields depend on a parameter (the destination type) is one
//!   document path per value of it, the value written into the operation ids;
//! - the fields of reads, lists and deletes are query parameters (those a
//!   query string can carry: maps are left out), those of writes a JSON body
//!   whose schema is in `components.schemas`, named after the operation id;
//! - field types as Vault writes them: durations are strings of format
//!   `duration`, maps objects of format `map` or `kvpairs`; sensitive fields
//!   carry `x-vault-displayAttrs.sensitive`;
//! - `x-vault-sudo` and `x-vault-unauthenticated` as the paths are flagged;
//! - responses: the operation's successes (200 for reads; 200 or 204 for
//!   writes and deletes, 200 when warnings come with the answer; or what the
//!   operation declares), then the errors it may answer: 400 always, 403
//!   unless served without a token, 404 where a parameter or a mount names
//!   what may not exist and for every read, list and delete, 405 where a
//!   parameter may hold slashes (the rest of the path can then name another
//!   endpoint) and for a LIST of a path that serves no read (a GET without
//!   `list=true`), 415 for PATCH.
//!
//! The output is deterministic: objects are `serde_json::Map`, which keeps
//! its keys sorted (the workspace does not enable `preserve_order`), and
//! arrays follow the order of the tables.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use crate::api::Operation;

use super::backend::Backend;
use super::field::{Check, FieldSpec, FieldType, Preset};
use super::parse::parse_bool;
use super::path::{Op, Path, Schema};

/// The OpenAPI version written, Vault's.
pub const OPENAPI_VERSION: &str = "3.0.2";

/// Where the paths of the secrets engine (the backend with an empty root)
/// appear.
pub enum Mounts<'a> {
    /// Once, under a path parameter (Vault's `generic_mount_paths`).
    Generic {
        /// The parameter's name (`kv_v2_mount_path`).
        param: &'static str,
        /// Its documented default: a mount path without slashes.
        default: &'static str,
    },
    /// Once per mount, under its path (`secret/`, with the trailing slash).
    /// With several mounts, operation ids end in the mount's path
    /// (`kv-v2-read-secret`) so that they stay unique.
    At(&'a [String]),
}

/// What the document says of itself.
pub struct Info<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub version: &'a str,
}

/// The document of `backends`.
pub fn document(backends: &[&Backend], mounts: &Mounts, info: &Info) -> Value {
    let mut doc = Doc::default();
    for backend in backends {
        if !backend.root.is_empty() {
            let prefix = Prefix {
                path: format!("/{}", backend.root),
                param: None,
                id_suffix: String::new(),
            };
            doc.backend(backend, &prefix);
            continue;
        }
        match mounts {
            Mounts::Generic { param, default } => {
                let prefix = Prefix {
                    path: format!("/{{{param}}}/"),
                    param: Some(mount_param(param, default)),
                    id_suffix: String::new(),
                };
                doc.backend(backend, &prefix);
            }
            Mounts::At(paths) => {
                let mut suffixes: Vec<String> = Vec::new();
                for mount in *paths {
                    let id_suffix = match paths.len() {
                        1 => String::new(),
                        _ => unique(&mut suffixes, format!("-{}", slug(mount))),
                    };
                    let prefix = Prefix {
                        path: format!("/{}", utf8_percent_encode(mount, MOUNT_PATH)),
                        param: None,
                        id_suffix,
                    };
                    doc.backend(backend, &prefix);
                }
            }
        }
    }
    json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": info.title,
            "description": info.description,
            "version": info.version,
        },
        "paths": doc.paths,
        "components": { "schemas": doc.schemas },
    })
}

/// What a mount path keeps unencoded in a document path.
const MOUNT_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// `secret/a b/` → `secret-a-b`: lower-case letters, digits and dashes.
fn slug(mount: &str) -> String {
    let mut out = String::new();
    for c in mount.trim_matches('/').chars() {
        match c.is_ascii_alphanumeric() {
            true => out.push(c.to_ascii_lowercase()),
            false if !out.ends_with('-') => out.push('-'),
            false => {}
        }
    }
    out
}

/// `candidate`, or with a counter when `used` has it; recorded in `used`.
fn unique(used: &mut Vec<String>, candidate: String) -> String {
    let mut out = candidate.clone();
    let mut n = 2;
    while used.contains(&out) {
        out = format!("{candidate}-{n}");
        n += 1;
    }
    used.push(out.clone());
    out
}

/// The mount-path parameter of generic mount paths.
fn mount_param(name: &str, default: &str) -> Value {
    json!({
        "name": name,
        "description": "Path that the backend was mounted at",
        "in": "path",
        "required": true,
        "schema": { "type": "string", "default": default },
    })
}

/// Where one backend's paths go in the document.
struct Prefix {
    /// Starts and ends with `/`.
    path: String,
    /// A path parameter the prefix holds.
    param: Option<Value>,
    /// Appended to every operation id.
    id_suffix: String,
}

#[derive(Default)]
struct Doc {
    paths: Map<String, Value>,
    schemas: Map<String, Value>,
}

/// One path of a table as the document shows it: the pattern with the
/// parameter that selects its fields replaced by one of its values.
struct Expansion<'p> {
    path: &'p Path,
    pattern: String,
    /// The parameter replaced, and its value.
    value: Option<(&'static str, &'static str)>,
}

impl Expansion<'_> {
    fn id(&self, op: &Op) -> String {
        match self.value {
            Some((param, value)) => op.id.replace(&format!("{{{param}}}"), value),
            None => op.id.to_string(),
        }
    }

    /// The field tables of `op`, in the order the parser reads them.
    fn tables(&self, op: &Op) -> Vec<&'static [FieldSpec]> {
        match self.path.schema_of(op) {
            Schema::None => Vec::new(),
            Schema::Fields(fields) => vec![fields],
            Schema::ByParam { tables, .. } => self
                .value
                .and_then(|(_, value)| tables(value).ok())
                .map(|t| t.to_vec())
                .unwrap_or_default(),
        }
    }

    /// The fields of `op`: the first declaration of each name, as the parser
    /// finds it.
    fn fields(&self, op: &Op) -> Vec<&'static FieldSpec> {
        let mut out: Vec<&'static FieldSpec> = Vec::new();
        for field in self.tables(op).into_iter().flatten() {
            if !out.iter().any(|f| f.name == field.name) {
                out.push(field);
            }
        }
        out
    }
}

/// The paths of the document that `path` gives: one, or one per value of
/// the parameter its fields depend on.
fn expansions(path: &Path) -> Vec<Expansion<'_>> {
    let by_param = std::iter::once(path.fields)
        .chain(path.operations.iter().filter_map(|o| o.fields))
        .find_map(|schema| match schema {
            Schema::ByParam { param, .. } => Some(param),
            _ => None,
        });
    let values = by_param.and_then(|param| {
        path.params
            .iter()
            .find(|p| p.name == param)
            .and_then(|p| match p.check {
                Check::OneOf(values) => Some((param, values)),
                _ => None,
            })
    });
    match values {
        Some((param, values)) => values
            .iter()
            .map(|value| Expansion {
                path,
                pattern: path.pattern.replace(&format!("{{{param}}}"), value),
                value: Some((param, value)),
            })
            .collect(),
        None => vec![Expansion {
            path,
            pattern: path.pattern.to_string(),
            value: None,
        }],
    }
}

/// The names of a pattern's captures, in order, and the pattern as a
/// document path (`{name*}` and `{name+}` as `{name}`).
fn captures(pattern: &str) -> (Vec<&str>, String) {
    let mut names = Vec::new();
    let mut path = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some((before, after)) = rest.split_once('{') {
        path.push_str(before);
        let Some((inner, more)) = after.split_once('}') else {
            path.push('{');
            rest = after;
            break;
        };
        let name = inner.trim_end_matches(['*', '+']);
        names.push(name);
        path.push('{');
        path.push_str(name);
        path.push('}');
        rest = more;
    }
    path.push_str(rest);
    (names, path)
}

impl Doc {
    fn backend(&mut self, backend: &Backend, prefix: &Prefix) {
        let tag = match backend.root {
            "" => "secrets",
            root if root.starts_with("auth/") => "auth",
            _ => "system",
        };
        for path in backend.paths {
            for expansion in expansions(path) {
                self.path(backend, prefix, tag, &expansion);
            }
        }
    }

    fn path(&mut self, backend: &Backend, prefix: &Prefix, tag: &str, x: &Expansion) {
        let (names, pattern) = captures(&x.pattern);
        let full = format!("{}{pattern}", prefix.path);
        // A backend's root answers with or without its slash.
        let trim = backend.ignore_trailing_slashes || x.pattern.is_empty();
        let read_key = match trim && full.len() > 1 {
            true => full.trim_end_matches('/').to_string(),
            false => full.clone(),
        };
        let list_key = match full.ends_with('/') {
            true => full.clone(),
            false => format!("{full}/"),
        };
        let mut parameters: Vec<Value> = names
            .iter()
            .filter_map(|name| x.path.params.iter().find(|p| p.name == *name))
            .map(|spec| {
                json!({
                    "name": spec.name,
                    "description": spec.description,
                    "in": "path",
                    "required": true,
                    "schema": field_schema(spec),
                })
            })
            .collect();
        parameters.extend(prefix.param.clone());
        let rest_capture = x.path.pattern.contains("*}") || x.path.pattern.contains("+}");
        let facts = Facts {
            tag,
            has_params: !parameters.is_empty(),
            rest_capture,
            secrets_engine: backend.root.is_empty(),
            unauthenticated: x.path.unauthenticated,
            reads: x.path.op(Operation::Read).is_some(),
        };
        for op in x.path.operations {
            // Create and update share the POST; the update describes it.
            if op.operation == Operation::Create && x.path.op(Operation::Update).is_some() {
                continue;
            }
            let (key, method) = match op.operation {
                Operation::Read => (&read_key, "get"),
                Operation::List => (&list_key, "get"),
                Operation::Create | Operation::Update => (&read_key, "post"),
                Operation::Patch => (&read_key, "patch"),
                Operation::Delete => (&read_key, "delete"),
                Operation::Header => (&read_key, "head"),
            };
            let operation = self.operation(x, op, &prefix.id_suffix, &facts);
            let item = self
                .paths
                .entry(key.clone())
                .or_insert_with(|| path_item(x.path, &parameters, key == &read_key));
            if let Value::Object(item) = item {
                item.insert(method.to_string(), operation);
            }
        }
    }

    fn operation(&mut self, x: &Expansion, op: &Op, id_suffix: &str, facts: &Facts) -> Value {
        let id = x.id(op);
        let mut operation = Map::new();
        operation.insert("operationId".into(), json!(format!("{id}{id_suffix}")));
        operation.insert("summary".into(), json!(op.summary));
        operation.insert("tags".into(), json!([facts.tag]));
        let fields = x.fields(op);
        let mut query = Vec::new();
        if op.operation == Operation::List {
            query.push(json!({
                "name": "list",
                "description": "Must be set to `true`",
                "in": "query",
                "required": true,
                "schema": { "type": "string", "enum": ["true"] },
            }));
        }
        match op.operation {
            Operation::Create | Operation::Update | Operation::Patch => {
                if !fields.is_empty() {
                    let media = match op.operation {
                        Operation::Patch => "application/merge-patch+json",
                        _ => "application/json",
                    };
                    let name = format!("{}Request", pascal(&id));
                    let required = fields.iter().any(|f| f.required);
                    self.schemas
                        .entry(name.clone())
                        .or_insert_with(|| body_schema(&fields));
                    operation.insert(
                        "requestBody".into(),
                        json!({
                            "required": required,
                            "content": { media: {
                                "schema": { "$ref": format!("#/components/schemas/{name}") },
                            }},
                        }),
                    );
                }
            }
            Operation::Read | Operation::List | Operation::Delete | Operation::Header => {
                query.extend(fields.iter().filter(|f| in_query(f.ty)).map(|f| {
                    let mut p = Map::new();
                    p.insert("name".into(), json!(f.name));
                    p.insert("description".into(), json!(f.description));
                    p.insert("in".into(), json!("query"));
                    if f.required {
                        p.insert("required".into(), json!(true));
                    }
                    p.insert("schema".into(), Value::Object(field_schema(f)));
                    Value::Object(p)
                }));
            }
        }
        if !query.is_empty() {
            operation.insert("parameters".into(), Value::Array(query));
        }
        operation.insert("responses".into(), Value::Object(responses(op, facts)));
        Value::Object(operation)
    }
}

/// What decides the documented errors of a path's operations.
struct Facts<'a> {
    tag: &'a str,
    has_params: bool,
    rest_capture: bool,
    secrets_engine: bool,
    unauthenticated: bool,
    /// The path serves reads (a GET without `list=true`).
    reads: bool,
}

/// A path item without its operations. The flags that concern writes stay
/// on the path that is written (not its list twin).
fn path_item(path: &Path, parameters: &[Value], written: bool) -> Value {
    let mut item = Map::new();
    item.insert("description".into(), json!(path.description));
    if !parameters.is_empty() {
        item.insert("parameters".into(), json!(parameters));
    }
    if written && path.existence_check.is_some() {
        item.insert("x-vault-createSupported".into(), json!(true));
    }
    if path.sudo {
        item.insert("x-vault-sudo".into(), json!(true));
    }
    if path.unauthenticated {
        item.insert("x-vault-unauthenticated".into(), json!(true));
    }
    Value::Object(item)
}

fn responses(op: &Op, facts: &Facts) -> Map<String, Value> {
    let mut out = Map::new();
    let mut add = |status: &str, description: &str| {
        out.insert(status.to_string(), json!({ "description": description }));
    };
    let read_like = matches!(
        op.operation,
        Operation::Read | Operation::List | Operation::Header
    );
    if !op.answers.is_empty() {
        for (status, description) in op.answers {
            add(status, description);
        }
    } else if read_like {
        add("200", "OK");
    } else {
        add("200", "OK: the answer has data or warnings");
        add("204", "No Content");
    }
    add(
        "400",
        "The request is invalid: the errors say what to change",
    );
    if !facts.unauthenticated {
        add(
            "403",
            "Permission denied: no token, an invalid token, or the token's policies refuse it",
        );
    }
    if facts.has_params || facts.secrets_engine || read_like || op.operation == Operation::Delete {
        add("404", "Not found");
    }
    if facts.rest_capture {
        add(
            "405",
            "The path with this parameter names an endpoint that does not serve the method",
        );
    } else if op.operation == Operation::List && !facts.reads {
        add(
            "405",
            "Without list=true the GET is a read, which the path does not serve",
        );
    }
    if op.operation == Operation::Patch {
        add(
            "415",
            "The request's content type is not application/merge-patch+json",
        );
    }
    out
}

/// Whether a query string can carry a field of this type.
fn in_query(ty: FieldType) -> bool {
    !matches!(ty, FieldType::KvPairs | FieldType::Map)
}

/// The schema of a request body.
fn body_schema(fields: &[&FieldSpec]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| (f.name.to_string(), Value::Object(field_schema(f))))
        .collect();
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), json!(required));
    }
    Value::Object(schema)
}

/// The schema of one field, as Vault writes its types.
fn field_schema(spec: &FieldSpec) -> Map<String, Value> {
    let (ty, format, items) = match spec.ty {
        FieldType::Bool => ("boolean", None, None),
        FieldType::Int => ("integer", None, None),
        FieldType::Float => ("number", None, None),
        FieldType::String => ("string", None, None),
        FieldType::Duration => ("string", Some("duration"), None),
        FieldType::CommaStringSlice | FieldType::StringSlice => ("array", None, Some("string")),
        FieldType::CommaIntSlice => ("array", None, Some("integer")),
        FieldType::KvPairs => ("object", Some("kvpairs"), None),
        FieldType::Map => ("object", Some("map"), None),
    };
    // What the check says of one value: on the field, or on each item.
    let mut value = Map::new();
    value.insert("type".into(), json!(items.unwrap_or(ty)));
    match spec.check {
        Check::OneOf(values) => {
            value.insert("enum".into(), json!(values));
        }
        Check::MaxLen(n) if items.unwrap_or(ty) == "string" => {
            value.insert("maxLength".into(), json!(n));
        }
        Check::Positive if items.unwrap_or(ty) == "integer" => {
            // Zero means unset.
            value.insert("minimum".into(), json!(0));
        }
        Check::HttpUrl if format.is_none() => {
            value.insert("format".into(), json!("uri"));
        }
        _ => {}
    }
    let mut schema = match items {
        Some(_) => {
            let mut schema = Map::new();
            schema.insert("type".into(), json!(ty));
            schema.insert("items".into(), Value::Object(value));
            schema
        }
        None => value,
    };
    if let Some(format) = format {
        schema.insert("format".into(), json!(format));
    }
    if !spec.description.is_empty() {
        schema.insert("description".into(), json!(spec.description));
    }
    if let Some(default) = default_value(spec) {
        schema.insert("default".into(), default);
    }
    if spec.sensitive {
        schema.insert("x-vault-displayAttrs".into(), json!({ "sensitive": true }));
    }
    schema
}

/// A field's default in the field's documented type.
fn default_value(spec: &FieldSpec) -> Option<Value> {
    match (spec.default, spec.ty) {
        (Preset::None, _) => None,
        (Preset::Int(n), FieldType::Int) => Some(json!(n)),
        (Preset::Int(n), FieldType::Duration) => Some(json!(format!("{n}s"))),
        (Preset::Int(n), FieldType::String) => Some(json!(n.to_string())),
        (Preset::Str(s), FieldType::String | FieldType::Duration) => Some(json!(s)),
        (Preset::Str(s), FieldType::Bool) => parse_bool(s).map(Value::from),
        _ => None,
    }
}

/// `system-read-sync-config` → `SystemReadSyncConfig`.
fn pascal(id: &str) -> String {
    id.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .flat_map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_become_path_parameters() {
        assert_eq!(
            captures("mounts/{path*}/tune"),
            (vec!["path"], "mounts/{path}/tune".to_string())
        );
        assert_eq!(
            captures("associations/{mount}/{secret_name+}"),
            (
                vec!["mount", "secret_name"],
                "associations/{mount}/{secret_name}".to_string()
            )
        );
        assert_eq!(captures("config"), (vec![], "config".to_string()));
    }

    #[test]
    fn names_and_slugs() {
        assert_eq!(pascal("kv-v2-read"), "KvV2Read");
        assert_eq!(
            pascal("system-read-sync-associations-mount-secret_name"),
            "SystemReadSyncAssociationsMountSecretName"
        );
        assert_eq!(slug("team a/kv/"), "team-a-kv");
        let mut used = Vec::new();
        assert_eq!(unique(&mut used, "-a-b".into()), "-a-b");
        assert_eq!(unique(&mut used, "-a-b".into()), "-a-b-2");
    }

    #[test]
    fn field_types_as_vault_writes_them() {
        let ttl = FieldSpec::new("ttl", FieldType::Duration)
            .default(Preset::Int(3600))
            .check(Check::Positive)
            .describe("TTL.");
        assert_eq!(
            Value::Object(field_schema(&ttl)),
            json!({"type": "string", "format": "duration", "description": "TTL.", "default": "3600s"})
        );
        let kinds = FieldSpec::new("kinds", FieldType::CommaStringSlice)
            .check(Check::OneOf(&["a", "b"]))
            .sensitive();
        assert_eq!(
            Value::Object(field_schema(&kinds)),
            json!({"type": "array", "items": {"type": "string", "enum": ["a", "b"]},
                   "x-vault-displayAttrs": {"sensitive": true}})
        );
        let tags = FieldSpec::new("tags", FieldType::KvPairs);
        assert_eq!(
            Value::Object(field_schema(&tags)),
            json!({"type": "object", "format": "kvpairs"})
        );
    }
}
