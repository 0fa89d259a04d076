//! The system backend (`sys/...`): mounts, health and the UI's mount lookup.
//! Secrets Sync (`sys/sync/`, `sys/activation-flags`) has backends of its own.

pub mod health;
pub mod internal_ui;
pub mod mounts;

use crate::api::Operation::{Delete, Header, Read, Update};
use crate::framework::{Backend, FieldSpec, Path, op};

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
            ),
            op(
                Header,
                "read-health-status-head",
                "Check the server's health: the status only.",
                health::read,
            ),
        ],
    )
    .fields(health::FIELDS)
    .unauthenticated(),
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
    // Vault serves this without the ACL check and decides in the handler
    // (any capability under the mount); the host still asks for a token.
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
    .unauthenticated(),
];
