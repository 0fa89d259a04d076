//! The system backend (`sys/...`): mounts, health and the start-up status
//! endpoints, the storage key's status and rotation, auth methods, ACL policies and capabilities, and the UI's
//! mount lookup. Secrets Sync (`sys/sync/`, `sys/activation-flags`) has
//! backends of its own.

pub mod auth;
pub mod capabilities;
pub mod health;
pub mod internal_ui;
pub mod keys;
pub mod mounts;
pub mod namespaces;
pub mod openapi;
pub mod policies;
pub mod quotas;
pub mod status;

use crate::api::Operation::{Create, Delete, Header, List, Patch, Read, Update};
use serde_json::{Map, Value, json};

use crate::framework::{Backend, FieldSpec, Path, op};

/// The Vault version kvsync answers as (`sys/seal-status`, `sys/health`): a
/// semver with the build metadata `ent`, 2.2.0 or later, with which the
/// Terraform provider enables every Secrets Sync field (see the README,
/// "Where kvsync differs from Vault").
pub const VAULT_VERSION: &str = "2.2.0+ent";

/// A built-in backend's entry, as `sys/mounts` (`sys/`) and `sys/auth`
/// (`token/`) show it: no plugin, so no `deprecation_status`, and the
/// release part of the version as its `running_plugin_version`; `config`
/// adds to the common configuration.
pub fn builtin_entry(
    (kind, accessor, uuid): (&str, &str, &str),
    description: &str,
    config: Map<String, Value>,
    seal_wrap: bool,
) -> Value {
    let release = VAULT_VERSION.split('+').next().unwrap_or(VAULT_VERSION);
    let mut all = Map::new();
    all.insert("default_lease_ttl".into(), json!(0));
    all.insert("force_no_cache".into(), json!(false));
    all.insert("max_lease_ttl".into(), json!(0));
    all.extend(config);
    json!({
        "accessor": accessor,
        "config": all,
        "description": description,
        "external_entropy_access": false,
        "local": false,
        "options": null,
        "plugin_version": "",
        "running_plugin_version": format!("v{release}+builtin.vault"),
        "running_sha256": "",
        "seal_wrap": seal_wrap,
        "type": kind,
        "uuid": uuid,
    })
}

pub static BACKEND: Backend = Backend::new("sys/", "system", PATHS).ignore_trailing_slashes();

/// The `{path}` parameter of the mount paths.
const MOUNT: &[FieldSpec] = &[FieldSpec::string("path").describe("The path of the mount.")];

const PATHS: &[Path] = &[
    Path::new(
        "health",
        "Health of the server (a body outside the envelope).",
        &[
            op(
                Read,
                "read-health-status",
                "Read the server's health.",
                health::read,
            )
            .answers(health::ANSWERS),
            op(
                Header,
                "read-health-status-head",
                "Check the server's health: the status only.",
                health::read,
            )
            .answers(health::ANSWERS),
        ],
    )
    .fields(health::FIELDS)
    .unauthenticated(),
    Path::new(
        "seal-status",
        "Whether the server is sealed, and its version (a body outside the envelope).",
        &[op(
            Read,
            "seal-status",
            "Read the seal status.",
            status::seal_status,
        )],
    )
    .unauthenticated(),
    Path::new(
        "leader",
        "The high-availability leader (a body outside the envelope).",
        &[op(
            Read,
            "leader-status",
            "Read the leader status.",
            status::leader,
        )],
    )
    .unauthenticated(),
    Path::new(
        "init",
        "Whether the server is initialized (a body outside the envelope).",
        &[op(
            Read,
            "read-initialization-status",
            "Read the initialization status.",
            status::init,
        )],
    )
    .unauthenticated(),
    Path::new(
        "auth",
        "The enabled auth methods.",
        &[op(
            Read,
            "auth-list-enabled-methods",
            "List the enabled auth methods.",
            auth::list,
        )],
    ),
    Path::new(
        "policies/acl",
        "The ACL policies.",
        &[op(
            List,
            "policies-list-acl-policies",
            "List the ACL policies.",
            policies::list,
        )],
    ),
    Path::new(
        "policies/acl/{name}",
        "Read, write and delete an ACL policy.",
        &[
            op(
                Read,
                "policies-read-acl-policy",
                "Read the policy.",
                policies::read,
            )
            .no_fields(),
            op(
                Update,
                "policies-write-acl-policy",
                "Create or replace the policy.",
                policies::write,
            ),
            op(
                Delete,
                "policies-delete-acl-policy",
                "Delete the policy.",
                policies::delete,
            )
            .no_fields(),
        ],
    )
    .params(policies::NAME)
    .fields(policies::FIELDS),
    Path::new(
        "policy",
        "The ACL policies (legacy route).",
        &[
            op(
                Read,
                "policies-list",
                "List the ACL policies.",
                policies::list_legacy,
            ),
            op(
                List,
                "policies-list2",
                "List the ACL policies.",
                policies::list_legacy,
            ),
        ],
    ),
    Path::new(
        "policy/{name}",
        "Read, write and delete an ACL policy (legacy route).",
        &[
            op(
                Read,
                "policies-read-acl-policy2",
                "Read the policy (its document as rules).",
                policies::read_legacy,
            )
            .no_fields(),
            op(
                Update,
                "policies-write-acl-policy2",
                "Create or replace the policy.",
                policies::write_legacy,
            ),
            op(
                Delete,
                "policies-delete-acl-policy2",
                "Delete the policy.",
                policies::delete,
            )
            .no_fields(),
        ],
    )
    .params(policies::NAME)
    .fields(policies::LEGACY_FIELDS),
    Path::new(
        "capabilities-self",
        "The capabilities of the caller's token on some paths.",
        &[op(
            Update,
            "query-token-self-capabilities",
            "Report the caller's capabilities on the paths.",
            capabilities::of_caller,
        )],
    )
    .fields(capabilities::SELF_FIELDS),
    Path::new(
        "capabilities",
        "The capabilities of a token on some paths.",
        &[op(
            Update,
            "query-token-capabilities",
            "Report the token's capabilities on the paths.",
            capabilities::of_token,
        )],
    )
    .fields(capabilities::TOKEN_FIELDS),
    Path::new(
        "capabilities-accessor",
        "The capabilities of the token with an accessor on some paths.",
        &[op(
            Update,
            "query-token-accessor-capabilities",
            "Report the token's capabilities on the paths.",
            capabilities::of_accessor,
        )],
    )
    .fields(capabilities::ACCESSOR_FIELDS),
    Path::new(
        "mounts",
        "The mounted secrets engines.",
        &[op(
            Read,
            "mounts-list-secrets-engines",
            "List the mounted secrets engines.",
            mounts::read_table,
        )],
    ),
    Path::new(
        "mounts/{path*}/tune",
        "The settings of a mount.",
        &[op(
            Read,
            "mounts-read-tuning-information",
            "Read the settings of a mount.",
            mounts::read_tune,
        )],
    )
    .params(MOUNT),
    Path::new(
        "mounts/{path*}",
        "Enable, read and disable the secrets engine at a path.",
        &[
            op(
                Read,
                "mounts-read-configuration",
                "Read the mount at the path.",
                mounts::read,
            ),
            op(
                Update,
                "mounts-enable-secrets-engine",
                "Enable a secrets engine at the path.",
                mounts::enable,
            ),
            op(
                Delete,
                "mounts-disable-secrets-engine",
                "Disable the secrets engine at the path and delete its data.",
                mounts::disable,
            ),
        ],
    )
    .params(MOUNT)
    .fields(mounts::ENABLE_FIELDS),
    Path::new(
        "namespaces",
        "The namespaces directly under the request's namespace.",
        &[op(
            List,
            "namespaces-list-namespaces",
            "List the child namespaces.",
            namespaces::list,
        )],
    ),
    Path::new(
        "namespaces/{path+}",
        "Create, read, update and delete a namespace.",
        &[
            op(
                Read,
                "namespaces-read-namespace",
                "Read the namespace.",
                namespaces::read,
            )
            .no_fields(),
            op(
                Create,
                "namespaces-create-namespace",
                "Create the namespace (its parent must exist).",
                namespaces::write,
            ),
            op(
                Update,
                "namespaces-create-namespace",
                "Replace the namespace's custom metadata.",
                namespaces::write,
            ),
            op(
                Patch,
                "namespaces-patch-namespace",
                "Merge the namespace's custom metadata (a null value removes a key).",
                namespaces::patch,
            ),
            op(
                Delete,
                "namespaces-delete-namespace",
                "Delete the namespace and everything in it.",
                namespaces::delete,
            )
            .no_fields(),
        ],
    )
    .params(namespaces::PATH)
    .fields(namespaces::FIELDS)
    .existence_check(namespaces::exists),
    Path::new(
        "key-status",
        "The storage encryption key's term, install time and encryption count.",
        &[op(
            Read,
            "encryption-key-status",
            "Read the active encryption key's status.",
            keys::status,
        )],
    ),
    Path::new(
        "rotate",
        "Rotate the storage encryption key: a new key seals every write from now on.",
        &[op(
            Update,
            "encryption-key-rotate",
            "Add a new encryption key; older keys stay to read what they sealed.",
            keys::rotate,
        )],
    )
    .sudo(),
    Path::new(
        "internal/specs/openapi",
        "The OpenAPI document of every path served.",
        &[
            op(
                Read,
                "internal-generate-open-api-document",
                "Generate the OpenAPI 3 document of every path served.",
                openapi::read,
            ),
            op(
                Update,
                "internal-generate-open-api-document-with-parameters",
                "Generate the OpenAPI 3 document (parameters in the body).",
                openapi::read,
            ),
        ],
    )
    .fields(openapi::FIELDS),
    // Decided in the handler: any capability under the mount suffices.
    Path::new(
        "internal/ui/mounts/{path*}",
        "Which mount serves a path, and what runs there.",
        &[op(
            Read,
            "internal-ui-read-mount-information",
            "Read the mount that serves the path.",
            internal_ui::read_mount,
        )],
    )
    .params(&[FieldSpec::string("path").describe("A path inside the mount.")])
    .access_by_mount(),
    Path::new(
        "quotas/config",
        "The rate-limit quota configuration.",
        &[
            op(
                Read,
                "rate-limit-quotas-read-configuration",
                "Read the quota configuration.",
                quotas::read_config,
            ),
            op(
                Update,
                "rate-limit-quotas-configure",
                "Replace the quota configuration.",
                quotas::write_config,
            ),
        ],
    )
    .fields(quotas::CONFIG_FIELDS),
    Path::new(
        "quotas/rate-limit",
        "The rate-limit quotas.",
        &[op(
            List,
            "rate-limit-quotas-list",
            "List the rate-limit quotas.",
            quotas::list,
        )],
    ),
    Path::new(
        "quotas/rate-limit/{name}",
        "Read, write and delete a rate-limit quota.",
        &[
            op(
                Read,
                "rate-limit-quotas-read",
                "Read the quota.",
                quotas::read,
            )
            .no_fields(),
            op(
                Update,
                "rate-limit-quotas-write",
                "Create or replace the quota.",
                quotas::write,
            ),
            op(
                Delete,
                "rate-limit-quotas-delete",
                "Delete the quota.",
                quotas::delete,
            )
            .no_fields(),
        ],
    )
    .params(quotas::NAME)
    .fields(quotas::RATE_LIMIT_FIELDS),
];
