//! `config_hcl`: the server's HCL configuration file parser
//! ([`Config::parse`]), on documents built from its stanzas and settings with
//! arbitrary values, and on arbitrary text.
//!
//! Invariants: nothing panics; an accepted configuration holds usable
//! settings (a body size, timeouts and a connection cap above zero, sync
//! settings that pass their own check); the `Debug` output of its PostgreSQL
//! stanza never shows the connection URL (it may hold a password).

use arbitrary::{Result, Unstructured};
use kvsync_host_core::config::{Config, Storage};

use crate::input::{list, word};

/// The password in the connection URL of [`VALUES`].
const PASSWORD: &str = "hunter2-pw@";

const STANZAS: &[&str] = &[
    "storage \"redb\"",
    "storage \"postgresql\"",
    "storage \"raft\"",
    "listener \"tcp\"",
    "listener \"unix\"",
    "storage",
    "listener",
    "seal \"awskms\"",
];

const KEYS: &[&str] = &[
    "path",
    "connection_url",
    "table",
    "ha_enabled",
    "max_parallel",
    "address",
    "tls_disable",
    "tls_cert_file",
    "tls_key_file",
    "max_request_size",
    "http_read_header_timeout",
    "http_read_timeout",
    "http_idle_timeout",
    "max_request_duration",
    "tls_handshake_timeout",
    "max_connections",
    "encryption_key_file",
    "cache_dir",
    "log_level",
    "guest_cpu_limit",
    "guest_memory_limit",
    "max_concurrent_requests",
    "max_running_requests",
    "guest_warm_instances",
    "provider_timeout",
    "sync_inline_timeout",
    "sync_workers",
    "sync_backoff_base",
    "sync_backoff_cap",
    "sync_reconcile_interval",
    "sync_coalesce_window",
    "ui",
    "disable_mlock",
    "api_addr",
    "cluster_addr",
    "unknown",
];

const VALUES: &[&str] = &[
    "true",
    "false",
    "0",
    "1",
    "-1",
    "4096",
    "18446744073709551615",
    "99999999999999999999999",
    "1.5",
    "-0.0",
    "1e400",
    "\"\"",
    "\"/var/lib/kvsync\"",
    "\"127.0.0.1:8200\"",
    "\"10s\"",
    "\"0s\"",
    "\"500ms\"",
    "\"5m\"",
    "\"1h\"",
    "\"18446744073709551615h\"",
    "\"64MiB\"",
    "\"99999999999GiB\"",
    "\"1 KiB\"",
    "\"t\"",
    "\"maybe\"",
    "\"32\"",
    "\"kvsync_store\"",
    "\"Bad-Name\"",
    "\"postgres://kvsync:hunter2-pw@db:5432/kvsync\"",
    "\"hunter2-pw@\"",
    "null",
    "[]",
    "[1, \"a\"]",
    "{}",
    "{ a = 1 }",
    "\"${var.x}\"",
    "<<EOT\nx\nEOT",
    "\"\\u00e9\"",
];

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(text) = document(&mut u) else {
        return;
    };
    let Ok(config) = Config::parse(&text) else {
        return;
    };
    let limits = &config.listener.limits;
    assert!(limits.max_request_size > 0, "{text}");
    assert!(
        !limits.read_header_timeout.is_zero()
            && !limits.read_timeout.is_zero()
            && !limits.idle_timeout.is_zero()
            && !limits.tls_handshake_timeout.is_zero()
            && !config.listener.max_request_duration.is_zero(),
        "{text}"
    );
    assert!(limits.max_connections > 0, "{text}");
    assert!(config.sync.validate().is_ok(), "{text}");
    // The password of the URL in VALUES: `-` and `@` cannot be in a table
    // name, so only the URL itself can put it in the stanza's `Debug`.
    if let Storage::Postgres(pg) = &config.storage {
        let shown = format!("{pg:?}");
        assert!(
            !shown.contains(PASSWORD),
            "Debug shows the connection URL: {shown}"
        );
    }
}

/// Stanzas and settings with values from the lists, or arbitrary text.
fn document(u: &mut Unstructured) -> Result<String> {
    if u.ratio(1u8, 8u8)? {
        return u.arbitrary();
    }
    let mut text = String::new();
    // Usually a valid base, so the settings after it are reached.
    if u.ratio(3u8, 4u8)? {
        text.push_str(
            "storage \"redb\" { path = \"/x\" }\nlistener \"tcp\" { tls_disable = true }\n",
        );
    }
    for item in list(u, 8, |u| {
        if u.ratio(1u8, 3u8)? {
            let settings = list(u, 4, setting)?;
            Ok(format!(
                "{} {{\n{}}}\n",
                word(u, STANZAS)?,
                settings.concat()
            ))
        } else {
            setting(u)
        }
    })? {
        text.push_str(&item);
    }
    Ok(text)
}

fn setting(u: &mut Unstructured) -> Result<String> {
    Ok(format!("{} = {}\n", word(u, KEYS)?, word(u, VALUES)?))
}
