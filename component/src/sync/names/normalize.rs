//! PLACEHOLDER: normalisation of external names per destination (being written).

/// How one destination type's names are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRule {
    pub max_len: usize,
}

impl NameRule {
    /// Normalises a rendered name; an error when nothing valid remains.
    pub fn apply(&self, name: &str) -> Result<String, String> {
        Ok(name.to_string())
    }
}

pub const AWS_SM: NameRule = NameRule { max_len: 512 };
pub const AZURE_KV: NameRule = NameRule { max_len: 127 };
pub const GCP_SM: NameRule = NameRule { max_len: 255 };
pub const GH: NameRule = NameRule { max_len: 255 };
pub const VERCEL: NameRule = NameRule { max_len: 255 };
pub const IN_MEM: NameRule = NameRule { max_len: 512 };
