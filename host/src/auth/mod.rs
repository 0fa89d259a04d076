//! Identity: tokens are the host's business. The engine only ever receives the
//! resolved caller. Tokens are stored hashed (SHA-256 of a 144-bit random
//! secret), under host-only keys that no tenant's storage view can reach.
//! What a caller may do is decided in one place ([`acl`]), on the ACL its
//! policies compile to ([`PolicyStore::acl`]).

pub mod acl;
mod authority;
mod caller;
pub mod policies;
pub mod policy;

pub use acl::ROOT_POLICY;
pub use authority::{Authority, Subject};
pub use caller::{Caller, Token};
pub use policies::{Namespace, PolicyStore, PolicyStoreError, StoredPolicy};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::storage::{Backend, Condition, Op, SharedBackend, StorageError};

const TOKEN_PREFIX: &str = "core/tokens/";

#[derive(Serialize, Deserialize)]
struct TokenEntry {
    accessor: String,
    display_name: String,
    policies: Vec<String>,
    path: String,
    creation_time: u64,
}

#[derive(Clone)]
pub struct TokenStore {
    backend: SharedBackend,
}

/// A newly created token, shown once.
#[derive(Debug)]
pub struct NewToken {
    pub token: Token,
    pub accessor: String,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `n` random characters from [0-9A-Za-z].
pub fn random_id(n: usize) -> Result<String, StorageError> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut buf = [0u8; 64];
        getrandom::fill(&mut buf)
            .map_err(|e| StorageError::Unavailable(format!("no randomness: {e}")))?;
        // Rejection sampling keeps the distribution uniform.
        for b in buf {
            if out.len() < n
                && usize::from(b) < 248
                && let Some(c) = ALPHABET.get(usize::from(b) % 62)
            {
                out.push(char::from(*c));
            }
        }
    }
    Ok(out)
}

impl TokenStore {
    pub fn new(backend: SharedBackend) -> Self {
        TokenStore { backend }
    }

    /// Creates a root token; `id` chooses its value (dev mode's `--dev-root-token-id`).
    pub async fn create_root(&self, id: Option<String>) -> Result<NewToken, StorageError> {
        let token = Token::new(match id {
            Some(id) if !id.is_empty() => id,
            _ => format!("hvs.{}", random_id(24)?),
        });
        let accessor = random_id(24)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let entry = TokenEntry {
            accessor: accessor.clone(),
            display_name: "root".to_string(),
            policies: vec![ROOT_POLICY.to_string()],
            path: "auth/token/root".to_string(),
            creation_time: now,
        };
        let value = serde_json::to_vec(&entry).map_err(|e| StorageError::Invalid(e.to_string()))?;
        let key = format!("{TOKEN_PREFIX}{}", hash(token.expose()));
        self.backend
            .commit(
                vec![Condition {
                    key: key.clone(),
                    version: None,
                }],
                vec![Op::Put { key, value }],
            )
            .await?;
        Ok(NewToken { token, accessor })
    }

    /// Resolves a token to its caller, which keeps it; `None` for unknown
    /// tokens.
    pub async fn lookup(&self, token: Token) -> Result<Option<Caller>, StorageError> {
        if token.is_empty() || token.len() > 512 {
            return Ok(None);
        }
        let Some(entry) = self
            .backend
            .get(&format!("{TOKEN_PREFIX}{}", hash(token.expose())))
            .await?
        else {
            return Ok(None);
        };
        let entry: TokenEntry = serde_json::from_slice(&entry.value)
            .map_err(|e| StorageError::Unavailable(format!("corrupt token record: {e}")))?;
        Ok(Some(Caller {
            token,
            accessor: entry.accessor,
            display_name: entry.display_name,
            policies: entry.policies,
            path: entry.path,
            creation_time: entry.creation_time,
        }))
    }

    /// Resolves an accessor to the caller of its token; `None` for unknown
    /// accessors. Reads every token record: the accessor index of the token
    /// store replaces this scan.
    pub async fn lookup_accessor(&self, accessor: &str) -> Result<Option<Caller>, StorageError> {
        if accessor.is_empty() {
            return Ok(None);
        }
        let mut after: Option<String> = None;
        loop {
            let page = self
                .backend
                .list(TOKEN_PREFIX, after.as_deref(), None, 0)
                .await?;
            for hash in &page.keys {
                let Some(entry) = self.backend.get(&format!("{TOKEN_PREFIX}{hash}")).await? else {
                    continue;
                };
                let Ok(entry) = serde_json::from_slice::<TokenEntry>(&entry.value) else {
                    continue;
                };
                if entry.accessor == accessor {
                    return Ok(Some(Caller {
                        token: Token::new(String::new()),
                        accessor: entry.accessor,
                        display_name: entry.display_name,
                        policies: entry.policies,
                        path: entry.path,
                        creation_time: entry.creation_time,
                    }));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(None),
            }
        }
    }
}
