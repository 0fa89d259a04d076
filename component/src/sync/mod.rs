//! Secrets Sync: `sys/sync/...` and `sys/activation-flags`. Destinations,
//! associations and their statuses, the global config and GitHub Apps, all
//! as storage records of the tenant; provider calls go through the connector.

pub mod activation;
pub mod associations;
pub mod changes;
pub mod config;
pub mod destinations;
pub mod github_apps;
pub mod jobs;
pub mod names;
pub mod outbox;
pub mod reconcile;
pub mod status;
pub mod worker;

use crate::api::Operation::{Create, Delete, List, Patch, Read, Update};
use crate::framework::{Backend, Check, FieldSpec, Path, Schema, op};

use destinations::TYPE_NAMES;

/// `sys/sync/...`. Every path needs Secrets Sync activated (`sys/activation-flags`,
/// a backend of its own, is how it gets activated).
pub static BACKEND: Backend = Backend::new("sys/sync/", "system", PATHS)
    .ignore_trailing_slashes()
    .guard(activation::require_activated);

/// `{type}`: one of the destination types.
const TYPE: FieldSpec = FieldSpec::string("type")
    .check(Check::OneOf(&TYPE_NAMES))
    .describe("The destination type.");
const NAME: FieldSpec = FieldSpec::string("name").describe("The name of the destination.");
const DESTINATION: &[FieldSpec] = &[TYPE, NAME];

const PATHS: &[Path] = &[
    Path::new(
        "config",
        "The global settings of Secrets Sync.",
        &[
            op(
                Read,
                "system-read-sync-config",
                "Read the sync settings.",
                config::read,
            )
            .no_fields(),
            op(
                Patch,
                "system-patch-sync-config",
                "Change the sync settings given.",
                config::write,
            ),
            op(
                Update,
                "system-write-sync-config",
                "Change the sync settings given (as PATCH).",
                config::write,
            ),
            op(
                Delete,
                "system-delete-sync-config",
                "Reset the sync settings to their defaults.",
                config::delete,
            )
            .no_fields(),
        ],
    )
    .fields(config::FIELDS),
    Path::new(
        "destinations",
        "Every destination, by type.",
        &[op(
            List,
            "system-list-sync-destinations",
            "List the destinations of every type.",
            destinations::list_all,
        )],
    ),
    Path::new(
        "destinations/{type}",
        "The destinations of one type.",
        &[op(
            List,
            "system-list-sync-destinations-type",
            "List the destinations of the type.",
            destinations::list_type,
        )],
    )
    .params(&[TYPE]),
    Path::new(
        "destinations/{type}/{name}",
        "A destination: where associated secrets are synced, and how.",
        &[
            op(
                Read,
                "system-read-sync-destinations-{type}-name",
                "Read the destination (credentials masked).",
                destinations::read,
            )
            .no_fields(),
            op(
                Create,
                "system-write-sync-destinations-{type}-name",
                "Create the destination.",
                destinations::write,
            ),
            op(
                Update,
                "system-write-sync-destinations-{type}-name",
                "Update the destination with the fields given.",
                destinations::write,
            ),
            op(
                Patch,
                "system-patch-sync-destinations-{type}-name",
                "Update the destination with the fields given (merge patch).",
                destinations::patch,
            ),
            op(
                Delete,
                "system-delete-sync-destinations-{type}-name",
                "Delete the destination, or purge its associations first.",
                destinations::delete,
            )
            .fields(Schema::Fields(destinations::DELETE_FIELDS)),
        ],
    )
    .params(DESTINATION)
    .schema(Schema::ByParam {
        param: "type",
        tables: destinations::request_tables,
    })
    .existence_check(destinations::exists),
    Path::new(
        "destinations/{type}/{name}/associations",
        "The secrets associated with a destination and their sync status.",
        &[op(
            Read,
            "system-read-sync-destinations-type-name-associations",
            "Read the associations of the destination.",
            associations::read,
        )],
    )
    .params(DESTINATION),
    Path::new(
        "destinations/{type}/{name}/associations/set",
        "Associates a secret with a destination, and syncs it.",
        &[op(
            Update,
            "system-write-sync-destinations-type-name-associations-set",
            "Associate a secret and sync it.",
            associations::set,
        )],
    )
    .params(DESTINATION)
    .fields(associations::FIELDS),
    Path::new(
        "destinations/{type}/{name}/associations/remove",
        "Removes a secret from a destination, and unsyncs it.",
        &[op(
            Update,
            "system-write-sync-destinations-type-name-associations-remove",
            "Unsync a secret and remove its association.",
            associations::remove,
        )],
    )
    .params(DESTINATION)
    .fields(associations::FIELDS),
    Path::new(
        "destinations/in-mem/{name}/objects",
        "What an in-mem destination holds (a kvsync extension).",
        &[op(
            Read,
            "system-read-sync-destinations-in-mem-name-objects",
            "Read the external secrets of the destination.",
            destinations::objects,
        )],
    )
    .params(&[NAME]),
    Path::new(
        "associations",
        "Every associated secret.",
        &[op(
            List,
            "system-list-sync-associations",
            "List the secrets associated with any destination.",
            associations::list_all,
        )],
    ),
    Path::new(
        "associations/destinations",
        "The destinations of one secret (given as query parameters).",
        &[op(
            Read,
            "system-read-sync-associations-destinations",
            "Read the destinations a secret is associated with.",
            associations::destinations_of,
        )],
    )
    .fields(associations::FIELDS),
    Path::new(
        "associations/{mount}/{secret_name+}",
        "The destinations of one secret (given as the path).",
        &[op(
            Read,
            "system-read-sync-associations-mount-secret_name",
            "Read the destinations a secret is associated with.",
            associations::destinations_at,
        )],
    )
    .params(&[
        FieldSpec::string("mount").describe("Path of the KV-v2 mount that holds the secret."),
        FieldSpec::string("secret_name").describe("Path of the secret inside the mount."),
    ]),
    Path::new(
        "github-apps",
        "The GitHub Apps gh destinations can authenticate as.",
        &[op(
            List,
            "system-list-sync-github-apps",
            "List the registered GitHub Apps.",
            github_apps::list,
        )],
    ),
    Path::new(
        "github-apps/{name}",
        "A GitHub App gh destinations can authenticate as.",
        &[
            op(
                Read,
                "system-read-sync-github-apps-name",
                "Read the app (its key masked, with its fingerprint).",
                github_apps::read,
            )
            .no_fields(),
            op(
                Update,
                "system-write-sync-github-apps-name",
                "Register the app, or replace its key.",
                github_apps::write,
            ),
            op(
                Delete,
                "system-delete-sync-github-apps-name",
                "Delete the app, unless a destination uses it.",
                github_apps::delete,
            )
            .no_fields(),
        ],
    )
    .params(&[FieldSpec::string("name").describe("The name of the GitHub App.")])
    .fields(github_apps::FIELDS),
];

/// Storage keys of the sync records (tenant-relative). Secret names may hold
/// `/`, so they are escaped where a key continues after them.
pub mod keys {
    pub const CONFIG: &str = "sync/config";
    pub const ACTIVATION: &str = "sync/activation";
    pub const DESTINATIONS: &str = "sync/destinations/";
    pub const GITHUB_APPS: &str = "sync/github-apps/";
    pub const BY_SECRET: &str = "sync/by-secret/";
    /// Every association record lives under this prefix.
    pub const ASSOCIATIONS: &str = "sync/associations/";
    /// Which association holds each external name of a destination: one
    /// entry per name an association's objects may occupy (collision checks
    /// cost one read per new name, not a scan of the destination).
    pub const CLAIMS: &str = "sync/claims/";
    /// The durable sync outbox: one entry per (destination, secret) with work to do.
    pub const OUTBOX: &str = "sync/outbox/";
    /// The outbox in due order, per destination:
    /// `sync/due/<type>/<name>/<due_at, 20 digits>/<accessor>/<escaped secret>`,
    /// empty values. A worker run lists the destinations of its shard and the
    /// first keys of each, so finding the earliest due entries costs a few
    /// keys, not a read of every entry (nor a look at other shards' work).
    pub const DUE: &str = "sync/due/";
    /// The number of entries in the outbox (for `queue_capacity`), in
    /// [`OUTBOX_COUNT_SHARDS`] signed parts at `sync/outbox-count/<k>` (see
    /// [`crate::sync::outbox`]); outside [`OUTBOX`], so that listing the
    /// entries does not see them.
    pub const OUTBOX_COUNT: &str = "sync/outbox-count/";
    /// How many parts the entry count is split into.
    pub const OUTBOX_COUNT_SHARDS: u32 = 16;
    /// The whole count in one key, as versions before the split wrote it: read
    /// as part of the total and folded into a part by the next count change.
    pub const OUTBOX_COUNT_UNSPLIT: &str = "sync/outbox-count";

    pub fn outbox_count(shard: u32) -> String {
        format!("{OUTBOX_COUNT}{shard}")
    }

    /// `a/b%c` → `a%2Fb%25c`.
    pub fn escape(segment: &str) -> String {
        segment.replace('%', "%25").replace('/', "%2F")
    }

    pub fn unescape(segment: &str) -> String {
        segment.replace("%2F", "/").replace("%25", "%")
    }

    pub fn destination(kind: &str, name: &str) -> String {
        format!("{DESTINATIONS}{kind}/{name}")
    }

    /// Every association of one destination lives under this prefix.
    pub fn associations_of(kind: &str, name: &str) -> String {
        format!("{ASSOCIATIONS}{kind}/{name}/")
    }

    pub fn association(kind: &str, name: &str, accessor: &str, secret_name: &str) -> String {
        format!(
            "{}{accessor}/{}",
            associations_of(kind, name),
            escape(secret_name)
        )
    }

    /// The claims of one destination's external names live under this prefix.
    pub fn claims_of(kind: &str, name: &str) -> String {
        format!("{CLAIMS}{kind}/{name}/")
    }

    /// The claim on external name `external` at destination `kind/name`.
    pub fn claim(kind: &str, name: &str, external: &str) -> String {
        format!("{}{}", claims_of(kind, name), escape(external))
    }

    /// The index from a secret to its destinations lives under this prefix.
    pub fn destinations_of(accessor: &str, secret_name: &str) -> String {
        format!("{BY_SECRET}{accessor}/{}/", escape(secret_name))
    }

    pub fn secret_index(accessor: &str, secret_name: &str, kind: &str, name: &str) -> String {
        format!("{}{kind}/{name}", destinations_of(accessor, secret_name))
    }

    /// The index entries of every secret of one mount (by its accessor).
    pub fn secrets_of_accessor(accessor: &str) -> String {
        format!("{BY_SECRET}{accessor}/")
    }

    /// The outbox entries of one destination live under this prefix.
    pub fn outbox_of(kind: &str, name: &str) -> String {
        format!("{OUTBOX}{kind}/{name}/")
    }

    /// The outbox entry of one association: the same identity as the association.
    pub fn outbox(kind: &str, name: &str, accessor: &str, secret_name: &str) -> String {
        format!(
            "{}{accessor}/{}",
            outbox_of(kind, name),
            escape(secret_name)
        )
    }

    /// The due index of one destination lives under this prefix.
    pub fn due_of(kind: &str, name: &str) -> String {
        format!("{DUE}{kind}/{name}/")
    }

    /// The due-index key of an outbox entry due at `due_at`.
    pub fn due(kind: &str, name: &str, accessor: &str, secret_name: &str, due_at: i64) -> String {
        format!(
            "{}{:020}/{accessor}/{}",
            due_of(kind, name),
            due_at.max(0),
            escape(secret_name)
        )
    }

    /// Splits a key relative to [`due_of`] into the due time, the accessor
    /// and the secret (unescaped).
    pub fn split_due(rel: &str) -> Option<(i64, String, String)> {
        let mut parts = rel.splitn(3, '/');
        let (at, accessor, escaped) = (parts.next()?, parts.next()?, parts.next()?);
        if accessor.is_empty() || escaped.is_empty() || escaped.contains('/') {
            return None;
        }
        Some((at.parse().ok()?, accessor.to_string(), unescape(escaped)))
    }

    /// Splits `<kind>/<name>/<accessor>/<escaped secret>` (a key relative to
    /// [`ASSOCIATIONS`] or [`OUTBOX`]) into its parts, the secret unescaped.
    pub fn split_association(rel: &str) -> Option<(String, String, String, String)> {
        let mut parts = rel.splitn(4, '/');
        let (kind, name, accessor, escaped) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if [kind, name, accessor, escaped].iter().any(|p| p.is_empty()) || escaped.contains('/') {
            return None;
        }
        Some((
            kind.to_string(),
            name.to_string(),
            accessor.to_string(),
            unescape(escaped),
        ))
    }

    pub fn github_app(name: &str) -> String {
        format!("{GITHUB_APPS}{name}")
    }
}
