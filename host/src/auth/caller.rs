//! Who makes a request: the caller a token resolves to. The token itself is
//! held in a [`Token`]: wiped from memory when dropped, never printed.

use std::fmt;

use zeroize::Zeroizing;

/// A client token in memory. Its `Debug` is masked, and the buffer is wiped
/// when the value is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Zeroizing<String>);

impl Token {
    pub fn new(token: String) -> Self {
        Token(Zeroizing::new(token))
    }

    /// The token's text, for the few places that must send or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// The authenticated caller of a request, resolved by the host from its
/// token. The engine receives a copy of it with each request (the runtime
/// converts it at the call); what the caller may do is [`super::allowed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's own token (shown to its owner by `auth/token/lookup-self`).
    pub token: Token,
    /// The token's accessor.
    pub accessor: String,
    pub display_name: String,
    pub policies: Vec<String>,
    /// Where the token was created, e.g. `auth/token/root`.
    pub path: String,
    /// Creation time in seconds since the Unix epoch.
    pub creation_time: u64,
    /// The id of the namespace the token belongs to (`root` for the root
    /// namespace): its policies are that namespace's.
    pub namespace_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let secret = "hvs.s3cr3t-t0k3n-value";
        let caller = Caller {
            token: Token::new(secret.to_string()),
            accessor: "acc".into(),
            display_name: "root".into(),
            policies: vec!["root".into()],
            path: "auth/token/root".into(),
            creation_time: 0,
            namespace_id: "root".into(),
        };
        for text in [
            format!("{caller:?}"),
            format!("{caller:#?}"),
            format!("{:?}", caller.token),
            format!("{:?}", Some(caller.clone())),
        ] {
            assert!(!text.contains(secret), "{text}");
            assert!(text.contains("*****"), "{text}");
        }
        assert!(format!("{caller:?}").contains("acc"));
        assert_eq!(caller.token.expose(), secret);
        assert_eq!(caller.token.len(), secret.len());
        assert!(!caller.token.is_empty());
    }
}
