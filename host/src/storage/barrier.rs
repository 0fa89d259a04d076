//! [`Barrier`]: encryption at rest over any [`Backend`], under a keyring of rotating keys.
//!
//! Every value is sealed with AES-256-GCM under a fresh random 96-bit nonce, with the full storage
//! key as associated data, so a sealed value only opens under the key it was written to. Keys,
//! versions, conditions and listings pass through unchanged (like Vault's barrier, keys are not
//! encrypted).
//!
//! **Two kinds of key.** The *root key* is the operator's (the key file or
//! `KVSYNC_ENCRYPTION_KEY`); it seals only the key-check canary and the *keyring*
//! ([`KEYRING_KEY`]), a list of numbered data keys (*terms*). Values are sealed under the newest
//! term; older terms stay in the keyring so what they sealed stays readable. Stored formats:
//!
//! * `1` ‖ nonce (12) ‖ ciphertext ‖ tag (16): under the root key (the canary, the keyring, and
//!   values written before keyrings existed);
//! * `2` ‖ term (4, big-endian) ‖ nonce (12) ‖ ciphertext ‖ tag (16): under that keyring term.
//!
//! Storage without a keyring (written before it existed) gets one on first use whose term 1 is
//! the root key itself, so its values stay readable; fresh storage gets a random term 1.
//!
//! **The nonce budget.** Random 96-bit nonces keep AES-GCM safe for about 2^32 encryptions per
//! key. The keyring counts encryptions per term: a process reserves a block of them
//! ([`RESERVE_BLOCK`]) by a conditional write of the keyring before it seals with the term, so
//! every process sharing the storage is counted and a crash only loses the unused rest of a
//! block. When a reservation would take the active term past [`ROTATE_AFTER`], the same write
//! adds a new term (automatic rotation); [`Barrier::rotate`] adds one on request
//! (`sys/rotate`). A new term is used only after the keyring naming it is committed, so a crash
//! at any point leaves every value readable. Reading never touches the keyring in storage
//! except for a term this process has not seen (another host rotated).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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
const TERM_LEN: usize = 4;
/// Sealed under the root key.
const FORMAT_V1: u8 = 1;
/// Sealed under a keyring term named in the value.
const FORMAT_V2: u8 = 2;

/// Where [`Barrier::init_key_check`] stores its canary. Outside `tenants/`, so no guest reaches it.
pub const KEY_CHECK_KEY: &str = "core/keyring-check";
const KEY_CHECK_CANARY: &[u8] = b"kvsync keyring check v1";
/// Where the keyring is stored, sealed under the root key. Outside `tenants/`.
pub const KEYRING_KEY: &str = "core/keyring";

/// Encryptions under one term after which the next reservation adds a new term: 2^30, a
/// quarter of the 2^32 random-nonce budget of an AES-GCM key.
pub const ROTATE_AFTER: u64 = 1 << 30;
/// Encryptions one reservation takes (a commit with more writes takes as many as it needs).
pub const RESERVE_BLOCK: u64 = 1 << 16;
/// Conditional keyring writes tried before giving up when other writers keep winning.
const KEYRING_ATTEMPTS: usize = 16;

const AUTH_FAILED: &str =
    "stored value failed authentication (wrong encryption key or corrupted data)";
const KEY_MISMATCH: &str = "encryption key does not match this storage";
const KEYRING_BAD: &str = "the stored keyring is corrupted";

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

/// The state of the active key, as `sys/key-status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStatus {
    /// The active term (1 for the first key).
    pub term: u32,
    /// When the term was installed, in nanoseconds since the Unix epoch.
    pub install_time: i64,
    /// Encryptions counted under the term, by every process sharing the storage (blocks that
    /// other processes reserved count in full).
    pub encryptions: u64,
}

/// The keyring as stored (JSON, sealed under the root key).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRing {
    terms: Vec<StoredTerm>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredTerm {
    term: u32,
    /// The key, standard base64.
    key: String,
    /// Nanoseconds since the Unix epoch.
    install_time: i64,
    /// Encryptions reserved under this term.
    encryptions: u64,
}

impl Drop for StoredTerm {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl StoredRing {
    fn with_first(key: &EncryptionKey) -> Self {
        Self {
            terms: vec![StoredTerm {
                term: 1,
                key: key.to_base64(),
                install_time: now_nanos(),
                encryptions: 0,
            }],
        }
    }

    fn active(&self) -> Result<&StoredTerm, StorageError> {
        self.terms
            .iter()
            .max_by_key(|t| t.term)
            .ok_or_else(|| StorageError::Unavailable(KEYRING_BAD.into()))
    }

    fn active_mut(&mut self) -> Result<&mut StoredTerm, StorageError> {
        self.terms
            .iter_mut()
            .max_by_key(|t| t.term)
            .ok_or_else(|| StorageError::Unavailable(KEYRING_BAD.into()))
    }

    /// Adds a new random term after the active one; returns it.
    fn add_term(&mut self) -> Result<u32, StorageError> {
        let term = self
            .active()?
            .term
            .checked_add(1)
            .ok_or_else(|| StorageError::Unavailable("no keyring term is left".into()))?;
        self.terms.push(StoredTerm {
            term,
            key: EncryptionKey::generate()?.to_base64(),
            install_time: now_nanos(),
            encryptions: 0,
        });
        Ok(term)
    }

    fn status(&self) -> Result<KeyStatus, StorageError> {
        let active = self.active()?;
        Ok(KeyStatus {
            term: active.term,
            install_time: active.install_time,
            encryptions: active.encryptions,
        })
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The keyring as this process uses it: every term's cipher, the active term, and this
/// process's reservation of encryptions under it.
struct Ring {
    ciphers: BTreeMap<u32, Aes256Gcm>,
    active: u32,
    /// Encryptions taken from the reservation (may run past it: such a taker reserves anew).
    used: AtomicU64,
    /// Size of the reservation (0: none, the next seal reserves first).
    reserved: u64,
}

impl Ring {
    fn new(stored: &StoredRing, reserved: u64, used: u64) -> Result<Self, StorageError> {
        let mut ciphers = BTreeMap::new();
        for t in &stored.terms {
            let key = EncryptionKey::from_base64(&t.key)
                .map_err(|_| StorageError::Unavailable(KEYRING_BAD.into()))?;
            ciphers.insert(t.term, key.cipher());
        }
        Ok(Self {
            ciphers,
            active: stored.active()?.term,
            used: AtomicU64::new(used),
            reserved,
        })
    }

    /// Takes `n` encryptions from the reservation, if it has them.
    fn take(&self, n: u64) -> bool {
        self.reserved > 0
            && self.used.fetch_add(n, Ordering::Relaxed).saturating_add(n) <= self.reserved
    }

    fn unused(&self) -> u64 {
        self.reserved
            .saturating_sub(self.used.load(Ordering::Relaxed))
    }
}

/// The keyring of a [`Barrier`], whatever its backend: what `sys/key-status` and `sys/rotate`
/// reach.
#[async_trait::async_trait]
pub trait Keyring: Send + Sync + 'static {
    /// See [`Barrier::key_status`].
    async fn key_status(&self) -> Result<KeyStatus, StorageError>;
    /// See [`Barrier::rotate`].
    async fn rotate(&self) -> Result<KeyStatus, StorageError>;
}

/// A keyring shared by the runtime's `keyring` import.
pub type SharedKeyring = Arc<dyn Keyring>;

#[async_trait::async_trait]
impl<B: Backend> Keyring for Barrier<B> {
    async fn key_status(&self) -> Result<KeyStatus, StorageError> {
        Barrier::key_status(self).await
    }

    async fn rotate(&self) -> Result<KeyStatus, StorageError> {
        Barrier::rotate(self).await
    }
}

/// Encryption at rest: a [`Backend`] that seals values before handing them to `inner`.
pub struct Barrier<B: Backend> {
    inner: B,
    /// The operator's key: kept to adopt it as term 1 of storage that predates keyrings.
    root_key: EncryptionKey,
    root: Aes256Gcm,
    /// `None` until first needed.
    ring: RwLock<Option<Arc<Ring>>>,
    /// Serializes this process's keyring writes and reloads.
    keyring_writes: tokio::sync::Mutex<()>,
    rotate_after: u64,
    reserve_block: u64,
}

impl<B: Backend> fmt::Debug for Barrier<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").finish_non_exhaustive()
    }
}

impl<B: Backend> Barrier<B> {
    /// Encrypts everything stored in `inner` under the keyring that `key` (the root key) seals.
    pub fn new(inner: B, key: EncryptionKey) -> Self {
        Self {
            root: key.cipher(),
            root_key: key,
            inner,
            ring: RwLock::new(None),
            keyring_writes: tokio::sync::Mutex::new(()),
            rotate_after: ROTATE_AFTER,
            reserve_block: RESERVE_BLOCK,
        }
    }

    /// The same barrier with another automatic-rotation threshold and reservation block (tests
    /// reach the threshold with a few writes).
    pub fn with_rotation(mut self, rotate_after: u64, reserve_block: u64) -> Self {
        self.rotate_after = rotate_after.max(1);
        self.reserve_block = reserve_block.clamp(1, self.rotate_after);
        self
    }

    /// The backend underneath (it sees only sealed values).
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Whether the key-check canary has been stored, i.e. this storage was initialized.
    pub async fn is_initialized(&self) -> Result<bool, StorageError> {
        Ok(self.inner.get(KEY_CHECK_KEY).await?.is_some())
    }

    /// Stores the key-check canary and a keyring with a random first term if absent (first
    /// initialization); if already present, checks that this barrier's key opens it (see
    /// [`Self::check_key`]).
    pub async fn init_key_check(&self) -> Result<(), StorageError> {
        let ring = StoredRing::with_first(&EncryptionKey::generate()?);
        let ops = vec![
            Op::Put {
                key: KEY_CHECK_KEY.to_owned(),
                value: self.seal_root(KEY_CHECK_KEY, KEY_CHECK_CANARY)?,
            },
            Op::Put {
                key: KEYRING_KEY.to_owned(),
                value: self.seal_ring(&ring)?,
            },
        ];
        let must_be_absent = [KEY_CHECK_KEY, KEYRING_KEY]
            .map(|key| Condition {
                key: key.to_owned(),
                version: None,
            })
            .to_vec();
        match self.inner.commit(must_be_absent, ops).await {
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
        match self.open_root(KEY_CHECK_KEY, &entry.value) {
            Ok(plain) if plain.as_slice() == KEY_CHECK_CANARY => Ok(()),
            _ => Err(StorageError::Unavailable(KEY_MISMATCH.into())),
        }
    }

    /// Same as [`Self::check_key`].
    pub async fn verify_key(&self) -> Result<(), StorageError> {
        self.check_key().await
    }

    /// The active key's term, install time and encryption count (`sys/key-status`). Storage
    /// without a keyring gets one (its term 1 is the root key).
    pub async fn key_status(&self) -> Result<KeyStatus, StorageError> {
        let (stored, _) = match self.read_ring().await? {
            Some(found) => found,
            None => {
                let _writing = self.keyring_writes.lock().await;
                self.adopt_legacy().await?
            }
        };
        let mut status = stored.status()?;
        match self.current() {
            Some(ring) if ring.active == status.term => {
                status.encryptions = status.encryptions.saturating_sub(ring.unused());
            }
            // The keyring changed under this process: use it from now on.
            _ => {
                let _writing = self.keyring_writes.lock().await;
                self.install(Ring::new(&stored, 0, 0)?);
            }
        }
        Ok(status)
    }

    /// Adds a new term to the keyring and seals new writes under it (`sys/rotate`). Values
    /// under older terms stay readable. The new term is used only once the keyring naming it is
    /// committed: if that fails, nothing changed.
    pub async fn rotate(&self) -> Result<KeyStatus, StorageError> {
        let _writing = self.keyring_writes.lock().await;
        for _ in 0..KEYRING_ATTEMPTS {
            let (mut stored, version) = match self.read_ring().await? {
                Some(found) => found,
                None => self.adopt_legacy().await?,
            };
            let term = stored.add_term()?;
            match self.write_ring(&stored, Some(version)).await {
                Ok(_) => {
                    self.install(Ring::new(&stored, 0, 0)?);
                    tracing::info!(term, "rotated the barrier key");
                    return stored.status();
                }
                Err(StorageError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(keyring_contended())
    }

    fn current(&self) -> Option<Arc<Ring>> {
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn install(&self, ring: Ring) -> Arc<Ring> {
        let ring = Arc::new(ring);
        *self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&ring));
        ring
    }

    /// The stored keyring and its version, if there is one.
    async fn read_ring(&self) -> Result<Option<(StoredRing, u64)>, StorageError> {
        let Some(entry) = self.inner.get(KEYRING_KEY).await? else {
            return Ok(None);
        };
        let plain = Zeroizing::new(
            self.open_root(KEYRING_KEY, &entry.value)
                .map_err(|_| StorageError::Unavailable(KEY_MISMATCH.into()))?,
        );
        let ring: StoredRing = serde_json::from_slice(&plain)
            .map_err(|_| StorageError::Unavailable(KEYRING_BAD.into()))?;
        Ok(Some((ring, entry.version)))
    }

    /// Writes `ring` if the stored keyring is still at `version` (`None`: absent).
    async fn write_ring(
        &self,
        ring: &StoredRing,
        version: Option<u64>,
    ) -> Result<u64, StorageError> {
        let op = Op::Put {
            key: KEYRING_KEY.to_owned(),
            value: self.seal_ring(ring)?,
        };
        let condition = Condition {
            key: KEYRING_KEY.to_owned(),
            version,
        };
        self.inner.commit(vec![condition], vec![op]).await
    }

    fn seal_ring(&self, ring: &StoredRing) -> Result<Vec<u8>, StorageError> {
        let json = Zeroizing::new(
            serde_json::to_vec(ring)
                .map_err(|_| StorageError::Unavailable("cannot encode the keyring".into()))?,
        );
        self.seal_root(KEYRING_KEY, &json)
    }

    /// Storage written before keyrings existed: its values are sealed under the root key, which
    /// becomes term 1. Call with `keyring_writes` held.
    async fn adopt_legacy(&self) -> Result<(StoredRing, u64), StorageError> {
        let ring = StoredRing::with_first(&self.root_key);
        match self.write_ring(&ring, None).await {
            Ok(version) => Ok((ring, version)),
            // Another process created it first.
            Err(StorageError::Conflict) => self
                .read_ring()
                .await?
                .ok_or_else(|| StorageError::Unavailable(KEYRING_BAD.into())),
            Err(e) => Err(e),
        }
    }

    /// A ring whose reservation covers `n` more encryptions under its active term: this
    /// process's reservation when it has them, else a new one (adding a term when the active
    /// one would pass the rotation threshold), committed before it is used.
    async fn reserve(&self, n: u64) -> Result<Arc<Ring>, StorageError> {
        if let Some(ring) = self.current().filter(|r| r.take(n)) {
            return Ok(ring);
        }
        let _writing = self.keyring_writes.lock().await;
        if let Some(ring) = self.current().filter(|r| r.take(n)) {
            return Ok(ring);
        }
        let block = n.max(self.reserve_block);
        for _ in 0..KEYRING_ATTEMPTS {
            let (mut stored, version) = match self.read_ring().await? {
                Some(found) => found,
                None => self.adopt_legacy().await?,
            };
            let active = stored.active()?;
            if active.encryptions.saturating_add(block) > self.rotate_after {
                let term = stored.add_term()?;
                tracing::info!(
                    term,
                    threshold = self.rotate_after,
                    "rotating the barrier key: the active key reached its encryption threshold"
                );
            }
            let active = stored.active_mut()?;
            active.encryptions = active.encryptions.saturating_add(block);
            match self.write_ring(&stored, Some(version)).await {
                Ok(_) => return Ok(self.install(Ring::new(&stored, block, n)?)),
                Err(StorageError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(keyring_contended())
    }

    /// Reloads the keyring after meeting a term this process does not know.
    async fn reload(&self) -> Result<(), StorageError> {
        let _writing = self.keyring_writes.lock().await;
        if let Some((stored, _)) = self.read_ring().await? {
            self.install(Ring::new(&stored, 0, 0)?);
        }
        Ok(())
    }

    fn seal_root(&self, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, StorageError> {
        seal(&self.root, &[FORMAT_V1], key, plaintext)
    }

    fn open_root(&self, key: &str, stored: &[u8]) -> Result<Vec<u8>, StorageError> {
        match stored.split_first() {
            Some((&FORMAT_V1, rest)) => open(&self.root, key, rest),
            _ => Err(StorageError::Unavailable(AUTH_FAILED.into())),
        }
    }

    /// The plaintext of a stored value, or `None` when it names a term this process does not
    /// know (yet).
    fn open(&self, key: &str, stored: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let Some((&format, rest)) = stored.split_first() else {
            return Err(StorageError::Unavailable(
                "stored value is corrupted (empty)".into(),
            ));
        };
        match format {
            FORMAT_V1 => open(&self.root, key, rest).map(Some),
            FORMAT_V2 => {
                let Some((term, rest)) = rest.split_first_chunk::<TERM_LEN>() else {
                    return Err(StorageError::Unavailable(AUTH_FAILED.into()));
                };
                let term = u32::from_be_bytes(*term);
                let Some(ring) = self.current() else {
                    return Ok(None);
                };
                match ring.ciphers.get(&term) {
                    Some(cipher) => open(cipher, key, rest).map(Some),
                    None => Ok(None),
                }
            }
            other => Err(StorageError::Unavailable(format!(
                "stored value has an unknown encryption format ({other})"
            ))),
        }
    }
}

fn keyring_contended() -> StorageError {
    StorageError::Unavailable(
        "the keyring kept changing under concurrent writers; try again".into(),
    )
}

/// `header` ‖ nonce ‖ ciphertext ‖ tag, with `key` as associated data.
fn seal(
    cipher: &Aes256Gcm,
    header: &[u8],
    key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, StorageError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| {
        StorageError::Unavailable("the system random number generator failed".into())
    })?;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: key.as_bytes(),
            },
        )
        .map_err(|_| StorageError::Unavailable("encryption failed".into()))?;
    let mut stored = Vec::with_capacity(header.len() + NONCE_LEN + sealed.len());
    stored.extend_from_slice(header);
    stored.extend_from_slice(&nonce);
    stored.extend_from_slice(&sealed);
    Ok(stored)
}

/// Opens nonce ‖ ciphertext ‖ tag sealed with `key` as associated data.
fn open(cipher: &Aes256Gcm, key: &str, rest: &[u8]) -> Result<Vec<u8>, StorageError> {
    let Some((nonce, sealed)) = rest.split_first_chunk::<NONCE_LEN>() else {
        return Err(StorageError::Unavailable(AUTH_FAILED.into()));
    };
    if sealed.len() < TAG_LEN {
        return Err(StorageError::Unavailable(AUTH_FAILED.into()));
    }
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: key.as_bytes(),
            },
        )
        .map_err(|_| StorageError::Unavailable(AUTH_FAILED.into()))
}

#[async_trait::async_trait]
impl<B: Backend> Backend for Barrier<B> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let Some(entry) = self.inner.get(key).await? else {
            return Ok(None);
        };
        let value = match self.open(key, &entry.value)? {
            Some(value) => value,
            None => {
                self.reload().await?;
                self.open(key, &entry.value)?
                    .ok_or_else(|| StorageError::Unavailable(AUTH_FAILED.into()))?
            }
        };
        Ok(Some(Entry {
            value,
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
        let puts = ops.iter().filter(|op| matches!(op, Op::Put { .. })).count();
        let ring = match u64::try_from(puts) {
            Ok(0) => None,
            Ok(n) => Some(self.reserve(n).await?),
            Err(_) => {
                return Err(StorageError::Invalid(
                    "too many writes in one commit".into(),
                ));
            }
        };
        // The active term's cipher and the header naming it.
        let term = match &ring {
            Some(ring) => {
                let cipher = ring
                    .ciphers
                    .get(&ring.active)
                    .ok_or_else(|| StorageError::Unavailable(KEYRING_BAD.into()))?;
                let [a, b, c, d] = ring.active.to_be_bytes();
                Some((cipher, [FORMAT_V2, a, b, c, d]))
            }
            None => None,
        };
        let mut sealed_ops = Vec::with_capacity(ops.len());
        for op in ops {
            sealed_ops.push(match op {
                Op::Put { key, mut value } => {
                    let sealed = match &term {
                        Some((cipher, header)) => seal(cipher, header, &key, &value),
                        None => Err(StorageError::Unavailable(KEYRING_BAD.into())),
                    };
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

    fn term_of(stored: &[u8]) -> u32 {
        assert_eq!(stored[0], FORMAT_V2);
        u32::from_be_bytes(stored[1..5].try_into().unwrap())
    }

    async fn raw_term(backend: &impl Backend, key: &str) -> u32 {
        term_of(&backend.get(key).await.unwrap().unwrap().value)
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
        assert_eq!(raw.value.len(), 1 + TERM_LEN + NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(term_of(&raw.value), 1);
        assert!(!raw.value.windows(5).any(|w| w == b"hello"));

        // Same plaintext twice: different nonces, different ciphertexts.
        barrier
            .commit(vec![], vec![put("b", b"hello")])
            .await
            .unwrap();
        let raw_b = barrier.inner().get("b").await.unwrap().unwrap();
        let nonce = 1 + TERM_LEN..1 + TERM_LEN + NONCE_LEN;
        assert_ne!(raw.value[nonce.clone()], raw_b.value[nonce]);

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
        // (the keyring the first write created is listed like any key)
        assert_eq!(page.keys, ["a", KEYRING_KEY, "empty"]);
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
            "storage unavailable: encryption key does not match this storage"
        );
        let err = wrong
            .commit(vec![], vec![put("t", b"x")])
            .await
            .unwrap_err();
        assert_unavailable(&err, "encryption key does not match this storage");
        assert_eq!(backend.get("t").await.unwrap(), None);
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
            vec![FORMAT_V2],
            vec![FORMAT_V2, 0, 0, 0, 1],
            vec![FORMAT_V2, 0, 0, 0, 1, 0],
            [&[FORMAT_V2, 0, 0, 0, 1][..], &[7; NONCE_LEN + TAG_LEN]].concat(),
            // a term nobody has: reloading the keyring does not help
            [&[FORMAT_V2, 0, 0, 0, 9][..], &[7; NONCE_LEN + TAG_LEN]].concat(),
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

    #[tokio::test]
    async fn rotation_keeps_older_values_readable() {
        let backend = Arc::new(RedbBackend::in_memory().unwrap());
        let barrier = Barrier::new(Arc::clone(&backend), key_bytes(6));
        barrier.init_key_check().await.unwrap();
        let first = barrier.key_status().await.unwrap();
        assert_eq!((first.term, first.encryptions), (1, 0));
        assert!(first.install_time > 1_600_000_000_000_000_000);
        barrier
            .commit(vec![], vec![put("a", b"under term 1"), put("b", b"b1")])
            .await
            .unwrap();
        barrier.commit(vec![], vec![put("c", b"c1")]).await.unwrap();
        assert_eq!(barrier.key_status().await.unwrap().encryptions, 3);

        let rotated = barrier.rotate().await.unwrap();
        assert_eq!((rotated.term, rotated.encryptions), (2, 0));
        assert!(rotated.install_time >= first.install_time);
        barrier
            .commit(vec![], vec![put("b", b"under term 2")])
            .await
            .unwrap();
        assert_eq!(raw_term(&*backend, "a").await, 1);
        assert_eq!(raw_term(&*backend, "b").await, 2);
        let status = barrier.key_status().await.unwrap();
        assert_eq!((status.term, status.encryptions), (2, 1));
        assert_eq!(status.install_time, rotated.install_time);
        assert_eq!(barrier.rotate().await.unwrap().term, 3);

        // Another process (or this one after a restart) reads every term.
        let again = Barrier::new(Arc::clone(&backend), key_bytes(6));
        again.check_key().await.unwrap();
        assert_eq!(
            again.get("a").await.unwrap().unwrap().value,
            b"under term 1"
        );
        assert_eq!(
            again.get("b").await.unwrap().unwrap().value,
            b"under term 2"
        );
        assert_eq!(again.key_status().await.unwrap().term, 3);
        again.commit(vec![], vec![put("d", b"d")]).await.unwrap();
        assert_eq!(raw_term(&*backend, "d").await, 3);

        // The keyring itself is sealed under the root key: no data key in the clear.
        let ring = backend.get(KEYRING_KEY).await.unwrap().unwrap().value;
        assert_eq!(ring[0], FORMAT_V1);
        assert!(!ring.windows(5).any(|w| w == b"terms"));
    }

    #[tokio::test]
    async fn rotates_automatically_before_the_threshold_is_passed() {
        let backend = Arc::new(RedbBackend::in_memory().unwrap());
        let barrier = Barrier::new(Arc::clone(&backend), key_bytes(7)).with_rotation(10, 4);
        barrier.init_key_check().await.unwrap();
        let mut terms = Vec::new();
        for i in 0..25u32 {
            let key = format!("k{i}");
            barrier
                .commit(vec![], vec![put(&key, &i.to_be_bytes())])
                .await
                .unwrap();
            terms.push(raw_term(&*backend, &key).await);
        }
        // Reservations of 4 under a threshold of 10: two blocks (8 writes) per term.
        assert_eq!(
            terms,
            [
                1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4
            ]
        );
        for i in 0..25u32 {
            let got = barrier.get(&format!("k{i}")).await.unwrap().unwrap();
            assert_eq!(got.value, i.to_be_bytes());
        }
        let status = barrier.key_status().await.unwrap();
        assert_eq!((status.term, status.encryptions), (4, 1));

        // One commit larger than the threshold still goes through, under a fresh term.
        let many: Vec<Op> = (0..12).map(|i| put(&format!("m{i}"), b"v")).collect();
        barrier.commit(vec![], many).await.unwrap();
        assert_eq!(raw_term(&*backend, "m0").await, 5);
        assert_eq!(raw_term(&*backend, "m11").await, 5);
    }

    #[tokio::test]
    async fn storage_from_before_keyrings_migrates_transparently() {
        let backend = Arc::new(RedbBackend::in_memory().unwrap());
        // What a server without a keyring wrote: the canary and values under the root key.
        let old = Barrier::new(Arc::clone(&backend), key_bytes(8));
        let legacy = vec![
            put(
                KEY_CHECK_KEY,
                &old.seal_root(KEY_CHECK_KEY, KEY_CHECK_CANARY).unwrap(),
            ),
            put(
                "tenants/root/s",
                &old.seal_root("tenants/root/s", b"old secret").unwrap(),
            ),
        ];
        backend.commit(vec![], legacy).await.unwrap();
        drop(old);

        let barrier = Barrier::new(Arc::clone(&backend), key_bytes(8));
        barrier.check_key().await.unwrap();
        assert_eq!(
            barrier.get("tenants/root/s").await.unwrap().unwrap().value,
            b"old secret"
        );
        assert_eq!(
            backend.get(KEYRING_KEY).await.unwrap(),
            None,
            "reading writes nothing"
        );
        assert_eq!(barrier.key_status().await.unwrap().term, 1);
        barrier
            .commit(vec![], vec![put("n", b"new")])
            .await
            .unwrap();
        assert_eq!(raw_term(&*backend, "n").await, 1);
        barrier.rotate().await.unwrap();
        barrier
            .commit(vec![], vec![put("n2", b"newer")])
            .await
            .unwrap();
        assert_eq!(raw_term(&*backend, "n2").await, 2);

        // Term 1 is the root key itself: what it sealed opens with the root key.
        let raw = backend.get("n").await.unwrap().unwrap().value;
        let plain = open(&key_bytes(8).cipher(), "n", &raw[1 + TERM_LEN..]).unwrap();
        assert_eq!(plain, b"new");
        let again = Barrier::new(Arc::clone(&backend), key_bytes(8));
        for (key, value) in [
            ("tenants/root/s", &b"old secret"[..]),
            ("n", b"new"),
            ("n2", b"newer"),
        ] {
            assert_eq!(again.get(key).await.unwrap().unwrap().value, value);
        }
    }

    /// A backend whose commits that write the keyring fail while `fail` is set, as a crash
    /// before the keyring write would.
    struct FailingKeyring {
        inner: Arc<RedbBackend>,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl crate::storage::Delegate for FailingKeyring {
        fn inner(&self) -> &dyn Backend {
            &*self.inner
        }

        async fn commit(
            &self,
            conditions: Vec<Condition>,
            ops: Vec<Op>,
        ) -> Result<u64, StorageError> {
            if self.fail.load(Ordering::SeqCst) && ops.iter().any(|op| op.key() == KEYRING_KEY) {
                return Err(StorageError::Unavailable("injected failure".into()));
            }
            self.inner.commit(conditions, ops).await
        }
    }

    #[tokio::test]
    async fn a_failed_keyring_commit_changes_nothing() {
        let redb = Arc::new(RedbBackend::in_memory().unwrap());
        let failing = Arc::new(FailingKeyring {
            inner: Arc::clone(&redb),
            fail: false.into(),
        });
        let barrier = Barrier::new(Arc::clone(&failing), key_bytes(9)).with_rotation(100, 3);
        barrier.init_key_check().await.unwrap();
        barrier.commit(vec![], vec![put("a", b"a")]).await.unwrap();

        failing.fail.store(true, Ordering::SeqCst);
        assert_unavailable(&barrier.rotate().await.unwrap_err(), "injected failure");
        assert_eq!(barrier.key_status().await.unwrap().term, 1);
        // What is left of the reservation is still used, under the old term.
        barrier.commit(vec![], vec![put("b", b"b")]).await.unwrap();
        assert_eq!(raw_term(&*redb, "b").await, 1);
        // Past it, a write that cannot reserve fails whole: nothing written.
        let err = barrier
            .commit(vec![], vec![put("c", b"c"), put("d", b"d")])
            .await
            .unwrap_err();
        assert_unavailable(&err, "injected failure");
        assert_eq!(redb.get("c").await.unwrap(), None);

        // A restarted process sees the same, complete state.
        failing.fail.store(false, Ordering::SeqCst);
        let again = Barrier::new(Arc::clone(&failing), key_bytes(9));
        assert_eq!(again.key_status().await.unwrap().term, 1);
        for key in ["a", "b"] {
            assert_eq!(again.get(key).await.unwrap().unwrap().value, key.as_bytes());
        }
        assert_eq!(again.rotate().await.unwrap().term, 2);
        again.commit(vec![], vec![put("c", b"c")]).await.unwrap();
        assert_eq!(raw_term(&*redb, "c").await, 2);
    }

    #[tokio::test]
    async fn processes_sharing_storage_are_all_counted_and_read_each_others_terms() {
        let backend = Arc::new(RedbBackend::in_memory().unwrap());
        let a = Barrier::new(Arc::clone(&backend), key_bytes(10)).with_rotation(1000, 10);
        let b = Barrier::new(Arc::clone(&backend), key_bytes(10)).with_rotation(1000, 10);
        a.init_key_check().await.unwrap();
        a.commit(vec![], vec![put("from-a", b"1")]).await.unwrap();
        b.commit(vec![], vec![put("from-b", b"1")]).await.unwrap();
        // Each reserved its own block: both are counted.
        assert_eq!(a.key_status().await.unwrap().encryptions, 10 + 1);

        // A rotates; B has never seen term 2 and still reads what A writes under it.
        assert_eq!(a.rotate().await.unwrap().term, 2);
        a.commit(vec![], vec![put("a2", b"two")]).await.unwrap();
        assert_eq!(raw_term(&*backend, "a2").await, 2);
        assert_eq!(b.get("a2").await.unwrap().unwrap().value, b"two");
        assert_eq!(b.get("from-a").await.unwrap().unwrap().value, b"1");
    }
}
