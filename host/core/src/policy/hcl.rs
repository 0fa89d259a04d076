//! Reads a policy document, HCL or JSON, into one small tree that the policy
//! decoder walks.
//!
//! The HCL is HCL 1, the dialect Vault reads policies in, not HCL 2: blocks
//! may sit on one line (`path "a" {...} path "b" {...}`), items may be
//! separated by commas, object values may hold blocks
//! (`control_group = { factor "x" { ... } }`), and `${...}` inside a string
//! is plain text. Grammar:
//!
//! ```text
//! document = items EOF
//! items    = { item [","] }
//! item     = key "=" value            one key, then a value
//!          | key { key } "{" items "}"  a block: one or more keys (labels)
//! key      = identifier | string
//! value    = string | heredoc | number | true | false | list | "{" items "}"
//! list     = "[" [ value { "," value } [","] ] "]"
//! ```
//!
//! Comments are `#` and `//` to the end of the line and `/* ... */`.
//! Identifiers start with a letter or `_` and go on with letters, digits,
//! `_`, `-` and `.`. Strings take Go's escapes outside `${...}`; numbers are
//! decimal (a leading `0` means octal, `0x` hexadecimal) with an optional
//! `-`, fraction and exponent. A document is JSON when its first
//! non-blank character is `{`.
//!
//! Every failure is an error value: nesting is bounded ([`MAX_DEPTH`]) so that
//! no input can exhaust the stack, and nothing here indexes or unwraps.

use super::PolicyError;

/// Deepest nesting of lists and objects accepted.
pub(super) const MAX_DEPTH: usize = 64;

/// The longest piece of input quoted back in an error message.
const QUOTE_MAX: usize = 40;

/// A value in the document tree.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Node {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// JSON only.
    Null,
    List(Vec<Node>),
    Object(Vec<Item>),
}

impl Node {
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Node::Str(_) => "string",
            Node::Int(_) | Node::Float(_) => "number",
            Node::Bool(_) => "bool",
            Node::Null => "null",
            Node::List(_) => "list",
            Node::Object(_) => "object",
        }
    }

    /// The value as JSON (for parameter constraints). Non-finite floats
    /// cannot come out of the reader, but turn into `null` all the same.
    pub(super) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Node::Str(s) => Value::String(s.clone()),
            Node::Int(i) => Value::from(*i),
            Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Node::Bool(b) => Value::Bool(*b),
            Node::Null => Value::Null,
            Node::List(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Object(items) => {
                let mut map = serde_json::Map::new();
                for item in items {
                    // `a "b" { ... }` nests as {"a": {"b": {...}}}.
                    let mut value = item.value.to_json();
                    let mut keys = item.keys.iter().rev();
                    let Some(first) = keys.next_back() else {
                        continue;
                    };
                    for k in keys {
                        let mut inner = serde_json::Map::new();
                        inner.insert(k.clone(), value);
                        value = Value::Object(inner);
                    }
                    map.insert(first.clone(), value);
                }
                Value::Object(map)
            }
        }
    }
}

/// `keys = value` or a block `keys { ... }` (then `value` is an object).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Item {
    pub(super) keys: Vec<String>,
    pub(super) value: Node,
    /// 1-based line of the first key; 0 in JSON documents.
    pub(super) line: usize,
}

impl Item {
    pub(super) fn key(&self) -> &str {
        self.keys.first().map_or("", String::as_str)
    }

    /// ` on line N`, or nothing for JSON.
    pub(super) fn at(&self) -> String {
        if self.line == 0 {
            String::new()
        } else {
            format!(" on line {}", self.line)
        }
    }
}

/// A parsed document: its top-level items, and whether it was JSON.
pub(super) struct Document {
    pub(super) items: Vec<Item>,
    pub(super) json: bool,
}

/// Reads `text` as JSON when it starts with `{`, as HCL otherwise.
pub(super) fn parse_document(text: &str) -> Result<Document, PolicyError> {
    if text.trim_start().starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| PolicyError::new(format!("invalid JSON: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(PolicyError::new("invalid JSON: expected an object"));
        };
        Ok(Document {
            items: json_items(map),
            json: true,
        })
    } else {
        let mut parser = Parser {
            lexer: Lexer::new(text),
            peeked: None,
            depth: 0,
        };
        Ok(Document {
            items: parser.document()?,
            json: false,
        })
    }
}

fn json_items(map: serde_json::Map<String, serde_json::Value>) -> Vec<Item> {
    map.into_iter()
        .map(|(k, v)| Item {
            keys: vec![k],
            value: json_node(v),
            line: 0,
        })
        .collect()
}

/// serde_json bounds nesting itself (128 levels), so this recursion is bounded.
fn json_node(value: serde_json::Value) -> Node {
    use serde_json::Value;
    match value {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Node::Int(i),
            None => Node::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Node::Str(s),
        Value::Array(items) => Node::List(items.into_iter().map(json_node).collect()),
        Value::Object(map) => Node::Object(json_items(map)),
    }
}

/// `text` shortened for an error message.
fn quote(text: &str) -> String {
    let mut out: String = text.chars().take(QUOTE_MAX).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Heredoc(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Comma,
    Assign,
    Eof,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("identifier {:?}", quote(s)),
            Token::Str(s) => format!("string {:?}", quote(s)),
            Token::Heredoc(_) => "heredoc".to_string(),
            Token::Int(i) => format!("number {i}"),
            Token::Float(f) => format!("number {f}"),
            Token::Bool(b) => format!("{b}"),
            Token::LBrace => "'{'".to_string(),
            Token::RBrace => "'}'".to_string(),
            Token::LBrack => "'['".to_string(),
            Token::RBrack => "']'".to_string(),
            Token::Comma => "','".to_string(),
            Token::Assign => "'='".to_string(),
            Token::Eof => "end of input".to_string(),
        }
    }
}

struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next character; always on a character boundary.
    pos: usize,
    line: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            line: 1,
        }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn error(&self, message: impl std::fmt::Display) -> PolicyError {
        PolicyError::new(format!("syntax error on line {}: {message}", self.line))
    }

    /// Skips blanks and comments.
    fn skip_trivia(&mut self) -> Result<(), PolicyError> {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('#'), _) | (Some('/'), Some('/')) => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.line;
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return Err(PolicyError::new(format!(
                                    "syntax error on line {start}: comment not terminated"
                                )));
                            }
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next token and the line it starts on.
    fn next_token(&mut self) -> Result<(Token, usize), PolicyError> {
        self.skip_trivia()?;
        let line = self.line;
        let Some(c) = self.peek() else {
            return Ok((Token::Eof, line));
        };
        let token = match c {
            '{' => self.single(Token::LBrace),
            '}' => self.single(Token::RBrace),
            '[' => self.single(Token::LBrack),
            ']' => self.single(Token::RBrack),
            ',' => self.single(Token::Comma),
            '=' => self.single(Token::Assign),
            '"' => Token::Str(self.string()?),
            '<' if self.peek2() == Some('<') => Token::Heredoc(self.heredoc()?),
            '-' if self.peek2().is_some_and(|d| d.is_ascii_digit()) => self.number()?,
            c if c.is_ascii_digit() => self.number()?,
            c if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
                {
                    self.bump();
                }
                let word = self.src.get(start..self.pos).unwrap_or("");
                match word {
                    "true" => Token::Bool(true),
                    "false" => Token::Bool(false),
                    _ => Token::Ident(word.to_string()),
                }
            }
            other => return Err(self.error(format!("illegal character {other:?}"))),
        };
        Ok((token, line))
    }

    fn single(&mut self, token: Token) -> Token {
        self.bump();
        token
    }

    /// A quoted string, unquoted. Inside `${...}` (braces nest) quotes and
    /// escapes are kept as written, as HCL 1 does.
    fn string(&mut self) -> Result<String, PolicyError> {
        self.bump(); // the opening quote
        let mut out = String::new();
        let mut braces = 0usize;
        loop {
            let Some(c) = self.bump() else {
                return Err(self.error("string not terminated"));
            };
            if braces == 0 {
                match c {
                    '"' => return Ok(out),
                    '\n' => {
                        return Err(PolicyError::new(format!(
                            "syntax error on line {}: string not terminated",
                            self.line.saturating_sub(1)
                        )));
                    }
                    '\\' => out.push(self.escape()?),
                    '$' if self.peek() == Some('{') => {
                        self.bump();
                        out.push_str("${");
                        braces = 1;
                    }
                    c => out.push(c),
                }
            } else {
                match c {
                    '{' => braces += 1,
                    '}' => braces -= 1,
                    '\\' => {
                        // Kept verbatim, but the escaped character never ends
                        // or opens anything.
                        out.push('\\');
                        match self.bump() {
                            Some(e) => out.push(e),
                            None => return Err(self.error("string not terminated")),
                        }
                        continue;
                    }
                    _ => {}
                }
                out.push(c);
            }
        }
    }

    /// One escape sequence after a backslash (Go's set).
    fn escape(&mut self) -> Result<char, PolicyError> {
        let Some(c) = self.bump() else {
            return Err(self.error("string not terminated"));
        };
        let simple = match c {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            _ => None,
        };
        if let Some(s) = simple {
            return Ok(s);
        }
        let (digits, radix) = match c {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (2, 8), // the first of three octal digits is `c`
            _ => return Err(self.error(format!("invalid escape sequence \\{c}"))),
        };
        let mut value: u32 = if radix == 8 {
            c.to_digit(8).unwrap_or(0)
        } else {
            0
        };
        for _ in 0..digits {
            let d = self
                .bump()
                .and_then(|d| d.to_digit(radix))
                .ok_or_else(|| self.error("invalid escape sequence"))?;
            value = value * radix + d;
        }
        // \x and octal escapes are single bytes: only ASCII makes valid text.
        if matches!(c, 'x' | '0'..='7') && value > 0x7f {
            return Err(self.error("escape sequence is not valid UTF-8"));
        }
        char::from_u32(value).ok_or_else(|| self.error("invalid Unicode escape"))
    }

    /// `<<EOF` or `<<-EOF`, a newline, lines, and a line holding only the
    /// anchor (blanks around it allowed) ended by a newline. The `-` form
    /// removes the closing line's indentation from every line that has it.
    fn heredoc(&mut self) -> Result<String, PolicyError> {
        let start_line = self.line;
        self.bump();
        self.bump();
        let indented = self.peek() == Some('-');
        if indented {
            self.bump();
        }
        let anchor_start = self.pos;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.bump();
        }
        let anchor = self.src.get(anchor_start..self.pos).unwrap_or("");
        if anchor.is_empty() {
            return Err(self.error("zero-length heredoc anchor"));
        }
        if self.peek() == Some('\r') {
            self.bump();
        }
        if self.bump() != Some('\n') {
            return Err(self.error("invalid characters in heredoc anchor"));
        }
        let mut lines: Vec<&str> = Vec::new();
        loop {
            let rest = self.rest();
            let Some(end) = rest.find('\n') else {
                return Err(PolicyError::new(format!(
                    "syntax error on line {start_line}: heredoc not terminated"
                )));
            };
            let line = rest.get(..end).unwrap_or("");
            // Past the line and its newline (ASCII, so still a boundary).
            self.pos += end + 1;
            self.line += 1;
            if line.trim_start().trim_end_matches('\r') == anchor {
                let indent = line
                    .get(..line.len() - line.trim_start().len())
                    .unwrap_or("");
                let mut out = String::new();
                let strip = indented && lines.iter().all(|l| l.starts_with(indent));
                for l in lines {
                    out.push_str(if strip {
                        l.get(indent.len()..).unwrap_or(l)
                    } else {
                        l
                    });
                    out.push('\n');
                }
                return Ok(out);
            }
            lines.push(line);
        }
    }

    fn number(&mut self) -> Result<Token, PolicyError> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.bump();
        }
        let digits_start = self.pos;
        if self.peek() == Some('0') && matches!(self.peek2(), Some('x' | 'X')) {
            self.bump();
            self.bump();
            let hex_start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.bump();
            }
            let hex = self.src.get(hex_start..self.pos).unwrap_or("");
            let negative = digits_start > start;
            return i64::from_str_radix(hex, 16)
                .map(|v| Token::Int(if negative { -v } else { v }))
                .map_err(|_| self.error(format!("invalid number 0x{}", quote(hex))));
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let mut float = false;
        if self.peek() == Some('.') && self.peek2().is_some_and(|c| c.is_ascii_digit()) {
            float = true;
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            float = true;
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.error("invalid number exponent"));
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        let text = self.src.get(start..self.pos).unwrap_or("");
        if float {
            return match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Token::Float(f)),
                _ => Err(self.error(format!("invalid number {}", quote(text)))),
            };
        }
        let digits = self.src.get(digits_start..self.pos).unwrap_or("");
        let negative = digits_start > start;
        let parsed = if digits.len() > 1 && digits.starts_with('0') {
            i64::from_str_radix(digits, 8)
        } else {
            digits.parse::<i64>()
        };
        parsed
            .map(|v| Token::Int(if negative { -v } else { v }))
            .map_err(|_| self.error(format!("invalid number {}", quote(text))))
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<(Token, usize)>,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&Token, PolicyError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        match &self.peeked {
            Some((token, _)) => Ok(token),
            None => Ok(&Token::Eof),
        }
    }

    fn next(&mut self) -> Result<(Token, usize), PolicyError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    fn error_at(line: usize, message: impl std::fmt::Display) -> PolicyError {
        PolicyError::new(format!("syntax error on line {line}: {message}"))
    }

    fn document(&mut self) -> Result<Vec<Item>, PolicyError> {
        // `items` stops only at the end of input at the top level.
        self.items(true)
    }

    /// Items up to the end of input (top level) or up to a `}` (left for
    /// the caller to take).
    fn items(&mut self, top: bool) -> Result<Vec<Item>, PolicyError> {
        let mut items = Vec::new();
        loop {
            match self.peek()? {
                Token::Eof if top => return Ok(items),
                Token::RBrace if !top => return Ok(items),
                _ => {}
            }
            items.push(self.item()?);
            if *self.peek()? == Token::Comma {
                self.next()?;
            }
        }
    }

    fn item(&mut self) -> Result<Item, PolicyError> {
        let mut keys = Vec::new();
        let mut first_line = 0;
        loop {
            let (token, line) = self.next()?;
            if keys.is_empty() {
                first_line = line;
            }
            match token {
                Token::Ident(k) | Token::Str(k) => keys.push(k),
                Token::Assign if keys.len() == 1 => {
                    let value = self.value()?;
                    return Ok(Item {
                        keys,
                        value,
                        line: first_line,
                    });
                }
                Token::Assign if keys.is_empty() => {
                    return Err(Self::error_at(line, "expected a key before '='"));
                }
                Token::Assign => {
                    return Err(Self::error_at(
                        line,
                        "a key with labels must be followed by '{', not '='",
                    ));
                }
                Token::LBrace if !keys.is_empty() => {
                    let value = self.object(line)?;
                    return Ok(Item {
                        keys,
                        value,
                        line: first_line,
                    });
                }
                other => {
                    return Err(Self::error_at(
                        line,
                        format!("expected a key, '=' or '{{', found {}", other.describe()),
                    ));
                }
            }
        }
    }

    /// The rest of an object after its `{`.
    fn object(&mut self, open_line: usize) -> Result<Node, PolicyError> {
        self.enter(open_line)?;
        let items = self.items(false)?;
        match self.next()? {
            (Token::RBrace, _) => {}
            (other, line) => {
                return Err(Self::error_at(
                    line,
                    format!("expected '}}', found {}", other.describe()),
                ));
            }
        }
        self.depth -= 1;
        Ok(Node::Object(items))
    }

    fn enter(&mut self, line: usize) -> Result<(), PolicyError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Self::error_at(
                line,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Node, PolicyError> {
        let (token, line) = self.next()?;
        match token {
            Token::Str(s) | Token::Heredoc(s) => Ok(Node::Str(s)),
            Token::Int(i) => Ok(Node::Int(i)),
            Token::Float(f) => Ok(Node::Float(f)),
            Token::Bool(b) => Ok(Node::Bool(b)),
            Token::LBrace => self.object(line),
            Token::LBrack => {
                self.enter(line)?;
                let mut values = Vec::new();
                loop {
                    if *self.peek()? == Token::RBrack {
                        self.next()?;
                        break;
                    }
                    values.push(self.value()?);
                    match self.next()? {
                        (Token::Comma, _) => {}
                        (Token::RBrack, _) => break,
                        (other, line) => {
                            return Err(Self::error_at(
                                line,
                                format!("expected ',' or ']', found {}", other.describe()),
                            ));
                        }
                    }
                }
                self.depth -= 1;
                Ok(Node::List(values))
            }
            other => Err(Self::error_at(
                line,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hcl(text: &str) -> Vec<Item> {
        let doc = parse_document(text).unwrap();
        assert!(!doc.json);
        doc.items
    }

    fn err(text: &str) -> String {
        match parse_document(text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn item(keys: &[&str], value: Node, line: usize) -> Item {
        Item {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            value,
            line,
        }
    }

    #[test]
    fn blocks_attributes_and_lines() {
        let items = hcl(
            "# comment\nname = \"dev\"\n// another\npath \"secret/*\" {\n  capabilities = [\"read\", \"list\",]\n}\n",
        );
        assert_eq!(
            items,
            vec![
                item(&["name"], Node::Str("dev".into()), 2),
                item(
                    &["path", "secret/*"],
                    Node::Object(vec![item(
                        &["capabilities"],
                        Node::List(vec![Node::Str("read".into()), Node::Str("list".into())]),
                        5
                    )]),
                    4
                ),
            ]
        );
    }

    #[test]
    fn hcl1_forms_hcl2_refuses() {
        // Two blocks on one line, commas between items, blocks inside an
        // object value, `${` as text, a block comment.
        let items = hcl(concat!(
            "path \"a\" { capabilities = [\"read\"], } path \"b/${x}\" { policy = \"read\" }\n",
            "/* a\n comment */ path \"c\" {\n control_group = {\n ttl = \"48m\"\n",
            " factor \"admin\" {\n controlled_capabilities = [\"create\"]\n identity {\n",
            " group_names = [\"admin\"]\n approvals = 1\n }\n }\n }\n}\n",
        ));
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].keys, ["path", "b/${x}"]);
        let Node::Object(body) = &items[2].value else {
            panic!()
        };
        assert_eq!(body[0].key(), "control_group");
        assert_eq!(items[2].line, 3);
    }

    #[test]
    fn literals() {
        let items = hcl(concat!(
            "a = 300\nb = -12\nc = 1.5\nd = 0x1F\ne = 017\nf = true\ng = false\n",
            "h = \"tab\\there \\\"q\\\" \\u00e9 \\x41 \\101\"\n",
            "i = <<EOF\nline one\n  line two\nEOF\n",
            "j = <<-EOT\n    x\n      y\n    EOT\n",
            "k = [[1, 2], {z = \"w\"}]\n",
        ));
        let values: Vec<&Node> = items.iter().map(|i| &i.value).collect();
        assert_eq!(values[0], &Node::Int(300));
        assert_eq!(values[1], &Node::Int(-12));
        assert_eq!(values[2], &Node::Float(1.5));
        assert_eq!(values[3], &Node::Int(31));
        assert_eq!(values[4], &Node::Int(15));
        assert_eq!(values[5], &Node::Bool(true));
        assert_eq!(values[6], &Node::Bool(false));
        assert_eq!(values[7], &Node::Str("tab\there \"q\" é A A".into()));
        assert_eq!(values[8], &Node::Str("line one\n  line two\n".into()));
        assert_eq!(values[9], &Node::Str("x\n  y\n".into()));
        assert_eq!(
            values[10].to_json(),
            serde_json::json!([[1, 2], {"z": "w"}])
        );
    }

    #[test]
    fn json_documents() {
        let doc = parse_document(
            r#" {"path": {"secret/*": {"capabilities": ["read"], "max_wrapping_ttl": 3.5}}}"#,
        )
        .unwrap();
        assert!(doc.json);
        assert_eq!(doc.items[0].key(), "path");
        assert_eq!(doc.items[0].line, 0);
        assert!(err("{\"path\": ").starts_with("invalid JSON"));
        assert!(err("{}} ").starts_with("invalid JSON"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        assert_eq!(
            err("path \"a\" {\n  capabilities = [\"read\"\n}\n"),
            "syntax error on line 3: expected ',' or ']', found '}'"
        );
        assert_eq!(
            err("path \"a\" {\n capabilities = [\"read]\n}"),
            "syntax error on line 2: string not terminated"
        );
        assert_eq!(
            err("path \"a\" = {}"),
            "syntax error on line 1: a key with labels must be followed by '{', not '='"
        );
        assert_eq!(
            err("= 1"),
            "syntax error on line 1: expected a key before '='"
        );
        assert_eq!(
            err("a = ident"),
            "syntax error on line 1: expected a value, found identifier \"ident\""
        );
        assert_eq!(
            err("path \"a\" {"),
            "syntax error on line 1: expected a key, '=' or '{', found end of input"
        );
        assert_eq!(
            err("a = 1 }"),
            "syntax error on line 1: expected a key, '=' or '{', found '}'"
        );
        assert_eq!(
            err("a = \"\\q\""),
            "syntax error on line 1: invalid escape sequence \\q"
        );
        assert_eq!(
            err("a = \"\\xff\""),
            "syntax error on line 1: escape sequence is not valid UTF-8"
        );
        assert_eq!(
            err("a = <<EOF\nno end"),
            "syntax error on line 1: heredoc not terminated"
        );
        assert_eq!(
            err("a = 1 /* open"),
            "syntax error on line 1: comment not terminated"
        );
        assert_eq!(
            err("a = 99999999999999999999"),
            "syntax error on line 1: invalid number 99999999999999999999"
        );
        assert_eq!(
            err("a = 1e999"),
            "syntax error on line 1: invalid number 1e999"
        );
        assert_eq!(
            err("a = @"),
            "syntax error on line 1: illegal character '@'"
        );
        let long = format!("a = {}", "x".repeat(500));
        assert!(err(&long).len() < 120);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("a = {}", "[".repeat(100_000));
        assert!(err(&deep).contains("nested deeper than 64 levels"));
        let deep = format!("a = {}", "{b = ".repeat(100_000));
        assert!(err(&deep).contains("nested deeper than 64 levels"));
        let deep = format!("a {}", "b {".repeat(100_000));
        assert!(err(&deep).contains("nested deeper than 64 levels"));
        let deep = "[".repeat(100_000);
        assert!(parse_document(&format!("{{\"a\": {deep}")).is_err());
        let ok = format!("a = {}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_document(&ok).is_ok());
    }
}
