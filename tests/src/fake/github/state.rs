//! What the GitHub fake holds: secrets scopes (each with its own X25519 key
//! pair), repositories with their environments, organizations, GitHub Apps
//! and the installation tokens issued to them.

use std::collections::{BTreeMap, HashMap};

use crypto_box::SecretKey;
use crypto_box::aead::OsRng;
use serde_json::{Map, Value, json};

use super::{MAX_ORG_SECRETS, MAX_REPO_SECRETS, iso};
use crate::fake::object;

/// A stored secret: the plaintext GitHub would hold, and its metadata.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) value: String,
    pub(super) created_at: u64,
    pub(super) updated_at: u64,
    pub(super) visibility: Option<String>,
    pub(super) selected_repository_ids: Vec<u64>,
}

/// One secrets scope (repository, environment or organization).
pub(super) struct Scope {
    pub(super) key: SecretKey,
    pub(super) key_id: String,
    pub(super) secrets: BTreeMap<String, Stored>,
}

impl Scope {
    pub(super) fn new() -> Self {
        Scope {
            key: SecretKey::generate(&mut OsRng),
            key_id: key_id(),
            secrets: BTreeMap::new(),
        }
    }

    pub(super) fn rotate(&mut self) {
        self.key = SecretKey::generate(&mut OsRng);
        self.key_id = key_id();
    }

    pub(super) fn state(&self) -> Value {
        let secrets: Map<String, Value> = self
            .secrets
            .iter()
            .map(|(name, s)| {
                let mut v = object(json!({"value": s.value, "created_at": iso(s.created_at), "updated_at": iso(s.updated_at)}));
                if let Some(vis) = &s.visibility {
                    v.insert("visibility".into(), json!(vis));
                    v.insert(
                        "selected_repository_ids".into(),
                        json!(s.selected_repository_ids),
                    );
                }
                (name.clone(), Value::Object(v))
            })
            .collect();
        json!({"key_id": self.key_id, "secrets": secrets})
    }
}

pub(super) struct Repo {
    pub(super) id: u64,
    pub(super) owner: String,
    pub(super) name: String,
    pub(super) private: bool,
    pub(super) scope: Scope,
    /// By environment name as created (GitHub matches them case-insensitively).
    pub(super) environments: BTreeMap<String, Scope>,
}

pub(super) struct Org {
    pub(super) id: u64,
    pub(super) login: String,
    pub(super) scope: Scope,
}

pub(super) struct App {
    pub(super) public_key_pem: String,
    /// installation id → account login.
    pub(super) installations: BTreeMap<u64, String>,
}

pub(super) struct InstallationToken {
    pub(super) installation: u64,
    pub(super) account: String,
    pub(super) expires_at: u64,
}

pub(super) struct Inner {
    /// By lower-cased `owner/name`.
    pub(super) repos: BTreeMap<String, Repo>,
    /// By lower-cased login.
    pub(super) orgs: BTreeMap<String, Org>,
    pub(super) pats: HashMap<String, bool>,
    pub(super) apps: BTreeMap<u64, App>,
    pub(super) tokens: HashMap<String, InstallationToken>,
    pub(super) next_id: u64,
    pub(super) writes: u64,
    pub(super) deletes: u64,
    pub(super) tokens_issued: u64,
}

impl Inner {
    pub(super) fn add_repo(&mut self, owner: &str, name: &str, private: bool) -> u64 {
        let key = repo_key(owner, name);
        if let Some(r) = self.repos.get(&key) {
            return r.id;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.repos.insert(
            key,
            Repo {
                id,
                owner: owner.to_string(),
                name: name.to_string(),
                private,
                scope: Scope::new(),
                environments: BTreeMap::new(),
            },
        );
        id
    }

    pub(super) fn add_org(&mut self, login: &str) -> u64 {
        let key = login.to_ascii_lowercase();
        if let Some(o) = self.orgs.get(&key) {
            return o.id;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.orgs.insert(
            key,
            Org {
                id,
                login: login.to_string(),
                scope: Scope::new(),
            },
        );
        id
    }
}

pub(super) fn env_key(repo: &Repo, name: &str) -> Option<String> {
    repo.environments
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
}

pub(super) fn repo_key(owner: &str, name: &str) -> String {
    format!(
        "{}/{}",
        owner.to_ascii_lowercase(),
        name.to_ascii_lowercase()
    )
}

/// GitHub's key ids are large decimal numbers.
pub(super) fn key_id() -> String {
    let mut buf = [0u8; 8];
    let _ = getrandom::fill(&mut buf);
    (u64::from_le_bytes(buf) >> 4).to_string()
}

#[derive(Clone, Copy)]
pub(super) enum ScopeKind {
    Repo,
    Env,
    Org,
}

impl ScopeKind {
    pub(super) fn limit(self) -> usize {
        match self {
            ScopeKind::Org => MAX_ORG_SECRETS,
            ScopeKind::Repo | ScopeKind::Env => MAX_REPO_SECRETS,
        }
    }
}
