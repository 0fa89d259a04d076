//! Secrets sync's part of a request's commit: the changes the request
//! recorded (see [`crate::effects`]) become outbox work in the same
//! transaction, and where sync work became due is reported, the request's
//! own sync handlers included (they record [`Change::SyncDue`] as they queue).

use crate::effects::{Change, SyncDue};
use crate::error::ApiResult;
use crate::storage::Tx;
use crate::sync::outbox;

/// What [`settle`] did.
#[derive(Debug, Default)]
pub struct Settled {
    /// Where sync work became due.
    pub sync_due: SyncDue,
    /// Warnings for the reply: sync work that did not fit in the outbox.
    pub warnings: Vec<String>,
}

/// Queues, in `tx`, the sync work of the changes recorded in it: a changed
/// secret's associations are synced, a disabled mount's are unsynced and
/// dropped. Called once, right before `tx` commits.
pub fn settle(tx: &mut Tx) -> ApiResult<Settled> {
    let mut warnings = Vec::new();
    for change in tx.changes().to_vec() {
        match change {
            Change::SecretChanged {
                mount_accessor,
                path,
            } => warnings.extend(outbox::secret_changed(tx, &mount_accessor, &path)?),
            Change::MountDisabled { accessor } => outbox::mount_disabled(tx, &accessor)?,
            Change::SyncDue { .. } | Change::SyncDueEverywhere => {}
        }
    }
    Ok(Settled {
        sync_due: SyncDue::of(tx.changes()),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::effects::{Effects, SyncDue};
    use crate::env::{Env, Fakes};
    use crate::storage::Tx;
    use crate::sync::associations::Association;
    use crate::sync::keys;
    use crate::sync::worker::{self, Settings};
    use crate::testing::{self, Counting};

    /// Sends a request that must succeed; returns its effects.
    fn effects_on(env: &Env, method: &str, path: &str, body: Value) -> Effects {
        let out = testing::send_outcome(env, method, path, &body);
        let status = out.response.status;
        assert!(
            status == 200 || status == 204,
            "{method} {path}: {status} {}",
            testing::json_body(&out.response)
        );
        out.effects
    }

    fn effects(f: &Fakes, method: &str, path: &str, body: Value) -> Effects {
        effects_on(&f.env(), method, path, body)
    }

    fn put(f: &Fakes, secret: &str, v: i64) -> Effects {
        effects(
            f,
            "POST",
            &format!("secret/data/{secret}"),
            json!({"data": {"v": v}}),
        )
    }

    /// Runs every queued entry (no coalescing).
    fn drain(f: &Fakes) -> worker::RunReport {
        let settings = Settings {
            coalesce_window_ms: 0,
            ..Settings::default()
        };
        worker::run(&f.env(), 0, 1, 100, &settings)
    }

    fn due(destinations: &[&str]) -> SyncDue {
        SyncDue::Destinations(destinations.iter().map(|d| d.to_string()).collect())
    }

    /// KV-v2 at `secret/`, the secrets `app` and `alone`, and `app` synced
    /// (inline, so nothing is queued) to the in-mem destinations `d1`..`dn`.
    fn setup(destinations: usize) -> Fakes {
        let f = Fakes::default();
        effects(&f, "POST", "sys/mounts/secret", json!({"type": "kv-v2"}));
        put(&f, "app", 0);
        put(&f, "alone", 0);
        for i in 1..=destinations {
            let dest = format!("sys/sync/destinations/in-mem/d{i}");
            effects(&f, "POST", &dest, json!({}));
            let set = effects(
                &f,
                "POST",
                &format!("{dest}/associations/set"),
                json!({"mount": "secret", "secret_name": "app"}),
            );
            assert_eq!(set.sync_due, SyncDue::None, "synced inline");
        }
        f
    }

    #[test]
    fn a_kv_write_names_the_destinations_of_the_secret() {
        let f = setup(2);
        assert_eq!(put(&f, "app", 1).sync_due, due(&["in-mem/d1", "in-mem/d2"]));
        assert_eq!(put(&f, "alone", 1).sync_due, SyncDue::None);
        assert_eq!(
            effects(&f, "GET", "secret/data/app", Value::Null).sync_due,
            SyncDue::None
        );
        // Every KV change a destination sees, the same way.
        for (method, path, body) in [
            ("DELETE", "secret/data/app", Value::Null),
            ("POST", "secret/undelete/app", json!({"versions": [2]})),
            ("PATCH", "secret/data/app", json!({"data": {"w": 1}})),
            ("POST", "secret/destroy/app", json!({"versions": [3]})),
            ("DELETE", "secret/metadata/app", Value::Null),
        ] {
            drain(&f);
            assert_eq!(
                effects(&f, method, path, body).sync_due,
                due(&["in-mem/d1", "in-mem/d2"]),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_failed_request_has_no_effects_and_queues_nothing() {
        let f = setup(1);
        let out = testing::send_outcome(
            &f.env(),
            "POST",
            "secret/data/app",
            &json!({"data": {"v": 1}, "options": {"cas": 9}}),
        );
        assert_eq!(out.response.status, 400);
        assert_eq!(out.effects, Effects::default());
        assert!(!f.storage.keys().iter().any(|k| k.starts_with(keys::OUTBOX)));
    }

    #[test]
    fn sync_handlers_and_a_mount_disable_report_where_work_is_due() {
        let f = setup(2);
        // A failed inline sync leaves its retry to the worker, which is woken
        // to learn when it falls due.
        *f.connector.fail_with.borrow_mut() = Some(crate::connector::SyncError::ExternalService {
            message: "provider unavailable".into(),
            retry_after_ms: None,
        });
        put(&f, "alone", 1);
        let set = effects(
            &f,
            "POST",
            "sys/sync/destinations/in-mem/d2/associations/set",
            json!({"mount": "secret", "secret_name": "alone"}),
        );
        assert_eq!(set.sync_due, due(&["in-mem/d2"]));
        *f.connector.fail_with.borrow_mut() = None;
        drain(&f);

        // Sync off and on again: whatever waited is due everywhere.
        effects(&f, "PATCH", "sys/sync/config", json!({"disabled": true}));
        assert_eq!(put(&f, "app", 1).sync_due, due(&["in-mem/d1", "in-mem/d2"]));
        let enable = effects(&f, "PATCH", "sys/sync/config", json!({"disabled": false}));
        assert_eq!(enable.sync_due, SyncDue::All);
        drain(&f);

        // Disabling the mount unsyncs every association of its secrets.
        let disable = effects(&f, "DELETE", "sys/mounts/secret", Value::Null);
        assert_eq!(disable.sync_due, due(&["in-mem/d1", "in-mem/d2"]));
        let report = drain(&f);
        assert_eq!((report.processed, report.failed), (3, 0));
        assert!(f.connector.objects("in-mem", "d1").is_empty());
        assert!(f.connector.objects("in-mem", "d2").is_empty());
    }

    #[test]
    fn a_write_run_again_after_a_conflict_queues_its_sync_in_the_commit_that_lands() {
        let f = setup(1);
        let storage = Counting::new(&f.storage);
        storage.conflicts.set(1);
        let env = Env {
            storage: &storage,
            ..f.env()
        };
        let out = effects_on(&env, "POST", "secret/data/app", json!({"data": {"v": 1}}));
        assert_eq!(storage.commits.get(), 2);
        assert_eq!(out.sync_due, due(&["in-mem/d1"]));
        let mut tx = Tx::new(&f.storage);
        assert_eq!(crate::sync::outbox::count(&mut tx).unwrap(), 1);
        assert_eq!(drain(&f).processed, 1);
        assert_eq!(
            f.connector
                .objects("in-mem", "d1")
                .values()
                .next()
                .unwrap()
                .value,
            r#"{"v":1}"#
        );
    }

    /// A KV write's storage reads (the write path P8 measures): the mount
    /// table, the mount's config and the secret's metadata; then, per
    /// association, its outbox entry, and its record unless the entry is
    /// already queued and held back; new entries read the entry count (its
    /// parts, and an older version's single count: once per request) and the
    /// sync config (capacity). Lists: the secret's associations.
    #[test]
    fn a_kv_write_reads_what_its_sync_needs_and_no_more() {
        let f = setup(5);
        let counted = |secret: &str, v: i64| {
            let counting = Counting::new(&f.storage);
            let env = Env {
                storage: &counting,
                ..f.env()
            };
            let out = effects_on(
                &env,
                "POST",
                &format!("secret/data/{secret}"),
                json!({"data": {"v": v}}),
            );
            assert_eq!(counting.commits.get(), 1);
            (counting.gets.get(), counting.lists.get(), out.sync_due)
        };
        let (gets, lists, sync_due) = counted("alone", 1);
        assert_eq!((gets, lists, sync_due), (3, 1, SyncDue::None));
        // Nothing queued: 5 new entries.
        let (gets, lists, sync_due) = counted("app", 1);
        let count_parts = crate::sync::keys::OUTBOX_COUNT_SHARDS as usize + 1;
        assert_eq!((gets, lists), (3 + 5 + 5 + count_parts + 1, 1));
        assert!(matches!(sync_due, SyncDue::Destinations(d) if d.len() == 5));
        // Queued and due: the entries are replaced.
        let (gets, lists, _) = counted("app", 2);
        assert_eq!((gets, lists), (3 + 5 + 5, 1));
        // Queued and held back (the worker spaces writes right after a
        // push): the change joins the entries, reads no record, wakes no one.
        // Each association is in a burst of writes that just pushed, so the
        // worker holds it back for the whole window however slow this runs.
        let accessor = testing::accessor(&f.storage, "secret/");
        let mut tx = Tx::new(&f.storage);
        for i in 1..=5 {
            let dest = format!("d{i}");
            let mut record = Association::load(&mut tx, "in-mem", &dest, &accessor, "app")
                .unwrap()
                .unwrap();
            record.pushed_at = crate::time::now();
            record.burst = 1;
            record.save(&mut tx).unwrap();
        }
        tx.commit().unwrap();
        let coalescing = Settings {
            coalesce_window_ms: 60_000,
            ..Settings::default()
        };
        assert_eq!(worker::run(&f.env(), 0, 1, 100, &coalescing).processed, 0);
        let (gets, lists, sync_due) = counted("app", 3);
        assert_eq!((gets, lists, sync_due), (3 + 5, 1, SyncDue::None));
    }
}
