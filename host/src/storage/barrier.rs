//! [`Barrier`]: encryption at rest over any [`Backend`].
//!
//! Every value is sealed with AES-256-GCM under a fresh random 96-bit nonce, with the full storage
//! key as associated data, so a sealed value only opens under the key it was written to. Stored
//! format: `1` (format version, 1 byte) ‖ nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes).
//! Keys, versions, conditions and listings pass through unchanged (like Vault's barrier, keys are
//! not encrypted).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::{Zeroize, Zeroizing};

use super::{Backend, Changes, Condition, Entry, Op, Page, StorageError};

/// Length of an [`EncryptionKey`] in bytes (AES-256).
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const FORMAT_V1: u8 = 1;

/// Where [`Barrier::init_key_check`] stores its canary. Outside `tenants/`, so no guest reaches it.
pub const KEY_CHECK_KEY: &str = "core/keyring-check";
const KEY_CHECK_CANARY: &[u8] = b"kvsync keyring check v1";

const AUTH_FAILED: &str =
    "stored value failed authentication (wrong encryption key or corrupted data)";
const KEY_MISMATCH: &str = "encryption key does not match this storage";

/// A 256-bit data encryption key. Wiped from memory on drop; never printed.
pub struct EncryptionKey {
    bytes: Box<[u8; KEY_LEN]>,
}

impl EncryptionKey {
    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, StorageError> {
        let mut bytes = Box::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|_| {
            StorageError::Unavailable("the system random number generator failed".into())
        })?;
        Ok(Self { bytes })
    }

    /// Wraps raw key bytes (the caller should wipe its own copy).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let mut bytes = bytes;
        let key = Self {
            bytes: Box::new(bytes),
        };
        bytes.zeroize();
        key
    }

    /// Parses a standard base64 key (surrounding whitespace ignored) of exactly 32 bytes.
    pub fn from_base64(encoded: &str) -> Result<Self, StorageError> {
        let invalid = || {
            StorageError::Invalid(format!(
                "encryption key must be {KEY_LEN} bytes encoded as standard base64"
            ))
        };
        let decoded = Zeroizing::new(BASE64.decode(encoded.trim()).map_err(|_| invalid())?);
        let mut bytes = Box::new([0u8; KEY_LEN]);
        if decoded.len() != KEY_LEN {
            return Err(invalid());
        }
        bytes.copy_from_slice(&decoded);
        Ok(Self { bytes })
    }

    /// The key as standard base64 (handle with care: this is the secret).
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.bytes.as_slice())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(self.bytes.as_slice()))
    }
}

impl Clone for EncryptionKey {
    /// An independent copy (wiped on its own drop).
    fn clone(&self) -> Self {
        let mut bytes = Box::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(self.bytes.as_slice());
        Self { bytes }
    }
}

impl Drop for EncryptionKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(*****)")
    }
}

/// Encryption at rest: a [`Backend`] that seals values before handing them to `inner`.
pub struct Barrier<B: Backend> {
    inner: B,
    cipher: Aes256Gcm,
}

impl<B: Backend> fmt::Debug for Barrier<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").finish_non_exhaustive()
    }
}

impl<B: Backend> Barrier<B> {
    /// Encrypts everything stored in `inner` with `key`. The key is consumed (and wiped on drop);
    /// only the expanded cipher state is kept.
    pub fn new(inner: B, key: EncryptionKey) -> Self {
        Self {
            cipher: key.cipher(),
            inner,
        }
    }

    /// The backend underneath (it sees only sealed values).
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Whether the key-check canary has been stored, i.e. this storage was initialized.
    pub async fn is_initialized(&self) -> Result<bool, StorageError> {
        Ok(self.inner.get(KEY_CHECK_KEY).await?.is_some())
    }

    /// Stores the key-check canary if absent (first initialization); if already present, checks
    /// that this barrier's key opens it (see [`Self::check_key`]).
    pub async fn init_key_check(&self) -> Result<(), StorageError> {
        let ops = vec![Op::Put {
            key: KEY_CHECK_KEY.to_owned(),
            value: KEY_CHECK_CANARY.to_vec(),
        }];
        let must_be_absent = vec![Condition {
            key: KEY_CHECK_KEY.to_owned(),
            version: None,
        }];
        match self.commit(must_be_absent, ops).await {
            Ok(_) => Ok(()),
            Err(StorageError::Conflict) => self.check_key().await,
            Err(e) => Err(e),
        }
    }

    /// Reads the key-check canary back: `Unavailable("encryption key does not match this
    /// storage")` if this barrier's key is not the one the storage was initialized with,
    /// `Unavailable("storage is not initialized ...")` if there is no canary yet.
    pub async fn check_key(&self) -> Result<(), StorageError> {
        let Some(entry) = self.inner.get(KEY_CHECK_KEY).await? else {
            return Err(StorageError::Unavailable(
                "storage is not initialized (no encryption key check stored)".into(),
            ));
        };
        match self.open(KEY_CHECK_KEY, &entry.value) {
            Ok(plain) if plain.as_slice() == KEY_CHECK_CANARY => Ok(()),
            _ => Err(StorageError::Unavailable(KEY_MISMATCH.into())),
        }
    }

    /// Same as [`Self::check_key`].
    pub async fn verify_key(&self) -> Result<(), StorageError> {
        self.check_key().await
    }

    fn seal(&self, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, StorageError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| {
            StorageError::Unavailable("the system random number generator failed".into())
        })?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|_| StorageError::Unavailable("encryption failed".into()))?;
        let mut stored = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        stored.push(FORMAT_V1);
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        Ok(stored)
    }

    fn open(&self, key: &str, stored: &[u8]) -> Result<Vec<u8>, StorageError> {
        let Some((&format, rest)) = stored.split_first() else {
            return Err(StorageError::Unavailable(
                "stored value is corrupted (empty)".into(),
            ));
        };
        if format != FORMAT_V1 {
            return Err(StorageError::Unavailable(format!(
                "stored value has an unknown encryption format ({format})"
            )));
        }
        let Some((nonce, sealed)) = rest.split_first_chunk::<NONCE_LEN>() else {
            return Err(StorageError::Unavailable(AUTH_FAILED.into()));
        };
        if sealed.len() < TAG_LEN {
            return Err(StorageError::Unavailable(AUTH_FAILED.into()));
        }
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|_| StorageError::Unavailable(AUTH_FAILED.into()))
    }
}

#[async_trait::async_trait]
impl<B: Backend> Backend for Barrier<B> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let Some(entry) = self.inner.get(key).await? else {
            return Ok(None);
        };
        Ok(Some(Entry {
            value: self.open(key, &entry.value)?,
            version: entry.version,
        }))
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        self.inner.list(prefix, after, delimiter, limit).await
    }

    async fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        let mut sealed_ops = Vec::with_capacity(ops.len());
        for op in ops {
            sealed_ops.push(match op {
                Op::Put { key, mut value } => {
                    let sealed = self.seal(&key, &value);
                    value.zeroize();
                    Op::Put {
                        value: sealed?,
                        key,
                    }
                }
                delete @ Op::Delete { .. } => delete,
            });
        }
        self.inner.commit(conditions, sealed_ops).await
    }

    fn watch(&self) -> Option<Changes> {
        self.inner.watch()
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RedbBackend;
    use std::sync::Arc;

    fn put(key: &str, value: &[u8]) -> Op {
        Op::Put {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    fn key_bytes(b: u8) -> EncryptionKey {
        EncryptionKey::from_bytes([b; KEY_LEN])
    }

    fn assert_unavailable(err: &StorageError, needle: &str) {
        match err {
            StorageError::Unavailable(msg) => assert!(msg.contains(needle), "{msg}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn round_trip() {
        let barrier = Barrier::new(RedbBackend::in_memory().unwrap(), key_bytes(1));
        let v = barrier
            .commit(vec![], vec![put("a", b"hello"), put("empty", b"")])
            .await
            .unwrap();
        let entry = barrier.get("a").await.unwrap().unwrap();
        assert_eq!(entry.value, b"hello");
        assert_eq!(entry.version, v);
        assert_eq!(barrier.get("empty").await.unwrap().unwrap().value, b"");
        assert_eq!(barrier.get("missing").await.unwrap(), None);

        // The layer below holds only the sealed form.
        let raw = barrier.inner().get("a").await.unwrap().unwrap();
        assert_eq!(raw.version, v);
        assert_eq!(raw.value.len(), 1 + NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(raw.value[0], FORMAT_V1);
        assert!(!raw.value.windows(5).any(|w| w == b"hello"));

        // Same plaintext twice: different nonces, different ciphertexts.
        barrier
            .commit(vec![], vec![put("b", b"hello")])
            .await
            .unwrap();
        let raw_b = barrier.inner().get("b").await.unwrap().unwrap();
        assert_ne!(raw.value[1..1 + NONCE_LEN], raw_b.value[1..1 + NONCE_LEN]);

        // Conditions, versions and listing pass through.
        let err = barrier
            .commit(
                vec![Condition {
                    key: "a".into(),
                    version: None,
                }],
                vec![put("a", b"x")],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Conflict));
        let v2 = barrier
            .commit(
                vec![Condition {
                    key: "a".into(),
                    version: Some(v),
                }],
                vec![put("a", b"x"), Op::Delete { key: "b".into() }],
            )
            .await
            .unwrap();
        assert_eq!(barrier.get("a").await.unwrap().unwrap().version, v2);
        let page = barrier.list("", None, None, 0).await.unwrap();
        assert_eq!(page.keys, ["a", "empty"]);
    }

    #[tokio::test]
    async fn stores_no_plaintext_on_disk() {
        const MARKER: &[u8] = b"PLAINTEXT-MARKER-8c1f0d2e";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvsync.redb");
        {
            let barrier = Barrier::new(RedbBackend::open(&path).unwrap(), key_bytes(7));
            barrier.init_key_check().await.unwrap();
            let mut value = b"{\"password\":\"".to_vec();
            value.extend_from_slice(MARKER);
            value.extend_from_slice(b"\"}");
            barrier
                .commit(vec![], vec![put("tenants/root/secret", &value)])
                .await
                .unwrap();
            assert!(
                barrier
                    .get("tenants/root/secret")
                    .await
                    .unwrap()
                    .unwrap()
                    .value
                    .windows(MARKER.len())
                    .any(|w| w == MARKER)
            );
        }
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.is_empty());
        assert!(
            !raw.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext found in the database file"
        );
        // Keys are not encrypted (like Vault's barrier): the file really holds our data.
        assert!(raw.windows(19).any(|w| w == b"tenants/root/secret"));
        assert!(
            !raw.windows(KEY_CHECK_CANARY.len())
                .any(|w| w == KEY_CHECK_CANARY)
        );
    }

    #[tokio::test]
    async fn wrong_key_is_detected() {
        let backend = Arc::new(RedbBackend::in_memory().unwrap());
        let right = Barrier::new(Arc::clone(&backend), key_bytes(1));
        assert!(!right.is_initialized().await.unwrap());
        assert_unavailable(&right.check_key().await.unwrap_err(), "not initialized");
        right.init_key_check().await.unwrap();
        assert!(right.is_initialized().await.unwrap());
        right.check_key().await.unwrap();
        right.verify_key().await.unwrap();
        // init again with the same key: fine, nothing rewritten
        let before = backend.get(KEY_CHECK_KEY).await.unwrap().unwrap();
        right.init_key_check().await.unwrap();
        assert_eq!(backend.get(KEY_CHECK_KEY).await.unwrap().unwrap(), before);
        right
            .commit(vec![], vec![put("s", b"secret")])
            .await
            .unwrap();

        let wrong = Barrier::new(Arc::clone(&backend), key_bytes(2));
        assert!(wrong.is_initialized().await.unwrap());
        let err = wrong.check_key().await.unwrap_err();
        assert_unavailable(&err, "encryption key does not match this storage");
        let err = wrong.init_key_check().await.unwrap_err();
        assert_unavailable(&err, "encryption key does not match this storage");
        let err = wrong.get("s").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "storage unavailable: stored value failed authentication (wrong encryption key or corrupted data)"
        );
        // the canary was not overwritten by the wrong key
        right.check_key().await.unwrap();
    }

    #[tokio::test]
    async fn value_moved_between_keys_fails_authentication() {
        let backend = Arc::new(RedbBackend::in_memory().unwrap());
        let barrier = Barrier::new(Arc::clone(&backend), key_bytes(3));
        barrier
            .commit(
                vec![],
                vec![put("tenants/a/k", b"secret-a"), put("tenants/b/k", b"b")],
            )
            .await
            .unwrap();
        // An attacker with write access to the raw storage copies a's sealed value over b's.
        let sealed = backend.get("tenants/a/k").await.unwrap().unwrap().value;
        backend
            .commit(vec![], vec![put("tenants/b/k", &sealed)])
            .await
            .unwrap();
        let err = barrier.get("tenants/b/k").await.unwrap_err();
        assert_unavailable(&err, "failed authentication");
        assert!(!format!("{err} {err:?}").contains("secret"));
        // the original still opens
        assert_eq!(
            barrier.get("tenants/a/k").await.unwrap().unwrap().value,
            b"secret-a"
        );
    }

    #[tokio::test]
    async fn tampering_and_garbage_fail_cleanly() {
        let backend = Arc::new(RedbBackend::in_memory().unwrap());
        let barrier = Barrier::new(Arc::clone(&backend), key_bytes(4));
        barrier
            .commit(vec![], vec![put("k", b"value")])
            .await
            .unwrap();
        let mut sealed = backend.get("k").await.unwrap().unwrap().value;
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        let garbage: Vec<Vec<u8>> = vec![
            sealed,
            vec![],
            vec![FORMAT_V1],
            vec![FORMAT_V1; 1 + NONCE_LEN + TAG_LEN - 1],
            vec![FORMAT_V1; 1 + NONCE_LEN + TAG_LEN],
            vec![9; 40],
        ];
        for bad in garbage {
            backend.commit(vec![], vec![put("k", &bad)]).await.unwrap();
            let err = barrier.get("k").await.unwrap_err();
            assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
        }
    }

    #[test]
    fn key_encoding() {
        let key = EncryptionKey::generate().unwrap();
        let encoded = key.to_base64();
        let again = EncryptionKey::from_base64(&format!("  {encoded}\n")).unwrap();
        assert_eq!(again.to_base64(), encoded);
        assert_ne!(EncryptionKey::generate().unwrap().to_base64(), encoded);
        assert_eq!(key.clone().to_base64(), encoded);

        assert_eq!(format!("{key:?}"), "EncryptionKey(*****)");
        let barrier = Barrier::new(RedbBackend::in_memory().unwrap(), key);
        assert!(!format!("{barrier:?}").contains(&encoded));

        for bad in [
            "",
            "not base64!",
            "AAAA",
            &BASE64.encode([0u8; 31]),
            &BASE64.encode([0u8; 33]),
        ] {
            let err = EncryptionKey::from_base64(bad).unwrap_err();
            assert!(matches!(err, StorageError::Invalid(_)), "{err:?}");
        }
    }

    #[tokio::test]
    async fn works_over_a_shared_backend() {
        let shared: crate::storage::SharedBackend = Arc::new(RedbBackend::in_memory().unwrap());
        let barrier: crate::storage::SharedBackend =
            Arc::new(Barrier::new(Arc::clone(&shared), key_bytes(5)));
        barrier.commit(vec![], vec![put("k", b"v")]).await.unwrap();
        assert_eq!(barrier.get("k").await.unwrap().unwrap().value, b"v");
        assert_ne!(shared.get("k").await.unwrap().unwrap().value, b"v");
    }
}
