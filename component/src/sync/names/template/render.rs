//! Evaluates a parsed template over the values of one secret.

use super::functions::too_long;
use super::parser::{Expr, Node};
use super::{MAX_VALUE_BYTES, Template, TemplateContext, location};

/// A value while rendering: function arguments and results.
pub(super) enum Value {
    Str(String),
    Int(i64),
}

impl Template {
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
            if out.len() > MAX_VALUE_BYTES {
                return Err(format!(
                    "the rendered name would be longer than {MAX_VALUE_BYTES} bytes"
                ));
            }
        }
        Ok(out)
    }

    fn eval(&self, expr: &Expr, ctx: &TemplateContext) -> Result<Value, String> {
        match expr {
            Expr::Str(s) => Ok(Value::Str(s.clone())),
            Expr::Int(n) => Ok(Value::Int(*n)),
            Expr::Field { field, at } => match field.value(ctx) {
                Some(v) if v.len() > MAX_VALUE_BYTES => Err(format!(
                    "{{{{ .{} }}}} is longer than {MAX_VALUE_BYTES} bytes",
                    field.name()
                )),
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
                let out = func.apply(&values)?;
                if out.len() > MAX_VALUE_BYTES {
                    return Err(too_long(*func));
                }
                Ok(Value::Str(out))
            }
        }
    }
}
