//! Vault's path-as-schema framework, the parts the engine needs: every field
//! an endpoint or a destination type takes is declared as data ([`FieldSpec`],
//! in [`field`]), and request data is coerced against those declarations
//! ([`parse`]).

pub mod field;
pub mod parse;

pub use field::{Check, FieldSpec, FieldType, MASK, Preset};
pub use parse::{Fields, parse, parse_bool, parse_tables};
