//! Normalisation of rendered external names to each destination's character
//! set: every character the provider refuses becomes the rule's
//! replacement (one for one, no collapsing), the case is adjusted, the
//! leading-character rule is enforced, and what cannot be fixed without
//! changing the name's meaning — empty, too long, a reserved prefix — is an
//! error (reported as 400 / `CLIENT_SIDE_ERROR`; names are never silently
//! truncated: templates have `truncate` and `truncate_sha256` for that).

/// Case transform applied after replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Keep,
    Upper,
}

/// How one destination type's names are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRule {
    /// Destination type, for messages.
    pub destination: &'static str,
    /// ASCII letters and digits are always allowed; so are these characters.
    pub also_allowed: &'static str,
    /// What every other character becomes.
    pub replacement: char,
    pub case: Case,
    /// In characters.
    pub max_len: usize,
    /// A name starting with a digit gets `_` in front.
    pub no_leading_digit: bool,
    /// Prefixes (compared case-insensitively) the provider refuses.
    pub reserved_prefixes: &'static [&'static str],
}

impl NameRule {
    pub fn allows(&self, c: char) -> bool {
        c.is_ascii_alphanumeric() || self.also_allowed.contains(c)
    }

    /// Normalises a rendered name; an error when no valid name results.
    pub fn apply(&self, name: &str) -> Result<String, String> {
        let mut out: String = name
            .chars()
            .map(|c| if self.allows(c) { c } else { self.replacement })
            .collect();
        if self.case == Case::Upper {
            out.make_ascii_uppercase();
        }
        if out.is_empty() {
            return Err(format!(
                "the external name for {} is empty; check secret_name_template",
                self.destination
            ));
        }
        if self.no_leading_digit && out.starts_with(|c: char| c.is_ascii_digit()) {
            out.insert(0, '_');
        }
        if let Some(prefix) = self.reserved_prefixes.iter().find(|p| {
            out.get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        }) {
            return Err(format!(
                "external name {} starts with {prefix}, which {} does not allow; \
                 change secret_name_template",
                shown(&out),
                self.destination
            ));
        }
        let len = out.chars().count();
        if len > self.max_len {
            return Err(format!(
                "external name {} is {len} characters long but {} allows at most {}; \
                 shorten it in secret_name_template (e.g. with truncate or truncate_sha256)",
                shown(&out),
                self.destination,
                self.max_len
            ));
        }
        Ok(out)
    }
}

/// The name, quoted, cut after 64 characters for messages.
fn shown(name: &str) -> String {
    let mut chars = name.chars();
    let head: String = chars.by_ref().take(64).collect();
    if chars.next().is_some() {
        format!("{:?}", format!("{head}..."))
    } else {
        format!("{head:?}")
    }
}

/// AWS Secrets Manager: 1–512 characters of `[A-Za-z0-9/_+=.@-]`.
pub const AWS_SM: NameRule = NameRule {
    destination: "aws-sm",
    also_allowed: "/_+=.@-",
    replacement: '_',
    case: Case::Keep,
    max_len: 512,
    no_leading_digit: false,
    reserved_prefixes: &[],
};

/// Azure Key Vault: 1–127 characters of `[0-9A-Za-z-]`.
pub const AZURE_KV: NameRule = NameRule {
    destination: "azure-kv",
    also_allowed: "-",
    replacement: '-',
    case: Case::Keep,
    max_len: 127,
    no_leading_digit: false,
    reserved_prefixes: &[],
};

/// Google Secret Manager: 1–255 characters of `[A-Za-z0-9_-]`.
pub const GCP_SM: NameRule = NameRule {
    destination: "gcp-sm",
    also_allowed: "_-",
    replacement: '_',
    case: Case::Keep,
    max_len: 255,
    no_leading_digit: false,
    reserved_prefixes: &[],
};

/// GitHub Actions secrets: `[A-Za-z0-9_]`, case-insensitive (kept upper-case),
/// not starting with a digit nor with `GITHUB_`. GitHub documents no length
/// limit for secret names; kvsync caps them at 255 characters, which is what
/// the other providers allow and far above any default template's output.
pub const GH: NameRule = NameRule {
    destination: "gh",
    also_allowed: "_",
    replacement: '_',
    case: Case::Upper,
    max_len: 255,
    no_leading_digit: true,
    reserved_prefixes: &["GITHUB_"],
};

/// Vercel environment variables: letters, digits and `_`, not starting with a digit.
pub const VERCEL: NameRule = NameRule {
    destination: "vercel-project",
    also_allowed: "_",
    replacement: '_',
    case: Case::Keep,
    max_len: 255,
    no_leading_digit: true,
    reserved_prefixes: &[],
};

/// The in-memory test destination: as AWS Secrets Manager.
pub const IN_MEM: NameRule = NameRule {
    destination: "in-mem",
    ..AWS_SM
};

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [NameRule; 6] = [AWS_SM, AZURE_KV, GCP_SM, GH, VERCEL, IN_MEM];

    #[test]
    fn aws_sm() {
        assert_eq!(
            AWS_SM.apply("vault/kv_1234/path/to/secret1").unwrap(),
            "vault/kv_1234/path/to/secret1"
        );
        assert_eq!(AWS_SM.apply("a+b=c.d@e-f/g_h").unwrap(), "a+b=c.d@e-f/g_h");
        assert_eq!(AWS_SM.apply("a b:c*d").unwrap(), "a_b_c_d");
        assert_eq!(AWS_SM.apply("1abc").unwrap(), "1abc");
        assert_eq!(
            IN_MEM.apply("vault/kv_1234/my secret").unwrap(),
            "vault/kv_1234/my_secret"
        );
        assert_eq!(IN_MEM.destination, "in-mem");
        assert_eq!(IN_MEM.max_len, 512);
    }

    #[test]
    fn azure_kv() {
        assert_eq!(
            AZURE_KV.apply("vault-kv_1234-my/secret").unwrap(),
            "vault-kv-1234-my-secret"
        );
        assert_eq!(AZURE_KV.apply("a.b@c+d=e").unwrap(), "a-b-c-d-e");
        assert_eq!(AZURE_KV.apply(&"a".repeat(127)).unwrap().len(), 127);
        let e = AZURE_KV.apply(&"a".repeat(128)).unwrap_err();
        assert!(
            e.contains("128 characters long but azure-kv allows at most 127"),
            "{e}"
        );
        assert!(e.contains("truncate"), "{e}");
    }

    #[test]
    fn gcp_sm() {
        assert_eq!(
            GCP_SM.apply("vault/kv_1234/my-secret").unwrap(),
            "vault_kv_1234_my-secret"
        );
        assert_eq!(GCP_SM.apply("a.b+c").unwrap(), "a_b_c");
        assert!(GCP_SM.apply(&"x".repeat(256)).is_err());
        assert!(GCP_SM.apply(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn gh() {
        assert_eq!(
            GH.apply("VAULT_KV_1234_path/to/my-secret_foo").unwrap(),
            "VAULT_KV_1234_PATH_TO_MY_SECRET_FOO"
        );
        assert_eq!(GH.apply("1password").unwrap(), "_1PASSWORD");
        assert_eq!(GH.apply("a.b").unwrap(), "A_B");
        let e = GH.apply("github_token").unwrap_err();
        assert!(e.contains("starts with GITHUB_"), "{e}");
        assert!(GH.apply("github-x").is_err());
        assert_eq!(GH.apply("GITHUBX").unwrap(), "GITHUBX");
        assert_eq!(GH.apply("MY_GITHUB_X").unwrap(), "MY_GITHUB_X");
        assert!(GH.apply(&"A".repeat(255)).is_ok());
        assert!(GH.apply(&"A".repeat(256)).is_err());
        // The `_` in front counts towards the limit.
        assert!(GH.apply(&"1".repeat(255)).is_err());
    }

    #[test]
    fn vercel() {
        assert_eq!(
            VERCEL.apply("Vault_kv_1234/my-secret").unwrap(),
            "Vault_kv_1234_my_secret"
        );
        assert_eq!(VERCEL.apply("9lives").unwrap(), "_9lives");
        assert_eq!(VERCEL.apply("github_ok").unwrap(), "github_ok");
        assert!(VERCEL.apply(&"v".repeat(256)).is_err());
    }

    #[test]
    fn non_ascii_one_replacement_per_char() {
        let name = "sécret/日本-😀";
        assert_eq!(AWS_SM.apply(name).unwrap(), "s_cret/__-_");
        assert_eq!(AZURE_KV.apply(name).unwrap(), "s-cret-----");
        assert_eq!(GCP_SM.apply(name).unwrap(), "s_cret___-_");
        assert_eq!(GH.apply(name).unwrap(), "S_CRET_____");
        assert_eq!(VERCEL.apply(name).unwrap(), "s_cret_____");
        // Non-ASCII letters and digits are replaced, not case-mapped.
        assert_eq!(GH.apply("ßtraße").unwrap(), "_TRA_E");
        assert_eq!(GH.apply("١٢٣").unwrap(), "___");
        // Length is in characters of the result.
        assert!(AZURE_KV.apply(&"é".repeat(127)).is_ok());
    }

    #[test]
    fn empty_and_too_long() {
        for rule in ALL {
            let e = rule.apply("").unwrap_err();
            assert!(e.contains("empty"), "{e}");
            assert!(e.contains(rule.destination), "{e}");
            let long = "n".repeat(rule.max_len + 1);
            let e = rule.apply(&long).unwrap_err();
            assert!(
                e.contains(&format!("allows at most {}", rule.max_len)),
                "{e}"
            );
            assert!(e.contains("...\""), "the name is cut in messages: {e}");
            assert!(e.len() < 300, "{e}");
            assert!(rule.apply(&"n".repeat(rule.max_len)).is_ok());
        }
    }

    #[test]
    fn results_are_stable() {
        for rule in ALL {
            for name in ["vault/kv_1234/a b", "1x", "ü-ö_ä", "VAULT_KV"] {
                let once = rule.apply(name).unwrap();
                assert_eq!(
                    rule.apply(&once).unwrap(),
                    once,
                    "{}: {name}",
                    rule.destination
                );
                assert!(once.chars().all(|c| rule.allows(c)), "{once}");
            }
        }
    }
}
