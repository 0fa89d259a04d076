//! Vault's path-as-schema framework, the parts the engine needs: every
//! endpoint is declared as data ([`Path`], in [`path`]) in the table of its
//! [`Backend`], every field an endpoint or a destination type takes as a
//! [`FieldSpec`] (in [`field`]), and request data is coerced against those
//! declarations ([`parse`]). The OpenAPI document is written from the same
//! tables ([`openapi`]).

pub mod backend;
pub mod field;
pub mod openapi;
pub mod parse;
pub mod path;

pub use backend::Backend;
pub use field::{Check, FieldSpec, FieldType, MASK, Preset};
pub use parse::{Fields, parse, parse_bool, parse_tables, weak_int};
pub use path::{Call, FieldTables, Op, Params, Path, Schema, op};
