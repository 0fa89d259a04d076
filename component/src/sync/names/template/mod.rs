//! The `secret_name_template` language: the deterministic part of Go's
//! `text/template` together with the functions of Vault's `sdk/helper/template`.
//!
//! Grammar (`{{` / `}}` delimit actions; everything else is literal text):
//!
//! ```text
//! template  := ( text | action | comment )*
//! action    := "{{" ["- "] pipeline [" -"] "}}"      trim markers as in Go
//! comment   := "{{" ["- "] "/*" ... "*/" [" -"] "}}"
//! pipeline  := command ( "|" command )*              a piped value becomes the LAST argument
//! command   := FUNC operand*  |  operand
//! operand   := FIELD | STRING | INT | "(" pipeline ")" | FUNC   (a bare FUNC is called without arguments)
//! FIELD     := .DestinationType | .DestinationName | .NamespacePath | .NamespaceBaseName
//!            | .NamespaceID | .MountPath | .MountBaseName | .MountAccessor
//!            | .SecretPath | .SecretBaseName | .SecretKey
//! STRING    := "..." (Go escapes) | `raw`
//! INT       := [+-]digits
//! FUNC      := uppercase | lowercase | replace | truncate | truncate_sha256 | sha256 | base64
//! ```
//!
//! Every value is statically a string or an integer (integers only come from
//! literals), so arity and type errors are all found by [`Template::parse`];
//! the only render error is `.SecretKey` without secret-key granularity.
//!
//! Bounds (Vault's functions chain freely, and `replace ""` inserts its
//! replacement between every two characters, so a few stages multiply a
//! name's length many times over): a template is at most
//! [`MAX_SOURCE_LEN`] bytes with parentheses nested at most [`MAX_NESTING`]
//! deep; [`Template::parse`] refuses one that could render more than
//! [`MAX_NAME_CHARS`] characters from placeholders of up to
//! [`PLACEHOLDER_CHARS`] characters each; and while rendering, no value may
//! grow past [`MAX_VALUE_BYTES`] (longer placeholders than that assumption),
//! which is a render error. So every template renders in bounded time and
//! memory.
//!
//! Deviations from Go/Vault: a `}}` outside an action is an error (Go prints
//! it); `truncate` and `truncate_sha256` count characters, not bytes (Go may
//! split a UTF-8 sequence); case mapping is per character; `random`, `uuid`,
//! `unix_time`, `unix_time_millis` and `timestamp` are refused (external
//! names must be the same at every sync), as are Go's control structures,
//! variables and builtin functions.
//!
//! The code follows the stages: [`lexer`] splits actions into tokens,
//! [`parser`] builds and type-checks the tree, [`functions`] holds what a
//! pipeline may call, [`render`] evaluates a tree over a [`TemplateContext`].

mod functions;
mod lexer;
mod parser;
mod render;

#[cfg(test)]
mod tests;

use lexer::Lexer;
use parser::Node;

/// The longest template accepted (bytes).
pub const MAX_SOURCE_LEN: usize = 4096;
/// How deep parentheses may nest.
pub const MAX_NESTING: usize = 32;
/// The longest name a template may be able to produce from placeholders of
/// up to [`PLACEHOLDER_CHARS`] characters.
pub const MAX_NAME_CHARS: usize = 16_384;
/// The placeholder length [`MAX_NAME_CHARS`] is judged with: a typical
/// length, so that usual templates (a path whose slashes become the mount
/// accessor) pass; longer values are bounded while rendering.
pub const PLACEHOLDER_CHARS: usize = 64;
/// The largest value (bytes) any step of a rendering may produce.
pub const MAX_VALUE_BYTES: usize = 65_536;

/// The values a template can refer to (the placeholders Vault documents).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateContext {
    pub destination_type: String,
    pub destination_name: String,
    /// `ns1/ns2/`; empty for the root namespace.
    pub namespace_path: String,
    pub namespace_base_name: String,
    /// `root` for the root namespace.
    pub namespace_id: String,
    /// With a trailing slash: `path/to/kv1/`.
    pub mount_path: String,
    pub mount_base_name: String,
    pub mount_accessor: String,
    pub secret_path: String,
    pub secret_base_name: String,
    /// Only with `secret-key` granularity.
    pub secret_key: Option<String>,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

impl Template {
    /// Parses `source`; syntax errors, unknown fields and unknown functions
    /// are errors, and so are templates beyond the bounds (module docs).
    pub fn parse(source: &str) -> Result<Template, String> {
        if source.is_empty() {
            return Err("the template is empty".to_string());
        }
        if source.len() > MAX_SOURCE_LEN {
            return Err(format!(
                "the template is {} bytes long; at most {MAX_SOURCE_LEN} are allowed",
                source.len()
            ));
        }
        let nodes = Lexer { src: source }.template()?;
        let longest = nodes
            .iter()
            .map(|node| match node {
                Node::Text(text) => text.chars().count(),
                Node::Action(expr) => expr.max_chars(PLACEHOLDER_CHARS),
            })
            .fold(0, usize::saturating_add);
        if longest > MAX_NAME_CHARS {
            return Err(format!(
                "the template can produce names of up to {longest} characters from placeholders of \
                 {PLACEHOLDER_CHARS} characters; at most {MAX_NAME_CHARS} are allowed (replace with \
                 an empty pattern inserts its replacement between every two characters)"
            ));
        }
        Ok(Template {
            source: source.to_string(),
            nodes,
        })
    }

    /// The template text as given to [`Template::parse`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template refers to the field `name` (e.g. `SecretKey`; a leading dot is accepted).
    pub fn uses(&self, name: &str) -> bool {
        let Some(field) = Field::from_name(name.strip_prefix('.').unwrap_or(name)) else {
            return false;
        };
        self.nodes.iter().any(|node| match node {
            Node::Text(_) => false,
            Node::Action(expr) => expr.uses(field),
        })
    }
}

/// The fields a template refers to (`.SecretPath`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    DestinationType,
    DestinationName,
    NamespacePath,
    NamespaceBaseName,
    NamespaceId,
    MountPath,
    MountBaseName,
    MountAccessor,
    SecretPath,
    SecretBaseName,
    SecretKey,
}

const FIELDS: [(&str, Field); 11] = [
    ("DestinationType", Field::DestinationType),
    ("DestinationName", Field::DestinationName),
    ("NamespacePath", Field::NamespacePath),
    ("NamespaceBaseName", Field::NamespaceBaseName),
    ("NamespaceID", Field::NamespaceId),
    ("MountPath", Field::MountPath),
    ("MountBaseName", Field::MountBaseName),
    ("MountAccessor", Field::MountAccessor),
    ("SecretPath", Field::SecretPath),
    ("SecretBaseName", Field::SecretBaseName),
    ("SecretKey", Field::SecretKey),
];

/// The item a name table gives `name`.
fn by_name<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, item)| *item)
}

/// The name a name table gives `item`.
fn name_of<T: PartialEq>(table: &[(&'static str, T)], item: &T) -> &'static str {
    table
        .iter()
        .find(|(_, i)| i == item)
        .map_or("", |(n, _)| *n)
}

impl Field {
    fn from_name(name: &str) -> Option<Field> {
        by_name(&FIELDS, name)
    }

    fn name(self) -> &'static str {
        name_of(&FIELDS, &self)
    }

    /// `None` only for `.SecretKey` outside secret-key granularity.
    fn value(self, ctx: &TemplateContext) -> Option<&str> {
        Some(match self {
            Field::DestinationType => &ctx.destination_type,
            Field::DestinationName => &ctx.destination_name,
            Field::NamespacePath => &ctx.namespace_path,
            Field::NamespaceBaseName => &ctx.namespace_base_name,
            Field::NamespaceId => &ctx.namespace_id,
            Field::MountPath => &ctx.mount_path,
            Field::MountBaseName => &ctx.mount_base_name,
            Field::MountAccessor => &ctx.mount_accessor,
            Field::SecretPath => &ctx.secret_path,
            Field::SecretBaseName => &ctx.secret_base_name,
            Field::SecretKey => return ctx.secret_key.as_deref(),
        })
    }
}

/// `at column 4` (single-line templates) or `at line 2, column 4`.
fn location(src: &str, at: usize) -> String {
    let before = src.get(..at).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    if src.contains('\n') {
        format!("at line {line}, column {column}")
    } else {
        format!("at column {column}")
    }
}
