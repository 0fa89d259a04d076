//! PLACEHOLDER: the Go-template subset for `secret_name_template` (being written).

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
}

impl Template {
    /// Parses `source`; syntax errors, unknown fields and unknown functions are errors.
    pub fn parse(source: &str) -> Result<Template, String> {
        Ok(Template {
            source: source.to_string(),
        })
    }

    /// Whether the template refers to the field `name` (e.g. `SecretKey`).
    pub fn uses(&self, name: &str) -> bool {
        self.source.contains(name)
    }

    pub fn render(&self, _ctx: &TemplateContext) -> Result<String, String> {
        Err("templates are not implemented yet".to_string())
    }
}
