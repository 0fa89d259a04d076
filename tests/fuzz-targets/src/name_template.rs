//! `name_template`: the `secret_name_template` parser and renderer, with
//! arbitrary secret names and keys, and the normalisation of the rendered
//! name to every destination type's character set.
//!
//! Invariants: nothing panics; a template the parser accepts renders names
//! no longer than [`MAX_NAME_CHARS`] characters from placeholders of up to
//! [`PLACEHOLDER_CHARS`] characters (the bound the parser promises).

use arbitrary::{Result, Unstructured};
use kvsync_component::sync::destinations::TYPES;
use kvsync_component::sync::names::template::{MAX_NAME_CHARS, PLACEHOLDER_CHARS};
use kvsync_component::sync::names::{Template, TemplateContext};

use crate::input::{list, word};

/// Pieces of templates: delimiters, fields, functions and literals.
const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{{- ",
    " -}}",
    "{{/*",
    "*/}}",
    " ",
    "|",
    "(",
    ")",
    "\"",
    "`",
    "\\",
    "\n",
    "\"x\"",
    "\"\"",
    "\"/\"",
    "`raw`",
    "\"\\u00e9\"",
    "\"\\x41\"",
    "0",
    "1",
    "3",
    "-1",
    "+2",
    "99999999999999999999",
    ".DestinationType",
    ".DestinationName",
    ".NamespacePath",
    ".NamespaceBaseName",
    ".NamespaceID",
    ".MountPath",
    ".MountBaseName",
    ".MountAccessor",
    ".SecretPath",
    ".SecretBaseName",
    ".SecretKey",
    ".Unknown",
    "uppercase",
    "lowercase",
    "replace",
    "truncate",
    "truncate_sha256",
    "sha256",
    "base64",
    "random",
    "uuid",
    "unix_time",
    "printf",
    "if",
    "end",
    "$x",
    ":=",
    "kv_",
    "-",
];

/// Placeholder values: plain, slashed, non-ASCII, empty.
const VALUES: &[&str] = &[
    "",
    "app",
    "app/db",
    "path/to/kv1/",
    "ns1/ns2/",
    "root",
    "kv_1234abcd",
    "in-mem",
    "Ünïcödé/名前",
    "a b\tc",
    "../..",
    "-leading",
    "0digit",
];

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok((source, ctx)) = input(&mut u) else {
        return;
    };
    let Ok(template) = Template::parse(&source) else {
        return;
    };
    let _ = template.uses("SecretKey");
    let Ok(name) = template.render(&ctx) else {
        return;
    };
    if placeholders_within_bound(&ctx) {
        let chars = name.chars().count();
        assert!(
            chars <= MAX_NAME_CHARS,
            "{source:?} rendered {chars} characters from placeholders of at most {PLACEHOLDER_CHARS}"
        );
    }
    for kind in TYPES {
        let _ = kind.name_rule.apply(&name);
    }
}

fn input(u: &mut Unstructured) -> Result<(String, TemplateContext)> {
    let source = if u.ratio(3u8, 4u8)? {
        list(u, 24, |u| word(u, TOKENS))?.concat()
    } else {
        u.arbitrary()?
    };
    let ctx = TemplateContext {
        destination_type: word(u, VALUES)?,
        destination_name: word(u, VALUES)?,
        namespace_path: word(u, VALUES)?,
        namespace_base_name: word(u, VALUES)?,
        namespace_id: word(u, VALUES)?,
        mount_path: word(u, VALUES)?,
        mount_base_name: word(u, VALUES)?,
        mount_accessor: word(u, VALUES)?,
        secret_path: word(u, VALUES)?,
        secret_base_name: word(u, VALUES)?,
        secret_key: if u.arbitrary()? {
            Some(word(u, VALUES)?)
        } else {
            None
        },
    };
    Ok((source, ctx))
}

fn placeholders_within_bound(ctx: &TemplateContext) -> bool {
    [
        &ctx.destination_type,
        &ctx.destination_name,
        &ctx.namespace_path,
        &ctx.namespace_base_name,
        &ctx.namespace_id,
        &ctx.mount_path,
        &ctx.mount_base_name,
        &ctx.mount_accessor,
        &ctx.secret_path,
        &ctx.secret_base_name,
    ]
    .into_iter()
    .chain(&ctx.secret_key)
    .all(|v| v.chars().count() <= PLACEHOLDER_CHARS)
}
