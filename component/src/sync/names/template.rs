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
//! Deviations from Go/Vault: a `}}` outside an action is an error (Go prints
//! it); `truncate` and `truncate_sha256` count characters, not bytes (Go may
//! split a UTF-8 sequence); case mapping is per character; `random`, `uuid`,
//! `unix_time`, `unix_time_millis` and `timestamp` are refused (external
//! names must be the same at every sync), as are Go's control structures,
//! variables and builtin functions.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

/// The values a template can refer to (Vault's §5.2 placeholders).
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
    /// Parses `source`; syntax errors, unknown fields and unknown functions are errors.
    pub fn parse(source: &str) -> Result<Template, String> {
        if source.is_empty() {
            return Err("the template is empty".to_string());
        }
        let nodes = Parser { src: source }.template()?;
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

    /// Renders the template over `ctx`.
    pub fn render(&self, ctx: &TemplateContext) -> Result<String, String> {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Action(expr) => match self.eval(expr, ctx)? {
                    Value::Str(s) => out.push_str(&s),
                    Value::Int(n) => out.push_str(&n.to_string()),
                },
            }
        }
        Ok(out)
    }

    fn eval(&self, expr: &Expr, ctx: &TemplateContext) -> Result<Value, String> {
        match expr {
            Expr::Str(s) => Ok(Value::Str(s.clone())),
            Expr::Int(n) => Ok(Value::Int(*n)),
            Expr::Field { field, at } => match field.value(ctx) {
                Some(v) => Ok(Value::Str(v.to_string())),
                None => Err(format!(
                    "{{{{ .{} }}}} {} is only available with secret-key granularity",
                    field.name(),
                    location(&self.source, *at)
                )),
            },
            Expr::Call { func, args, .. } => {
                let values = args
                    .iter()
                    .map(|a| self.eval(a, ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                func.apply(&values).map(Value::Str)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Action(Expr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Str(String),
    Int(i64),
    /// `at`: byte offset of the field in the source, for messages.
    Field {
        field: Field,
        at: usize,
    },
    Call {
        func: Func,
        args: Vec<Expr>,
    },
}

impl Expr {
    fn uses(&self, f: Field) -> bool {
        match self {
            Expr::Field { field, .. } => *field == f,
            Expr::Call { args, .. } => args.iter().any(|a| a.uses(f)),
            Expr::Str(_) | Expr::Int(_) => false,
        }
    }
}

enum Value {
    Str(String),
    Int(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Int => "an integer",
        }
    }
}

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

impl Field {
    fn from_name(name: &str) -> Option<Field> {
        FIELDS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    fn name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| *n)
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Uppercase,
    Lowercase,
    Replace,
    Truncate,
    TruncateSha256,
    Sha256,
    Base64,
}

const FUNCS: [(&str, Func); 7] = [
    ("uppercase", Func::Uppercase),
    ("lowercase", Func::Lowercase),
    ("replace", Func::Replace),
    ("truncate", Func::Truncate),
    ("truncate_sha256", Func::TruncateSha256),
    ("sha256", Func::Sha256),
    ("base64", Func::Base64),
];

/// Vault functions whose results change from one call to the next.
const NONDETERMINISTIC: [&str; 5] = [
    "random",
    "uuid",
    "unix_time",
    "unix_time_millis",
    "timestamp",
];

/// Go's builtin functions, and its keywords.
const GO_BUILTINS: [&str; 22] = [
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne", "true", "false", "nil",
];
const GO_KEYWORDS: [&str; 10] = [
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        FUNCS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    fn name(self) -> &'static str {
        FUNCS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| *n)
    }

    /// Parameter types and names, in call order (a piped value is the last one).
    fn params(self) -> &'static [(Ty, &'static str)] {
        match self {
            Func::Uppercase | Func::Lowercase | Func::Sha256 | Func::Base64 => {
                &[(Ty::Str, "value")]
            }
            Func::Replace => &[(Ty::Str, "old"), (Ty::Str, "new"), (Ty::Str, "value")],
            Func::Truncate | Func::TruncateSha256 => &[(Ty::Int, "length"), (Ty::Str, "value")],
        }
    }

    /// Smallest allowed length for the truncating functions (Vault's limits).
    fn min_length(self) -> i64 {
        match self {
            Func::TruncateSha256 => 9,
            _ => 1,
        }
    }

    fn apply(self, args: &[Value]) -> Result<String, String> {
        let len = |n: &i64| usize::try_from(*n).unwrap_or(usize::MAX);
        match (self, args) {
            (Func::Uppercase, [Value::Str(s)]) => Ok(map_case(s, char::to_uppercase)),
            (Func::Lowercase, [Value::Str(s)]) => Ok(map_case(s, char::to_lowercase)),
            (Func::Replace, [Value::Str(old), Value::Str(new), Value::Str(s)]) => {
                Ok(s.replace(old.as_str(), new))
            }
            (Func::Truncate, [Value::Int(n), Value::Str(s)]) => {
                Ok(s.chars().take(len(n)).collect())
            }
            (Func::TruncateSha256, [Value::Int(n), Value::Str(s)]) => {
                Ok(truncate_sha256(s, len(n)))
            }
            (Func::Sha256, [Value::Str(s)]) => Ok(sha256_hex(s)),
            (Func::Base64, [Value::Str(s)]) => Ok(BASE64.encode(s)),
            _ => Err(format!(
                "internal error: function {} called with the wrong arguments",
                self.name()
            )),
        }
    }
}

/// Per-character case mapping, close to Go's `strings.ToUpper`/`ToLower`
/// (simple case mapping): a character whose full mapping is several characters
/// maps to the first of them when lower-casing (`İ` → `i`) and is kept when
/// upper-casing (`ß` stays `ß`); no context rules (a final `Σ` becomes `σ`).
fn map_case<I: Iterator<Item = char>>(s: &str, f: fn(char) -> I) -> String {
    s.chars()
        .map(|c| {
            let mut mapped = f(c);
            match (mapped.next(), mapped.next()) {
                (Some(m), None) => m,
                (Some(m), Some(_)) if m.is_lowercase() => m,
                _ => c,
            }
        })
        .collect()
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Vault's `truncate_sha256`: a value longer than `max` keeps its first
/// `max - 8` characters followed by the first 8 hex digits of the SHA-256 of
/// the characters cut off (Vault hashes the removed tail, not the whole value).
fn truncate_sha256(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(8);
    let cut = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    let (head, tail) = s.split_at(cut);
    let hash = sha256_hex(tail);
    format!("{head}{}", hash.get(..8).unwrap_or(&hash))
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

/// Go's trim markers trim these.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// A token and the byte offset where it starts.
type Spanned = (Tok, usize);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Field(String),
    Ident(String),
    Str(String),
    Int(i64),
    Pipe,
    LParen,
    RParen,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Field(f) => format!(".{f}"),
            Tok::Ident(i) => i.clone(),
            Tok::Str(s) => format!("{s:?}"),
            Tok::Int(n) => n.to_string(),
            Tok::Pipe => "|".to_string(),
            Tok::LParen => "(".to_string(),
            Tok::RParen => ")".to_string(),
        }
    }
}

struct Parser<'a> {
    src: &'a str,
}

impl Parser<'_> {
    fn rest(&self, at: usize) -> &str {
        self.src.get(at..).unwrap_or("")
    }

    fn err(&self, at: usize, what: impl std::fmt::Display) -> String {
        format!("{what} {}", location(self.src, at))
    }

    fn template(&self) -> Result<Vec<Node>, String> {
        let mut nodes = Vec::new();
        let mut pos = 0;
        let mut trim_next = false;
        loop {
            let rest = self.rest(pos);
            let open = rest.find("{{");
            if let Some(close) = rest.find("}}")
                && open.is_none_or(|o| close < o)
            {
                return Err(self.err(
                    pos + close,
                    "unexpected \"}}\" outside an action (no matching \"{{\")",
                ));
            }
            let text = rest.get(..open.unwrap_or(rest.len())).unwrap_or("");
            let text = if trim_next {
                text.trim_start_matches(is_space)
            } else {
                text
            };
            let Some(open) = open else {
                push_text(&mut nodes, text);
                return Ok(nodes);
            };
            let start = pos + open;
            pos = start + 2;
            let mut after = self.rest(pos).chars();
            let trim_left = after.next() == Some('-') && after.next().is_some_and(is_space);
            if trim_left {
                push_text(&mut nodes, text.trim_end_matches(is_space));
                pos += 2;
            } else {
                push_text(&mut nodes, text);
            }
            let (action, end, trim_right) = if self.rest(pos).starts_with("/*") {
                let (end, trim) = self.comment(start, pos)?;
                (None, end, trim)
            } else {
                let (toks, end, trim) = self.lex_action(start, pos)?;
                let expr = TokParser {
                    p: self,
                    toks: &toks,
                    i: 0,
                    start,
                }
                .action()?;
                (Some(expr), end, trim)
            };
            if let Some(expr) = action {
                nodes.push(Node::Action(expr));
            }
            pos = end;
            trim_next = trim_right;
        }
    }

    /// A `/* ... */` comment starting at `pos`; returns where the action ends and the right trim.
    fn comment(&self, start: usize, pos: usize) -> Result<(usize, bool), String> {
        let body = self.rest(pos + 2);
        let Some(close) = body.find("*/") else {
            return Err(self.err(start, "unclosed comment"));
        };
        let end = pos + 2 + close + 2;
        let after = self.rest(end);
        if after.starts_with("}}") {
            return Ok((end + 2, false));
        }
        let mut chars = after.chars();
        if chars.next().is_some_and(is_space) && chars.as_str().starts_with("-}}") {
            return Ok((end + 4, true));
        }
        Err(self.err(end, "a comment must end with \"*/}}\""))
    }

    /// Splits the action that starts at `pos` into tokens; returns them with
    /// the offset after the closing delimiter and whether it trims.
    fn lex_action(
        &self,
        start: usize,
        mut pos: usize,
    ) -> Result<(Vec<Spanned>, usize, bool), String> {
        let mut toks = Vec::new();
        loop {
            let rest = self.rest(pos);
            let Some(c) = rest.chars().next() else {
                return Err(self.err(start, "unclosed action (missing \"}}\") starting"));
            };
            if rest.starts_with("}}") {
                return Ok((toks, pos + 2, false));
            }
            if is_space(c) {
                let trimmed = rest.trim_start_matches(is_space);
                pos += rest.len() - trimmed.len();
                if trimmed.starts_with("-}}") {
                    return Ok((toks, pos + 3, true));
                }
                continue;
            }
            let at = pos;
            let (tok, len) = match c {
                '|' => (Tok::Pipe, 1),
                '(' => (Tok::LParen, 1),
                ')' => (Tok::RParen, 1),
                '"' => self.quoted(at)?,
                '`' => self.raw(at)?,
                '.' => {
                    let name = word(rest.get(1..).unwrap_or(""), |c| c == '.');
                    if name.is_empty() {
                        return Err(self.err(
                            at,
                            "\".\" alone (the whole data object) cannot be used; \
                             use a field such as .SecretPath,",
                        ));
                    }
                    (Tok::Field(name.to_string()), 1 + name.len())
                }
                '0'..='9' | '+' | '-' => {
                    let sign = usize::from(c == '+' || c == '-');
                    let text = word(rest.get(sign..).unwrap_or(""), |c| c == '.');
                    let literal = rest.get(..sign + text.len()).unwrap_or("");
                    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                    match literal.parse::<i64>() {
                        Ok(n) if digits_only => (Tok::Int(n), literal.len()),
                        _ => {
                            return Err(self.err(
                                at,
                                format!(
                                    "bad number {literal:?} (only decimal integers are supported)"
                                ),
                            ));
                        }
                    }
                }
                c if c.is_ascii_alphabetic() || c == '_' => {
                    let name = word(rest, |_| false);
                    (Tok::Ident(name.to_string()), name.len())
                }
                '$' => return Err(self.err(at, "variables ($...) are not supported")),
                other => {
                    return Err(self.err(at, format!("unexpected character {other:?} in action")));
                }
            };
            toks.push((tok, at));
            pos += len;
        }
    }

    /// A `"..."` literal at `at`; returns the token and its length in bytes.
    fn quoted(&self, at: usize) -> Result<(Tok, usize), String> {
        let body = self.rest(at + 1);
        let mut out = String::new();
        let mut chars = body.char_indices();
        let unterminated = || self.err(at, "unterminated string");
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((Tok::Str(out), 1 + i + 1)),
                '\n' => return Err(unterminated()),
                '\\' => {
                    let Some((j, e)) = chars.next() else {
                        return Err(unterminated());
                    };
                    let simple = match e {
                        '"' => Some('"'),
                        '\\' => Some('\\'),
                        'n' => Some('\n'),
                        't' => Some('\t'),
                        'r' => Some('\r'),
                        'a' => Some('\u{7}'),
                        'b' => Some('\u{8}'),
                        'f' => Some('\u{c}'),
                        'v' => Some('\u{b}'),
                        _ => None,
                    };
                    if let Some(s) = simple {
                        out.push(s);
                        continue;
                    }
                    let digits = match e {
                        'x' => 2,
                        'u' => 4,
                        'U' => 8,
                        _ => {
                            return Err(self.err(
                                at + 1 + j,
                                format!("unknown escape sequence \\{e} in string"),
                            ));
                        }
                    };
                    let hex = body.get(j + 1..j + 1 + digits).unwrap_or("");
                    let decoded = u32::from_str_radix(hex, 16)
                        .ok()
                        .filter(|_| {
                            hex.len() == digits && hex.bytes().all(|b| b.is_ascii_hexdigit())
                        })
                        .filter(|v| e != 'x' || *v < 0x80)
                        .and_then(char::from_u32);
                    let Some(ch) = decoded else {
                        return Err(self.err(
                            at + 1 + j,
                            format!("invalid escape sequence \\{e}{hex} in string"),
                        ));
                    };
                    out.push(ch);
                    for _ in 0..digits {
                        chars.next();
                    }
                }
                c => out.push(c),
            }
        }
        Err(unterminated())
    }

    /// A `` `raw` `` literal at `at` (carriage returns dropped, as Go does).
    fn raw(&self, at: usize) -> Result<(Tok, usize), String> {
        let body = self.rest(at + 1);
        match body.find('`') {
            Some(end) => {
                let text = body.get(..end).unwrap_or("").replace('\r', "");
                Ok((Tok::Str(text), end + 2))
            }
            None => Err(self.err(at, "unterminated raw string")),
        }
    }
}

/// The leading identifier characters of `s` (ASCII letters, digits, `_`, and `extra`).
fn word(s: &str, extra: fn(char) -> bool) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || extra(c)))
        .unwrap_or(s.len());
    s.get(..end).unwrap_or("")
}

fn push_text(nodes: &mut Vec<Node>, text: &str) {
    if !text.is_empty() {
        nodes.push(Node::Text(text.to_string()));
    }
}

/// Recursive descent over the tokens of one action, with static type checks.
struct TokParser<'a> {
    p: &'a Parser<'a>,
    toks: &'a [Spanned],
    i: usize,
    /// Offset of the action's `{{`.
    start: usize,
}

impl TokParser<'_> {
    fn peek(&self) -> Option<&Spanned> {
        self.toks.get(self.i)
    }

    fn action(mut self) -> Result<Expr, String> {
        if self.toks.is_empty() {
            return Err(self.p.err(self.start, "empty action"));
        }
        let (expr, _) = self.pipeline()?;
        match self.peek() {
            None => Ok(expr),
            Some((tok, at)) => Err(self.p.err(*at, format!("unexpected {:?}", tok.describe()))),
        }
    }

    fn pipeline(&mut self) -> Result<(Expr, Ty), String> {
        let mut value = self.command(None)?;
        while let Some((Tok::Pipe, at)) = self.peek() {
            let at = *at;
            self.i += 1;
            value = self.command(Some((value, at)))?;
        }
        Ok(value)
    }

    /// One command; `piped` is the value coming from the left of `|` and where that `|` is.
    fn command(&mut self, piped: Option<((Expr, Ty), usize)>) -> Result<(Expr, Ty), String> {
        let here = self.peek().map_or(self.end(), |(_, at)| *at);
        match (self.peek(), piped) {
            (None | Some((Tok::Pipe | Tok::RParen, _)), None) => {
                Err(self.p.err(here, "missing value"))
            }
            (None | Some((Tok::Pipe | Tok::RParen, _)), Some((_, bar))) => {
                Err(self.p.err(bar, "missing function after \"|\""))
            }
            (Some((Tok::Ident(name), at)), piped) => {
                let (name, at) = (name.clone(), *at);
                self.i += 1;
                let func = self.func(&name, at)?;
                let mut args = Vec::new();
                while !self.at_command_end() {
                    args.push(self.operand()?);
                }
                if let Some((value, _)) = piped {
                    args.push(value);
                }
                self.call(func, at, args)
            }
            (Some((tok, at)), piped) => {
                let (what, at) = (tok.describe(), *at);
                if piped.is_some() {
                    return Err(self.p.err(
                        at,
                        format!("{what:?} after \"|\" is not a function; only functions can follow \"|\""),
                    ));
                }
                let value = self.operand()?;
                match self.peek() {
                    Some((tok, arg_at)) if !self.at_command_end() => Err(self.p.err(
                        *arg_at,
                        format!(
                            "{what:?} is not a function and cannot take the argument {:?}",
                            tok.describe()
                        ),
                    )),
                    _ => Ok(value),
                }
            }
        }
    }

    fn at_command_end(&self) -> bool {
        matches!(self.peek(), None | Some((Tok::Pipe | Tok::RParen, _)))
    }

    fn end(&self) -> usize {
        self.toks.last().map_or(self.start, |(_, at)| *at)
    }

    fn operand(&mut self) -> Result<(Expr, Ty), String> {
        let Some((tok, at)) = self.peek().cloned() else {
            return Err(self.p.err(self.end(), "missing value"));
        };
        self.i += 1;
        match tok {
            Tok::Str(s) => Ok((Expr::Str(s), Ty::Str)),
            Tok::Int(n) => Ok((Expr::Int(n), Ty::Int)),
            Tok::Field(name) => match Field::from_name(&name) {
                Some(field) => Ok((Expr::Field { field, at }, Ty::Str)),
                None => Err(format!(
                    "unknown field .{name} {}; available fields: {}",
                    location(self.p.src, at),
                    FIELDS
                        .iter()
                        .map(|(n, _)| format!(".{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            },
            Tok::LParen => {
                let value = self.pipeline()?;
                match self.peek() {
                    Some((Tok::RParen, _)) => {
                        self.i += 1;
                        Ok(value)
                    }
                    Some((tok, at)) => {
                        Err(self.p.err(*at, format!("unexpected {:?}", tok.describe())))
                    }
                    None => Err(self.p.err(at, "unclosed \"(\"")),
                }
            }
            Tok::Ident(name) => {
                let func = self.func(&name, at)?;
                self.call(func, at, Vec::new())
            }
            Tok::Pipe | Tok::RParen => {
                Err(self.p.err(at, format!("unexpected {:?}", tok.describe())))
            }
        }
    }

    fn func(&self, name: &str, at: usize) -> Result<Func, String> {
        if let Some(f) = Func::from_name(name) {
            return Ok(f);
        }
        let loc = location(self.p.src, at);
        let available = FUNCS.map(|(n, _)| n).join(", ");
        Err(if NONDETERMINISTIC.contains(&name) {
            format!(
                "function {name} is not supported in secret name templates ({loc}): \
                 external names must not change from one sync to the next"
            )
        } else if GO_BUILTINS.contains(&name) {
            format!(
                "function {name} is not supported in secret name templates ({loc}); \
                 available functions: {available}"
            )
        } else if GO_KEYWORDS.contains(&name) {
            format!(
                "\"{name}\" is not supported in secret name templates ({loc}): \
                 control structures are not available"
            )
        } else {
            format!("function {name:?} not defined {loc}; available functions: {available}")
        })
    }

    /// Checks the arity and argument types of a call.
    fn call(&self, func: Func, at: usize, args: Vec<(Expr, Ty)>) -> Result<(Expr, Ty), String> {
        let params = func.params();
        let name = func.name();
        if args.len() != params.len() {
            let names = params.iter().map(|(_, n)| *n).collect::<Vec<_>>();
            return Err(format!(
                "function {name} {} takes {} argument{} ({}; a piped value comes last) but got {}",
                location(self.p.src, at),
                params.len(),
                if params.len() == 1 { "" } else { "s" },
                names.join(", "),
                args.len()
            ));
        }
        for ((arg, ty), (want, pname)) in args.iter().zip(params) {
            if ty != want {
                return Err(format!(
                    "function {name} {}: argument {pname} must be {} but is {}",
                    location(self.p.src, at),
                    want.describe(),
                    ty.describe()
                ));
            }
            if let Expr::Int(n) = arg
                && *n < func.min_length()
            {
                return Err(format!(
                    "function {name} {}: the length must be at least {} but was {n}",
                    location(self.p.src, at),
                    func.min_length()
                ));
            }
        }
        let args = args.into_iter().map(|(e, _)| e).collect();
        Ok((Expr::Call { func, args }, Ty::Str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The §5.2 example: mount `path/to/kv1/`, root namespace.
    fn ctx() -> TemplateContext {
        TemplateContext {
            destination_type: "aws-sm".into(),
            destination_name: "my-dest".into(),
            namespace_path: String::new(),
            namespace_base_name: String::new(),
            namespace_id: "root".into(),
            mount_path: "path/to/kv1/".into(),
            mount_base_name: "kv1".into(),
            mount_accessor: "kv_1234".into(),
            secret_path: "path/to/secret1".into(),
            secret_base_name: "secret1".into(),
            secret_key: Some("foo".into()),
        }
    }

    fn render(src: &str) -> String {
        Template::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .render(&ctx())
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn parse_err(src: &str) -> String {
        match Template::parse(src) {
            Ok(t) => panic!("{src} parsed: {t:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn every_field() {
        let cases = [
            ("DestinationType", "aws-sm"),
            ("DestinationName", "my-dest"),
            ("NamespacePath", ""),
            ("NamespaceBaseName", ""),
            ("NamespaceID", "root"),
            ("MountPath", "path/to/kv1/"),
            ("MountBaseName", "kv1"),
            ("MountAccessor", "kv_1234"),
            ("SecretPath", "path/to/secret1"),
            ("SecretBaseName", "secret1"),
            ("SecretKey", "foo"),
        ];
        for (field, want) in cases {
            let src = format!("<{{{{ .{field} }}}}>");
            assert_eq!(render(&src), format!("<{want}>"), "{src}");
            let t = Template::parse(&src).unwrap();
            assert!(t.uses(field));
            assert!(t.uses(&format!(".{field}")));
        }
        let ns = TemplateContext {
            namespace_path: "ns1/ns2/".into(),
            namespace_base_name: "ns2".into(),
            namespace_id: "RQegM".into(),
            ..ctx()
        };
        let t =
            Template::parse("{{.NamespacePath}}|{{.NamespaceBaseName}}|{{.NamespaceID}}").unwrap();
        assert_eq!(t.render(&ns).unwrap(), "ns1/ns2/|ns2|RQegM");
    }

    #[test]
    fn doc_examples() {
        assert_eq!(render("prefix-{{ .SecretPath }}"), "prefix-path/to/secret1");
        assert_eq!(render("{{ .SecretBaseName | uppercase }}"), "SECRET1");
        assert_eq!(
            render("{{ .MountAccessor }}_{{ .SecretKey }}"),
            "kv_1234_foo"
        );
        assert_eq!(
            render("{{ .SecretPath | replace \"/\" \"_\" }}"),
            "path_to_secret1"
        );
    }

    #[test]
    fn default_templates() {
        let cases = [
            // aws-sm, gcp-sm, in-mem
            (
                "vault/{{ .MountAccessor }}/{{ .SecretPath }}",
                "vault/kv_1234/path/to/secret1",
            ),
            (
                "vault/{{ .MountAccessor }}/{{ .SecretPath }}/{{ .SecretKey }}",
                "vault/kv_1234/path/to/secret1/foo",
            ),
            // azure-kv
            (
                "vault-{{ .MountAccessor | replace \"_\" \"-\" }}-{{ .SecretPath }}",
                "vault-kv-1234-path/to/secret1",
            ),
            (
                "vault-{{ .MountAccessor | replace \"_\" \"-\" }}-{{ .SecretPath }}-{{ .SecretKey }}",
                "vault-kv-1234-path/to/secret1-foo",
            ),
            // gh, vercel-project
            (
                "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}",
                "VAULT_KV_1234_PATH/TO/SECRET1",
            ),
            (
                "VAULT_{{ .MountAccessor | uppercase }}_{{ .SecretPath | uppercase }}_{{ .SecretKey | uppercase }}",
                "VAULT_KV_1234_PATH/TO/SECRET1_FOO",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(render(src), want, "{src}");
            let t = Template::parse(src).unwrap();
            assert_eq!(t.uses("SecretKey"), src.contains(".SecretKey"), "{src}");
            assert!(t.uses("MountAccessor"));
            assert!(!t.uses("DestinationName"));
        }
    }

    #[test]
    fn functions() {
        assert_eq!(render("{{ \"MiXeD\" | lowercase }}"), "mixed");
        assert_eq!(render("{{ \"MiXeD\" | uppercase }}"), "MIXED");
        assert_eq!(render("{{ uppercase .MountBaseName }}"), "KV1");
        assert_eq!(
            render("{{ replace \"/\" \"_\" .SecretPath }}"),
            "path_to_secret1"
        );
        assert_eq!(
            render("{{ replace \"t\" \"\" .SecretPath }}"),
            "pah/o/secre1"
        );
        assert_eq!(render("{{ .SecretPath | truncate 4 }}"), "path");
        assert_eq!(render("{{ truncate 100 .SecretPath }}"), "path/to/secret1");
        assert_eq!(
            render("{{ .SecretPath | sha256 }}"),
            "82bc7ee1b552fa5673632b16f3501b856fed7aba0e13ce7882b8aa6c5b056c6c"
        );
        assert_eq!(
            render("{{ \"\" | sha256 }}"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(render("{{ .SecretPath | base64 }}"), "cGF0aC90by9zZWNyZXQx");
        assert_eq!(render("{{ \"ab\" | base64 }}"), "YWI=");
        // Chains, and a sub-pipeline as an argument.
        assert_eq!(
            render("{{ .SecretPath | replace \"/\" \"-\" | uppercase | truncate 7 }}"),
            "PATH-TO"
        );
        assert_eq!(
            render("{{ replace \"/\" (.MountAccessor | uppercase) .SecretPath }}"),
            "pathKV_1234toKV_1234secret1"
        );
        let t =
            Template::parse("{{ replace \"/\" (.SecretKey | lowercase) .SecretPath }}").unwrap();
        assert!(t.uses("SecretKey") && t.uses("SecretPath") && !t.uses("MountPath"));
        assert_eq!(render("{{ 42 }}-{{ -7 }}"), "42--7");
    }

    #[test]
    fn truncate_sha256_like_vault() {
        // Short enough: unchanged.
        assert_eq!(
            render("{{ .SecretPath | truncate_sha256 15 }}"),
            "path/to/secret1"
        );
        // Longer: the first N-8 characters, then 8 hex digits of the SHA-256 of
        // the removed tail ("o/secret1" here), exactly N characters in all.
        let out = render("{{ .SecretPath | truncate_sha256 14 }}");
        assert_eq!(out, format!("path/t{}", &sha256_hex("o/secret1")[..8]));
        assert_eq!(out, "path/tfd39e3fb");
        assert_eq!(out.chars().count(), 14);
        assert_eq!(
            render("{{ truncate_sha256 9 \"abcdefghij\" }}"),
            "a".to_string() + &sha256_hex("bcdefghij")[..8]
        );
        // Characters, not bytes: no panic on multi-byte text.
        assert_eq!(
            truncate_sha256("ééééééééééé", 10),
            format!("éé{}", &sha256_hex("ééééééééé")[..8])
        );
        assert_eq!(render("{{ \"日本語テキスト\" | truncate 2 }}"), "日本");
    }

    #[test]
    fn case_mapping_per_char() {
        assert_eq!(map_case("straße", char::to_uppercase), "STRAßE");
        assert_eq!(map_case("İSTANBUL", char::to_lowercase), "istanbul");
        assert_eq!(map_case("ΟΔΟΣ", char::to_lowercase), "οδοσ");
    }

    #[test]
    fn strings_and_trim_markers() {
        assert_eq!(render(r#"{{ "a\"b\\c\td" }}"#), "a\"b\\c\td");
        assert_eq!(render(r#"{{ "\x41\u00e9\U0001F600\n" }}"#), "Aé😀\n");
        assert_eq!(render("{{ `raw \\n \"x\"` }}"), "raw \\n \"x\"");
        assert_eq!(render("{{ \"}}\" }}"), "}}");
        assert_eq!(render("a  {{- .MountBaseName -}}  \n b"), "akv1b");
        assert_eq!(render("a {{- .MountBaseName }} b"), "akv1 b");
        assert_eq!(render("a {{/* note */}}b"), "a b");
        assert_eq!(render("a {{- /* note */ -}} b"), "ab");
        assert_eq!(render("{{.SecretBaseName|uppercase}}"), "SECRET1");
        assert_eq!(render("plain"), "plain");
        assert_eq!(render("{ x }"), "{ x }");
    }

    #[test]
    fn secret_key_needs_secret_key_granularity() {
        let t = Template::parse("{{ .SecretPath }}/{{ .SecretKey | uppercase }}").unwrap();
        let no_key = TemplateContext {
            secret_key: None,
            ..ctx()
        };
        let err = t.render(&no_key).unwrap_err();
        assert!(
            err.contains("only available with secret-key granularity"),
            "{err}"
        );
        assert!(err.contains("column 22"), "{err}");
        assert!(t.uses("SecretKey"));
        // Mentioning the word in text or a string is no reference.
        let t = Template::parse("SecretKey-{{ \"SecretKey\" }}-{{ .SecretPath }}").unwrap();
        assert!(!t.uses("SecretKey"));
        assert!(!t.uses("NoSuchField"));
        assert_eq!(
            t.render(&no_key).unwrap(),
            "SecretKey-SecretKey-path/to/secret1"
        );
    }

    #[test]
    fn unknown_names() {
        let e = parse_err("{{ .InvalidTemplate }}");
        assert!(
            e.contains("unknown field .InvalidTemplate at column 4"),
            "{e}"
        );
        assert!(e.contains(".SecretPath"), "{e}");
        assert!(parse_err("{{ .secretPath }}").contains("unknown field"));
        assert!(parse_err("{{ .SecretPath.Foo }}").contains("unknown field .SecretPath.Foo"));
        let e = parse_err("x {{ .SecretPath | shout }}");
        assert!(
            e.contains("function \"shout\" not defined at column 20"),
            "{e}"
        );
        assert!(e.contains("truncate_sha256"), "{e}");
        for f in [
            "random 10",
            "uuid",
            "unix_time",
            "unix_time_millis",
            "timestamp \"x\"",
        ] {
            let e = parse_err(&format!("{{{{ {f} }}}}"));
            let name = f.split(' ').next().unwrap();
            assert!(
                e.contains(&format!(
                    "function {name} is not supported in secret name templates"
                )),
                "{e}"
            );
        }
        assert!(parse_err("{{ printf \"%s\" .SecretPath }}").contains("printf is not supported"));
        assert!(parse_err("{{ if .SecretKey }}x{{ end }}").contains("\"if\" is not supported"));
        assert!(parse_err("{{ $x := 1 }}").contains("variables"));
        assert!(parse_err("{{ . }}").contains("alone"));
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            ("{{ .SecretPath", "unclosed action"),
            ("a {{ .SecretPath }", "unexpected character '}'"),
            ("{{ }}", "empty action"),
            ("{{-  -}}", "empty action"),
            ("{{- -}}", "bad number"),
            ("a }} b", "unexpected \"}}\" outside an action"),
            ("{{ .SecretPath }} }}", "outside an action"),
            ("{{ \"abc }}", "unterminated string"),
            ("{{ `abc }}", "unterminated raw string"),
            ("{{ \"a\nb\" }}", "unterminated string"),
            ("{{ \"\\q\" }}", "unknown escape sequence"),
            ("{{ \"\\xff\" }}", "invalid escape sequence"),
            ("{{ .SecretPath | }}", "missing function after \"|\""),
            ("{{ | uppercase }}", "missing value"),
            (
                "{{ .SecretPath || uppercase }}",
                "missing function after \"|\"",
            ),
            ("{{ .SecretPath | .MountPath }}", "not a function"),
            ("{{ .SecretPath .MountPath }}", "cannot take the argument"),
            ("{{ \"x\" 3 }}", "cannot take the argument"),
            ("{{ (.SecretPath }}", "unclosed \"(\""),
            ("{{ .SecretPath) }}", "unexpected \")\""),
            ("{{ () }}", "missing value"),
            ("{{ 3.5 }}", "bad number"),
            ("{{ 0x1f }}", "bad number"),
            ("{{ 99999999999999999999 }}", "bad number"),
            ("{{ .SecretPath ! }}", "unexpected character '!'"),
            ("{{ /* x */ }}", "unexpected character '/'"),
            ("{{/* x }}", "unclosed comment"),
            ("{{/* x */ }}", "must end with"),
            ("", "empty"),
        ];
        for (src, want) in cases {
            let e = parse_err(src);
            assert!(e.contains(want), "{src:?}: {e}");
        }
        let e = parse_err("line one\n{{ .Nope }}");
        assert!(e.contains("at line 2, column 4"), "{e}");
    }

    #[test]
    fn arity_and_types() {
        let cases = [
            ("{{ .SecretPath | replace \"/\" }}", "takes 3 arguments"),
            ("{{ replace \"/\" \"_\" }}", "but got 2"),
            (
                "{{ .SecretPath | uppercase \"x\" }}",
                "uppercase at column 18 takes 1 argument",
            ),
            ("{{ uppercase }}", "but got 0"),
            (
                "{{ .SecretPath | truncate }}",
                "takes 2 arguments (length, value",
            ),
            (
                "{{ .SecretPath | truncate \"3\" }}",
                "argument length must be an integer",
            ),
            (
                "{{ 3 | uppercase }}",
                "argument value must be a string but is an integer",
            ),
            (
                "{{ replace 1 \"_\" .SecretPath }}",
                "argument old must be a string",
            ),
            ("{{ .SecretPath | truncate 0 }}", "at least 1 but was 0"),
            ("{{ .SecretPath | truncate -2 }}", "at least 1 but was -2"),
            (
                "{{ .SecretPath | truncate_sha256 8 }}",
                "at least 9 but was 8",
            ),
            (
                "{{ uppercase lowercase .SecretPath }}",
                "lowercase at column 14 takes 1 argument",
            ),
        ];
        for (src, want) in cases {
            let e = parse_err(src);
            assert!(e.contains(want), "{src:?}: {e}");
        }
    }

    #[test]
    fn no_panics_on_odd_input() {
        for src in [
            "{{",
            "}}",
            "{",
            "}",
            "{{-",
            "{{- ",
            "-}}",
            "{{\"",
            "{{`",
            "{{ \"\\",
            "{{ \"\\u12",
            "é{{ .SecretPath }}ü",
            "{{ é }}",
            "{{ .é }}",
            "{{ (((",
            "{{ ))) }}",
            "{{ - }}",
            "{{ + }}",
            "{{ -- }}",
            "{{/*",
            "{{/**/",
            "{{ \"\\U0011ffff\" }}",
        ] {
            let _ = Template::parse(src).and_then(|t| t.render(&ctx()));
        }
        assert_eq!(render("é{{ .MountBaseName }}ü"), "ékv1ü");
    }
}
