//! Vault's path-as-schema framework, the parts the engine needs: each endpoint
//! declares its fields as data ([`Field`]); [`parse`] coerces request data the
//! lenient way Vault's field parser does (booleans and numbers from strings,
//! comma-separated lists, `k=v` pairs, Go durations) and reports unknown fields
//! as a warning instead of failing.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Bool,
    Int,
    String,
    /// Whole seconds, from a number or a Go duration string.
    Duration,
    /// A list of strings, from an array or one comma-separated string.
    CommaStringSlice,
    /// A list of integers, from an array or one comma-separated string.
    CommaIntSlice,
    /// A map of strings, from an object or an array of `k=v` strings.
    KvPairs,
    /// A JSON object, as sent.
    Map,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
}

impl Field {
    pub const fn new(name: &'static str, ty: FieldType) -> Self {
        Field { name, ty }
    }
}

/// The coerced values of the fields present in a request.
#[derive(Debug, Default)]
pub struct Fields {
    values: BTreeMap<&'static str, Value>,
    /// Names in the request that the schema does not declare.
    pub unknown: Vec<String>,
}

/// Coerces `data` against `schema`.
pub fn parse(schema: &[Field], data: &Map<String, Value>) -> Result<Fields, ApiError> {
    let mut fields = Fields::default();
    for (name, raw) in data {
        let Some(field) = schema.iter().find(|f| f.name == name) else {
            fields.unknown.push(name.clone());
            continue;
        };
        if raw.is_null() {
            continue;
        }
        let value = coerce(field, raw)?;
        fields.values.insert(field.name, value);
    }
    Ok(fields)
}

fn type_error(field: &Field, raw: &Value, expected: &str) -> ApiError {
    let shown = match raw {
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
        other => other.to_string(),
    };
    ApiError::BadRequest(format!(
        "error converting input {shown} for field \"{}\": expected {expected}",
        field.name
    ))
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn coerce_int(raw: &Value) -> Option<i64> {
    match raw {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn coerce(field: &Field, raw: &Value) -> Result<Value, ApiError> {
    match field.ty {
        FieldType::Bool => match raw {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::String(s) => parse_bool(s)
                .map(Value::Bool)
                .ok_or_else(|| type_error(field, raw, "a boolean")),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(Value::Bool(n.as_i64() == Some(1)))
            }
            _ => Err(type_error(field, raw, "a boolean")),
        },
        FieldType::Int => coerce_int(raw)
            .map(Value::from)
            .ok_or_else(|| type_error(field, raw, "an integer")),
        FieldType::String => match raw {
            Value::String(s) => Ok(Value::String(s.clone())),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(type_error(field, raw, "a string")),
        },
        FieldType::Duration => match raw {
            Value::Number(_) => coerce_int(raw)
                .map(Value::from)
                .ok_or_else(|| type_error(field, raw, "a duration")),
            Value::String(s) => time::parse_duration(s)
                .map(Value::from)
                .map_err(|e| ApiError::BadRequest(format!("field \"{}\": {e}", field.name))),
            _ => Err(type_error(
                field,
                raw,
                "a duration like \"30m\" or a number of seconds",
            )),
        },
        FieldType::CommaStringSlice => match raw {
            Value::String(s) => Ok(Value::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(Value::String(s.trim().to_string())),
                    Value::Number(n) => Ok(Value::String(n.to_string())),
                    _ => Err(type_error(field, raw, "a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            _ => Err(type_error(field, raw, "a list of strings")),
        },
        FieldType::CommaIntSlice => {
            let items: Vec<Value> = match raw {
                Value::String(s) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
                Value::Array(items) => items.clone(),
                Value::Number(_) => vec![raw.clone()],
                _ => return Err(type_error(field, raw, "a list of integers")),
            };
            items
                .iter()
                .map(|item| {
                    coerce_int(item)
                        .map(Value::from)
                        .ok_or_else(|| type_error(field, raw, "a list of integers"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        FieldType::KvPairs => match raw {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), Value::String(s.clone()))),
                    Value::Number(_) | Value::Bool(_) => {
                        Ok((k.clone(), Value::String(v.to_string())))
                    }
                    _ => Err(type_error(field, raw, "a map of strings")),
                })
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .and_then(|s| s.split_once('='))
                        .map(|(k, v)| (k.trim().to_string(), Value::String(v.trim().to_string())))
                        .ok_or_else(|| {
                            type_error(field, raw, "a map of strings or a list of \"key=value\"")
                        })
                })
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            Value::String(s) => s
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), Value::String(v.trim().to_string())))
                        .ok_or_else(|| {
                            type_error(field, raw, "a map of strings or a list of \"key=value\"")
                        })
                })
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            _ => Err(type_error(field, raw, "a map of strings")),
        },
        FieldType::Map => match raw {
            Value::Object(_) => Ok(raw.clone()),
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => Ok(v),
                _ => Err(type_error(field, raw, "a map")),
            },
            _ => Err(type_error(field, raw, "a map")),
        },
    }
}

impl Fields {
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.values.get(name).and_then(Value::as_bool)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.values.get(name).and_then(Value::as_i64)
    }

    /// Durations are stored as whole seconds.
    pub fn duration(&self, name: &str) -> Option<i64> {
        self.int(name)
    }

    pub fn string(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(Value::as_str)
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        self.values
            .get(name)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.values
            .get(name)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_i64).collect())
    }

    /// `KvPairs` as a string map.
    pub fn string_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.values.get(name).and_then(Value::as_object).map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
    }

    pub fn map(&self, name: &str) -> Option<&Map<String, Value>> {
        self.values.get(name).and_then(Value::as_object)
    }

    /// Vault's warning for fields the endpoint does not declare, if any.
    pub fn unknown_warning(&self) -> Option<String> {
        if self.unknown.is_empty() {
            return None;
        }
        Some(format!(
            "Endpoint ignored these unrecognized parameters: [{}]",
            self.unknown.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &[Field] = &[
        Field::new("flag", FieldType::Bool),
        Field::new("n", FieldType::Int),
        Field::new("ttl", FieldType::Duration),
        Field::new("names", FieldType::CommaStringSlice),
        Field::new("ports", FieldType::CommaIntSlice),
        Field::new("tags", FieldType::KvPairs),
    ];

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn coerces_like_vault() {
        let f = parse(
            SCHEMA,
            &data(
                json!({"flag": "true", "n": "5", "ttl": "1h", "names": "a, b", "ports": "80,443",
                         "tags": ["k=v"], "extra": 1}),
            ),
        )
        .unwrap();
        assert_eq!(f.bool("flag"), Some(true));
        assert_eq!(f.int("n"), Some(5));
        assert_eq!(f.duration("ttl"), Some(3600));
        assert_eq!(f.strings("names").unwrap(), vec!["a", "b"]);
        assert_eq!(f.ints("ports").unwrap(), vec![80, 443]);
        assert_eq!(
            f.string_map("tags").unwrap().get("k").map(String::as_str),
            Some("v")
        );
        assert_eq!(
            f.unknown_warning().unwrap(),
            "Endpoint ignored these unrecognized parameters: [extra]"
        );
    }

    #[test]
    fn rejects_wrong_types() {
        for bad in [
            json!({"flag": "maybe"}),
            json!({"n": "abc"}),
            json!({"n": [1]}),
            json!({"ttl": "soon"}),
            json!({"ports": "a,b"}),
            json!({"tags": ["novalue"]}),
        ] {
            let err = parse(SCHEMA, &data(bad)).unwrap_err();
            assert_eq!(err.status(), 400);
        }
    }
}
