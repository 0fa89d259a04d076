//! Endpoints as data, as Vault's `framework.Path`: a [`Path`] is a pattern,
//! a one-line description, its parameters and fields ([`FieldSpec`]s), the
//! operations it serves ([`Op`]: Vault's logical operations, each with its
//! handler), an optional existence check (create vs update), and the `sudo`
//! and `unauthenticated` flags policies read. A [`super::Backend`] lists its
//! paths; the router, the ACL step and API documents all read these tables.
//!
//! Pattern syntax (matched against the path relative to the backend's root):
//!
//! - a literal segment matches itself;
//! - `{name}` matches one segment, not empty;
//! - `{name*}` matches the rest of the path, possibly empty, slashes included;
//! - `{name+}` matches the rest of the path when it is not empty and does not
//!   end with `/` (a secret, not a folder); for a LIST request the `/` that
//!   the HTTP layer appends is not part of it.
//!
//! A `{name*}` or `{name+}` may be followed only by literal segments
//! (`mounts/{path*}/tune`). Matching allocates nothing: parameters are slices
//! of the request path ([`Params`]).

use crate::api::{LogicalRequest, Operation, Reply};
use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::router::Authorized;
use crate::storage::Tx;
use crate::sys::mounts::MountEntry;

use super::field::FieldSpec;
use super::parse::Fields;

/// Runs one operation of a path. It does not check the operation, the path
/// or the caller's rights: the router has.
pub type Handler = fn(&mut Tx<'_>, &Call<'_>) -> ApiResult<Reply>;

/// Whether the target of a POST/PUT exists (Vault's `ExistenceCheck`): if not,
/// the request is a `Create`, else an `Update`. It runs before the fields are
/// parsed (`call.fields` is empty).
pub type ExistenceCheck = fn(&mut Tx<'_>, &Call<'_>) -> ApiResult<bool>;

/// The field tables one request is parsed against (read in order; unused
/// slots are empty).
pub type FieldTables = [&'static [FieldSpec]; 4];

/// Where the body or query fields of an operation are declared. Every name
/// of the request data that the fields do not declare is warned of
/// (`Endpoint ignored these unrecognized parameters`), as Vault's framework
/// does on every path, also those that declare no field at all.
#[derive(Clone, Copy)]
pub enum Schema {
    /// The operation reads no field of the path's: the request data is
    /// neither coerced nor warned of.
    None,
    Fields(&'static [FieldSpec]),
    /// Fields that depend on the value of the path parameter `param` (the
    /// destination type): `tables` answers for one value (a 400 for a value it
    /// does not know). The parameter's `Check::OneOf` lists every value, so a
    /// document can show one path per value.
    ByParam {
        param: &'static str,
        tables: fn(&str) -> ApiResult<FieldTables>,
    },
}

impl Schema {
    /// The tables for a request with these path parameters.
    pub fn tables(&self, params: &Params<'_>) -> ApiResult<FieldTables> {
        match self {
            Schema::None => Ok([&[]; 4]),
            Schema::Fields(fields) => Ok([fields, &[], &[], &[]]),
            Schema::ByParam { param, tables } => tables(params.get(param).unwrap_or_default()),
        }
    }
}

/// One operation a path serves.
#[derive(Clone, Copy)]
pub struct Op {
    pub operation: Operation,
    /// Vault's OpenAPI `operationId` (`kv-v2-read`). `Create` and `Update`
    /// share one (the POST). On a path whose fields depend on a parameter
    /// (one document path per value), `{param}` stands for the value.
    pub id: &'static str,
    /// One line: what the operation does.
    pub summary: &'static str,
    /// The fields it reads; `None`: the path's.
    pub fields: Option<Schema>,
    /// The answers it documents instead of the usual ones of its operation
    /// (200 for reads and lists; 200 or 204 for writes and deletes), as
    /// (status or `default`, description): where the handler picks another
    /// status. Errors are documented apart.
    pub answers: &'static [(&'static str, &'static str)],
    handler: Handler,
}

/// An operation served by `handler`, reading the path's fields.
pub const fn op(
    operation: Operation,
    id: &'static str,
    summary: &'static str,
    handler: Handler,
) -> Op {
    Op {
        operation,
        id,
        summary,
        fields: None,
        answers: &[],
        handler,
    }
}

impl Op {
    /// The operation reads these fields instead of the path's.
    pub const fn fields(self, schema: Schema) -> Op {
        Op {
            fields: Some(schema),
            ..self
        }
    }

    /// The operation reads no field.
    pub const fn no_fields(self) -> Op {
        self.fields(Schema::None)
    }

    /// The operation answers these statuses on success (see [`Op::answers`]).
    pub const fn answers(self, answers: &'static [(&'static str, &'static str)]) -> Op {
        Op { answers, ..self }
    }

    /// Runs the handler. Only a request that went through the router's
    /// authorization step has an [`Authorized`].
    pub fn run(
        &self,
        _authorized: &Authorized,
        tx: &mut Tx<'_>,
        call: &Call<'_>,
    ) -> ApiResult<Reply> {
        (self.handler)(tx, call)
    }
}

/// One endpoint.
#[derive(Clone, Copy)]
pub struct Path {
    /// Relative to the backend's root; see the module documentation.
    pub pattern: &'static str,
    /// One line: what the path is for (Vault's `HelpSynopsis`).
    pub description: &'static str,
    /// The parameters of the pattern (`{name}`), described. A body or query
    /// field of the same name is ignored: the path's value wins.
    pub params: &'static [FieldSpec],
    /// The body or query fields of its operations, unless one declares its
    /// own; none by default (then any name in the request data is warned of).
    pub fields: Schema,
    pub operations: &'static [Op],
    /// Where a POST/PUT may create its target: `Create` when this finds none.
    pub existence_check: Option<ExistenceCheck>,
    /// Root-protected: the caller also needs `sudo` on it.
    pub sudo: bool,
    /// Served without a token.
    pub unauthenticated: bool,
    /// Authorized by any access under the mount the path names, not by a
    /// capability on the path itself (`sys/internal/ui/mounts/...`): the
    /// router's authorization step asks nothing, and the handler asks
    /// [`crate::authz::Authz::can_reach`] of the mount it finds. The host's
    /// early check leaves these paths alone.
    pub access_by_mount: bool,
}

impl Path {
    pub const fn new(
        pattern: &'static str,
        description: &'static str,
        operations: &'static [Op],
    ) -> Path {
        Path {
            pattern,
            description,
            params: &[],
            fields: Schema::Fields(&[]),
            operations,
            existence_check: None,
            sudo: false,
            unauthenticated: false,
            access_by_mount: false,
        }
    }

    pub const fn params(self, params: &'static [FieldSpec]) -> Path {
        Path { params, ..self }
    }

    pub const fn fields(self, fields: &'static [FieldSpec]) -> Path {
        self.schema(Schema::Fields(fields))
    }

    pub const fn schema(self, fields: Schema) -> Path {
        Path { fields, ..self }
    }

    pub const fn existence_check(self, check: ExistenceCheck) -> Path {
        Path {
            existence_check: Some(check),
            ..self
        }
    }

    pub const fn sudo(self) -> Path {
        Path { sudo: true, ..self }
    }

    pub const fn unauthenticated(self) -> Path {
        Path {
            unauthenticated: true,
            ..self
        }
    }

    pub const fn access_by_mount(self) -> Path {
        Path {
            access_by_mount: true,
            ..self
        }
    }

    /// The operation served for `operation`, if any.
    pub fn op(&self, operation: Operation) -> Option<&Op> {
        self.operations.iter().find(|o| o.operation == operation)
    }

    /// Whether the path serves the request's operation; a POST/PUT (`Update`)
    /// is served where the path creates or updates.
    pub fn serves(&self, operation: Operation) -> bool {
        self.operations
            .iter()
            .any(|o| o.operation == operation || (operation.is_write() && o.operation.is_write()))
    }

    /// The fields `op` reads.
    pub fn schema_of(&self, op: &Op) -> Schema {
        op.fields.unwrap_or(self.fields)
    }
}

/// The most parameters a pattern has.
pub const MAX_PARAMS: usize = 3;

/// The parameters of a matched path: names from the pattern, values sliced
/// from the request path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params<'a> {
    names: [&'static str; MAX_PARAMS],
    values: [&'a str; MAX_PARAMS],
    len: usize,
}

impl<'a> Params<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.names()
            .iter()
            .position(|n| *n == name)
            .and_then(|i| self.values.get(i).copied())
    }

    pub fn names(&self) -> &[&'static str] {
        self.names.get(..self.len).unwrap_or_default()
    }

    fn push(&mut self, name: &'static str, value: &'a str) -> Option<()> {
        *self.names.get_mut(self.len)? = name;
        *self.values.get_mut(self.len)? = value;
        self.len += 1;
        Some(())
    }
}

/// How a pattern segment matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Literal(&'static str),
    /// `{name}`.
    One(&'static str),
    /// `{name*}`.
    Rest(&'static str),
    /// `{name+}`.
    Leaf(&'static str),
}

impl Segment {
    pub fn parse(segment: &'static str) -> Segment {
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(inner) => Segment::parse_capture(inner),
            None => Segment::Literal(segment),
        }
    }

    /// A capture, from what is between its braces.
    fn parse_capture(inner: &'static str) -> Segment {
        if let Some(name) = inner.strip_suffix('*') {
            Segment::Rest(name)
        } else if let Some(name) = inner.strip_suffix('+') {
            Segment::Leaf(name)
        } else {
            Segment::One(inner)
        }
    }

    /// The parameter it captures, if any.
    pub fn param(self) -> Option<&'static str> {
        match self {
            Segment::Literal(_) => None,
            Segment::One(n) | Segment::Rest(n) | Segment::Leaf(n) => Some(n),
        }
    }
}

/// The segments of a pattern.
pub fn segments(pattern: &'static str) -> impl Iterator<Item = Segment> {
    pattern.split('/').map(Segment::parse)
}

/// Matches `path` (relative to the backend's root) against `pattern`; `list`
/// for a LIST request. See the module documentation for the syntax. The
/// literal text between captures is compared in one piece.
pub fn matches<'a>(pattern: &'static str, path: &'a str, list: bool) -> Option<Params<'a>> {
    // Most patterns of a table are told apart by their first letter.
    if let (Some(&p), Some(&r)) = (pattern.as_bytes().first(), path.as_bytes().first())
        && p != b'{'
        && p != r
    {
        return None;
    }
    let mut params = Params::default();
    let mut pattern = pattern;
    let mut rest = path;
    loop {
        let Some((literal, capture)) = split_at_byte(pattern, b'{') else {
            return (rest == pattern).then_some(params);
        };
        rest = rest.strip_prefix(literal)?;
        let (capture, after) = split_at_byte(capture, b'}')?;
        match Segment::parse_capture(capture) {
            Segment::One(name) => {
                let (value, more) = match split_at_byte(rest, b'/') {
                    Some((value, _)) => (value, rest.get(value.len()..).unwrap_or_default()),
                    None => (rest, ""),
                };
                if value.is_empty() {
                    return None;
                }
                params.push(name, value)?;
                rest = more;
                pattern = after;
            }
            // What follows a rest capture is a literal suffix.
            Segment::Rest(name) => {
                params.push(name, rest.strip_suffix(after)?)?;
                return Some(params);
            }
            Segment::Leaf(name) => {
                let value = rest.strip_suffix(after)?;
                let value = match list {
                    true => value.strip_suffix('/').unwrap_or(value),
                    false => value,
                };
                if value.is_empty() || value.ends_with('/') {
                    return None;
                }
                params.push(name, value)?;
                return Some(params);
            }
            Segment::Literal(_) => return None,
        }
    }
}

/// `s` split around the first `byte` (ASCII), which is dropped. A plain loop:
/// patterns and path segments are short, shorter than a search's set-up.
fn split_at_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    let at = s.bytes().position(|b| b == byte)?;
    Some((s.get(..at)?, s.get(at + 1..)?))
}

/// What a handler gets besides the transaction.
pub struct Call<'a> {
    pub env: Env<'a>,
    pub req: &'a LogicalRequest,
    /// The operation after the existence check.
    pub operation: Operation,
    pub params: Params<'a>,
    /// The request data coerced against the operation's fields.
    pub fields: Fields,
    /// The mount of a secrets engine's request.
    pub mount: Option<&'a MountEntry>,
}

impl<'a> Call<'a> {
    /// The value of a path parameter (`""` if the pattern has none of that name).
    pub fn param(&self, name: &str) -> &'a str {
        self.params.get(name).unwrap_or_default()
    }

    /// The mount a secrets engine serves the request for.
    pub fn mount(&self) -> ApiResult<&'a MountEntry> {
        self.mount.ok_or_else(|| {
            ApiError::Internal("a secrets-engine path was served without its mount".to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(
        pattern: &'static str,
        path: &'static str,
        list: bool,
    ) -> Option<Vec<(&'static str, &'static str)>> {
        matches(pattern, path, list)
            .map(|p| p.names().iter().map(|n| (*n, p.get(n).unwrap())).collect())
    }

    #[test]
    fn literals_and_segments() {
        assert_eq!(capture("config", "config", false), Some(vec![]));
        assert_eq!(capture("config", "config/", false), None);
        assert_eq!(capture("config", "configs", false), None);
        assert_eq!(capture("", "", false), Some(vec![]));
        assert_eq!(
            capture("destinations/{type}/{name}", "destinations/aws-sm/x", false),
            Some(vec![("type", "aws-sm"), ("name", "x")])
        );
        assert_eq!(
            capture("destinations/{type}/{name}", "destinations/aws-sm", false),
            None
        );
        assert_eq!(
            capture(
                "destinations/{type}/{name}",
                "destinations/aws-sm/x/y",
                false
            ),
            None
        );
        assert_eq!(
            capture("destinations/{type}/{name}", "destinations//x", false),
            None
        );
        assert_eq!(
            capture(
                "destinations/{type}/{name}/associations/set",
                "destinations/gh/r/associations/set",
                false
            ),
            Some(vec![("type", "gh"), ("name", "r")])
        );
    }

    #[test]
    fn rest_captures() {
        assert_eq!(
            capture("metadata/{path*}", "metadata/", true),
            Some(vec![("path", "")])
        );
        assert_eq!(
            capture("metadata/{path*}", "metadata/a/b/", true),
            Some(vec![("path", "a/b/")])
        );
        assert_eq!(capture("metadata/{path*}", "metadata", false), None);
        assert_eq!(
            capture("mounts/{path*}/tune", "mounts/a/b/tune", false),
            Some(vec![("path", "a/b")])
        );
        assert_eq!(
            capture("mounts/{path*}/tune", "mounts//tune", false),
            Some(vec![("path", "")])
        );
        assert_eq!(capture("mounts/{path*}/tune", "mounts/tune", false), None);
        assert_eq!(
            capture("mounts/{path*}/tune", "mounts/x/tuned", false),
            None
        );
        assert_eq!(
            capture(
                "associations/{mount}/{secret_name+}",
                "associations/kv/a/b",
                false
            ),
            Some(vec![("mount", "kv"), ("secret_name", "a/b")])
        );
    }

    #[test]
    fn leaf_captures_are_not_folders() {
        assert_eq!(
            capture("data/{path+}", "data/a/b", false),
            Some(vec![("path", "a/b")])
        );
        assert_eq!(capture("data/{path+}", "data/a/", false), None);
        assert_eq!(capture("data/{path+}", "data/", false), None);
        // A LIST path ends with the slash the HTTP layer appended.
        assert_eq!(
            capture("data/{path+}", "data/a/", true),
            Some(vec![("path", "a")])
        );
        assert_eq!(capture("data/{path+}", "data/", true), None);
    }
}
