//! Identity: tokens are the host's business. The engine only ever receives the
//! resolved caller, and reaches the token store through its `tokens` import.
//! Tokens are stored hashed (SHA-256 of a 143-bit random secret), under
//! host-only keys that no tenant's storage view can reach ([`tokens`]).
//! What a caller may do is decided in one place ([`acl`]), on the ACL its
//! policies compile to ([`PolicyStore::acl`]).

pub mod acl;
mod authority;
mod caller;
pub mod policies;
pub use kvsync_host_core::policy;
pub mod tokens;

pub use acl::ROOT_POLICY;
pub use authority::{Authority, Subject};
pub use caller::{Caller, Token};
pub use policies::{Namespace, PolicyStore, PolicyStoreError, StoredPolicy};
pub use tokens::{Authenticated, NewToken, Spent, TokenStore, random_id};
