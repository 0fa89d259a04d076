//! The token auth method, `auth/token/`: create, look up, renew and revoke
//! tokens (by value, by accessor, or the caller's own), list accessors.
//!
//! The split: this module parses each endpoint's fields with Vault's lenient
//! types (durations as `"1h"`, `"0s"`, `3600`; `""` and `0` mean unset, as the
//! Go client and the CLI send them), refuses what is wrong in the request
//! alone (a negative TTL or use count, `type: batch`, an entity alias), and
//! writes Vault's bodies: the `auth` block of create and renew, the `data` of
//! lookups. The host's `tokens` import does everything that needs the
//! caller, its policies, the token tree or the clock.
//!
//! Not served: token roles (`create/:role_name` answers `unknown role`, role
//! listings are empty) and batch tokens.

mod create;
mod manage;
mod render;
#[cfg(test)]
mod tests;

use crate::api::Operation::{List, Read, Update};
use crate::framework::{Backend, FieldSpec, FieldType, Path, op};

pub static BACKEND: Backend = Backend::new("auth/token/", "token", PATHS);

/// The fields of `create` and `create-orphan`.
const CREATE_FIELDS: &[FieldSpec] = &[
    FieldSpec::new("policies", FieldType::StringSlice).describe(
        "Policies of the token; by default the parent's (a non-root parent may only give a subset of its own).",
    ),
    FieldSpec::new("meta", FieldType::KvPairs)
        .describe("Arbitrary key=value metadata shown by lookups and in the auth block."),
    FieldSpec::new("no_parent", FieldType::Bool)
        .describe("Create an orphan token (root or sudo only)."),
    FieldSpec::new("no_default_policy", FieldType::Bool)
        .describe("Leave the default policy out of the token's policies."),
    FieldSpec::new("renewable", FieldType::Bool)
        .describe("Whether the token can be renewed up to the maximum TTL (default true)."),
    FieldSpec::new("ttl", FieldType::Duration)
        .describe("Time to live of the token; by default 768h."),
    FieldSpec::new("lease", FieldType::Duration).describe("Use ttl instead (deprecated)."),
    FieldSpec::new("explicit_max_ttl", FieldType::Duration)
        .describe("A hard limit on the token's life that renewals cannot pass."),
    FieldSpec::new("period", FieldType::Duration)
        .describe("Make a periodic token renewed to this TTL each time (root or sudo only)."),
    FieldSpec::string("display_name").describe("Name of the token, shown as token-<name>."),
    FieldSpec::new("num_uses", FieldType::Int)
        .describe("How many requests the token may make; 0 is unlimited."),
    FieldSpec::string("type").describe("Token type: service (batch tokens are not supported)."),
    FieldSpec::string("id").describe("The token's value (root or sudo only)."),
    FieldSpec::string("entity_alias")
        .describe("Entity alias of the token; only with a token role (not supported)."),
];

/// `token` of the paths that name a token in the body (or the query).
const TOKEN_FIELD: &[FieldSpec] =
    &[FieldSpec::string("token").describe("The token (in the request body).")];
const ACCESSOR_FIELD: &[FieldSpec] =
    &[FieldSpec::string("accessor").describe("Accessor of the token (in the request body).")];
const INCREMENT: FieldSpec = FieldSpec::new("increment", FieldType::Duration)
    .describe("The new TTL from now; by default the token's current TTL.");
const RENEW_FIELDS: &[FieldSpec] = &[
    FieldSpec::string("token").describe("The token to renew (in the request body)."),
    INCREMENT,
];
const RENEW_SELF_FIELDS: &[FieldSpec] = &[
    FieldSpec::string("token").describe("Unused: the request's own token is renewed."),
    INCREMENT,
];
const RENEW_ACCESSOR_FIELDS: &[FieldSpec] = &[
    FieldSpec::string("accessor").describe("Accessor of the token to renew (in the request body)."),
    INCREMENT,
];
const ROLE_NAME: &[FieldSpec] = &[FieldSpec::string("role_name").describe("Name of the role.")];

const PATHS: &[Path] = &[
    Path::new(
        "accessors/",
        "The accessors of every token of the namespace.",
        &[op(
            List,
            "token-list-accessors",
            "List token accessors.",
            manage::list_accessors,
        )],
    )
    .sudo(),
    Path::new(
        "create-orphan",
        "Create a token without a parent.",
        &[op(
            Update,
            "token-create-orphan",
            "Create an orphan token.",
            create::create_orphan,
        )],
    )
    .fields(CREATE_FIELDS),
    Path::new(
        "create/{role_name}",
        "Create a token against a role (token roles are not supported).",
        &[op(
            Update,
            "token-create-against-role",
            "Create a token against a role.",
            create::create_against_role,
        )
        .no_fields()],
    )
    .params(ROLE_NAME),
    Path::new(
        "create",
        "Create a token, a child of the request's token.",
        &[op(
            Update,
            "token-create",
            "Create a token.",
            create::create,
        )],
    )
    .fields(CREATE_FIELDS),
    Path::new(
        "lookup",
        "Information about a token.",
        &[
            op(
                Read,
                "token-look-up2",
                "Look up a token (query).",
                manage::lookup,
            ),
            op(Update, "token-look-up", "Look up a token.", manage::lookup),
        ],
    )
    .fields(TOKEN_FIELD),
    Path::new(
        "lookup-accessor",
        "Information about a token, by its accessor.",
        &[op(
            Update,
            "token-look-up-accessor",
            "Look up a token by its accessor.",
            manage::lookup_accessor,
        )],
    )
    .fields(ACCESSOR_FIELD),
    Path::new(
        "lookup-self",
        "Information about the token of the request.",
        &[
            op(
                Read,
                "token-look-up-self",
                "Look up the calling token.",
                manage::lookup_self,
            ),
            op(
                Update,
                "token-look-up-self2",
                "Look up the calling token (POST form).",
                manage::lookup_self,
            ),
        ],
    )
    .fields(&[FieldSpec::string("token").describe("Unused: the request's own token is shown.")]),
    Path::new(
        "revoke-accessor",
        "Revoke a token and its children, by the token's accessor.",
        &[op(
            Update,
            "token-revoke-accessor",
            "Revoke a token by its accessor.",
            manage::revoke_accessor,
        )],
    )
    .fields(ACCESSOR_FIELD),
    Path::new(
        "revoke-self",
        "Revoke the token of the request and its children.",
        &[op(
            Update,
            "token-revoke-self",
            "Revoke the calling token.",
            manage::revoke_self,
        )
        .no_fields()],
    ),
    Path::new(
        "revoke",
        "Revoke a token and its children.",
        &[op(
            Update,
            "token-revoke",
            "Revoke a token.",
            manage::revoke,
        )],
    )
    .fields(TOKEN_FIELD),
    Path::new(
        "revoke-orphan",
        "Revoke a token and make its children orphans (root or sudo only).",
        &[op(
            Update,
            "token-revoke-orphan",
            "Revoke a token, not its children.",
            manage::revoke_orphan,
        )],
    )
    .fields(TOKEN_FIELD),
    Path::new(
        "renew-accessor",
        "Renew a token, by its accessor.",
        &[op(
            Update,
            "token-renew-accessor",
            "Renew a token by its accessor.",
            manage::renew_accessor,
        )],
    )
    .fields(RENEW_ACCESSOR_FIELDS),
    Path::new(
        "renew-self",
        "Renew the token of the request.",
        &[op(
            Update,
            "token-renew-self",
            "Renew the calling token.",
            manage::renew_self,
        )],
    )
    .fields(RENEW_SELF_FIELDS),
    Path::new(
        "renew",
        "Renew a token.",
        &[op(Update, "token-renew", "Renew a token.", manage::renew)],
    )
    .fields(RENEW_FIELDS),
    Path::new(
        "roles/",
        "Token roles (not supported: there are none).",
        &[op(
            List,
            "token-list-roles",
            "List token roles.",
            manage::list_roles,
        )],
    ),
    Path::new(
        "roles/{role_name}",
        "A token role (not supported).",
        &[
            op(
                Read,
                "token-read-role",
                "Read a token role.",
                manage::read_role,
            )
            .no_fields(),
            op(
                Update,
                "token-write-role",
                "Write a token role.",
                manage::write_role,
            )
            .no_fields(),
        ],
    )
    .params(ROLE_NAME),
    Path::new(
        "tidy",
        "Remove the records of expired and revoked tokens now.",
        &[
            op(Update, "token-tidy", "Tidy the token store.", manage::tidy)
                .no_fields()
                .answers(&[("202", "The tidy started")]),
        ],
    ),
];
