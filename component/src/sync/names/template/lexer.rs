//! Splits the actions of a template into tokens: delimiters and trim
//! markers, comments, string and integer literals, fields and identifiers.

use super::location;

/// Go's trim markers trim these.
pub(super) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// A token and the byte offset where it starts.
pub(super) type Spanned = (Tok, usize);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Field(String),
    Ident(String),
    Str(String),
    Int(i64),
    Pipe,
    LParen,
    RParen,
}

impl Tok {
    pub(super) fn describe(&self) -> String {
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

/// The source of a template, scanned by byte offset.
pub(super) struct Lexer<'a> {
    pub(super) src: &'a str,
}

impl Lexer<'_> {
    pub(super) fn rest(&self, at: usize) -> &str {
        self.src.get(at..).unwrap_or("")
    }

    pub(super) fn err(&self, at: usize, what: impl std::fmt::Display) -> String {
        format!("{what} {}", location(self.src, at))
    }

    /// A `/* ... */` comment starting at `pos`; returns where the action ends and the right trim.
    pub(super) fn comment(&self, start: usize, pos: usize) -> Result<(usize, bool), String> {
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
    pub(super) fn lex_action(
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
