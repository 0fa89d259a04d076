//! Builds the tree of a template from its text and tokens, with static
//! arity and type checks (every value is a string or an integer).

use super::functions::{FUNCS, Func, GO_BUILTINS, GO_KEYWORDS, NONDETERMINISTIC};
use super::lexer::{Lexer, Spanned, Tok, is_space};
use super::{FIELDS, Field, MAX_NESTING, location};

/// A template is a sequence of literal text and actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Text(String),
    Action(Expr),
}

/// The pipeline of one action, its calls nested (a piped value is the last argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expr {
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
    pub(super) fn uses(&self, f: Field) -> bool {
        match self {
            Expr::Field { field, .. } => *field == f,
            Expr::Call { args, .. } => args.iter().any(|a| a.uses(f)),
            Expr::Str(_) | Expr::Int(_) => false,
        }
    }

    /// The most characters this expression renders to when every field is at
    /// most `field` characters long (an upper bound, saturating).
    pub(super) fn max_chars(&self, field: usize) -> usize {
        match self {
            Expr::Str(s) => s.chars().count(),
            Expr::Int(n) => n.to_string().len(),
            Expr::Field { .. } => field,
            Expr::Call { func, args } => func.max_chars(args, field),
        }
    }

    /// The fewest characters this expression may render to.
    pub(super) fn min_chars(&self) -> usize {
        match self {
            Expr::Str(s) => s.chars().count(),
            Expr::Int(n) => n.to_string().len(),
            // A field may be empty; a function's result is not looked into.
            Expr::Field { .. } | Expr::Call { .. } => 0,
        }
    }
}

/// The static type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Str,
    Int,
}

impl Ty {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Int => "an integer",
        }
    }
}

impl Lexer<'_> {
    /// The text and actions of the whole template.
    pub(super) fn template(&self) -> Result<Vec<Node>, String> {
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
                    depth: 0,
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
}

fn push_text(nodes: &mut Vec<Node>, text: &str) {
    if !text.is_empty() {
        nodes.push(Node::Text(text.to_string()));
    }
}

/// Recursive descent over the tokens of one action, with static type checks.
struct TokParser<'a> {
    p: &'a Lexer<'a>,
    toks: &'a [Spanned],
    i: usize,
    /// Offset of the action's `{{`.
    start: usize,
    /// How many parentheses are open.
    depth: usize,
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
                if self.depth >= MAX_NESTING {
                    return Err(self.p.err(
                        at,
                        format!("parentheses are nested more than {MAX_NESTING} deep"),
                    ));
                }
                self.depth += 1;
                let value = self.pipeline()?;
                self.depth -= 1;
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
