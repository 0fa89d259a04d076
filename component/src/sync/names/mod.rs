//! External names: the `secret_name_template` language and the normalisation of
//! rendered names to each destination's character set.

pub mod normalize;
pub mod template;

pub use normalize::NameRule;
pub use template::{Template, TemplateContext};
