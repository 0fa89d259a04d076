//! Secrets sync's part of a request's changes. For now: what the KV write
//! path reads to queue its sync work (the path benchmark P8 measures).

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::env::{Env, Fakes};
    use crate::sync::worker::{self, Settings};
    use crate::testing::{self, Counting};

    fn ok_on(env: &Env, method: &str, path: &str, body: Value) {
        let (status, body) = testing::call(env, method, path, &body);
        assert!(
            status == 200 || status == 204,
            "{method} {path}: {status} {body}"
        );
    }

    /// KV-v2 at `secret/`, the secrets `app` and `alone`, and `app` synced
    /// (inline, so nothing is queued) to the in-mem destinations `d1`..`dn`.
    fn setup(destinations: usize) -> Fakes {
        let f = Fakes::default();
        let env = f.env();
        ok_on(&env, "POST", "sys/mounts/secret", json!({"type": "kv-v2"}));
        for secret in ["app", "alone"] {
            let path = format!("secret/data/{secret}");
            ok_on(&env, "POST", &path, json!({"data": {"v": 0}}));
        }
        for i in 1..=destinations {
            let dest = format!("sys/sync/destinations/in-mem/d{i}");
            ok_on(&env, "POST", &dest, json!({}));
            ok_on(
                &env,
                "POST",
                &format!("{dest}/associations/set"),
                json!({"mount": "secret", "secret_name": "app"}),
            );
        }
        f
    }

    /// A KV write's storage reads (the write path P8 measures): the mount
    /// table, the mount's config and the secret's metadata; then, per
    /// association, its outbox entry, and its record unless the entry is
    /// already queued and held back; a new entry reads the entry count and
    /// the sync config (capacity). Lists: the secret's associations.
    #[test]
    fn a_kv_write_reads_what_its_sync_needs_and_no_more() {
        let f = setup(5);
        let counted = |secret: &str, v: i64| {
            let counting = Counting::new(&f.storage);
            let env = Env {
                storage: &counting,
                ..f.env()
            };
            let path = format!("secret/data/{secret}");
            ok_on(&env, "POST", &path, json!({"data": {"v": v}}));
            assert_eq!(counting.commits.get(), 1);
            (counting.gets.get(), counting.lists.get())
        };
        assert_eq!(counted("alone", 1), (3, 1));
        // Nothing queued: 5 new entries.
        assert_eq!(counted("app", 1), (3 + 5 + 5 + 2, 1));
        // Queued and due: the entries are replaced.
        assert_eq!(counted("app", 2), (3 + 5 + 5, 1));
        // Queued and held back (the worker spaces writes right after a
        // push): the change joins the entries and reads no record.
        let coalescing = Settings {
            coalesce_window_ms: 60_000,
            ..Settings::default()
        };
        assert_eq!(worker::run(&f.env(), 0, 1, 100, &coalescing).processed, 0);
        assert_eq!(counted("app", 3), (3 + 5, 1));
    }
}
