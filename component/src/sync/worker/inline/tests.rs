//! Write-ahead provider calls of `associations/set` and `remove`: the storage
//! failing (or the process dying) right after the provider call, and commits
//! that conflict before and after it.

use std::cell::Cell;

use serde_json::{Value, json};

use crate::connector::{Connector, DestinationRef, ExternalSecret, MemConnector, SyncError};
use crate::env::{Env, Fakes};
use crate::storage::{MemStorage, Tx};
use crate::sync::associations::Association;
use crate::sync::outbox;
use crate::sync::status::SyncStatus;
use crate::sync::worker::{self, Settings, make_all_due};
use crate::testing::Counting;

/// What befalls the storage right after the next provider write succeeds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    /// Every commit fails from then on (the process died; a restart is
    /// `down.set(false)`).
    Crash,
    /// The next commit conflicts.
    Conflict,
}

/// The in-memory connector, doing `after` to `storage` once a write succeeds.
struct Tripwire<'a> {
    inner: &'a MemConnector,
    storage: &'a Counting<'a>,
    after: Cell<After>,
}

impl Tripwire<'_> {
    fn wrote(&self) -> Result<(), SyncError> {
        match self.after.replace(After::Nothing) {
            After::Nothing => {}
            After::Crash => self.storage.down.set(true),
            After::Conflict => self.storage.conflicts.set(1),
        }
        Ok(())
    }
}

impl Connector for Tripwire<'_> {
    fn push(&self, dest: &DestinationRef, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.inner.push(dest, secret)?;
        self.wrote()
    }

    fn push_new(&self, dest: &DestinationRef, secret: &ExternalSecret) -> Result<(), SyncError> {
        self.inner.push_new(dest, secret)?;
        self.wrote()
    }

    fn delete(&self, dest: &DestinationRef, name: &str) -> Result<(), SyncError> {
        self.inner.delete(dest, name)?;
        self.wrote()
    }

    fn inspect(&self, dest: &DestinationRef) -> Result<Vec<ExternalSecret>, SyncError> {
        self.inner.inspect(dest)
    }
}

const SET: &str = "sys/sync/destinations/in-mem/d1/associations/set";
const REMOVE: &str = "sys/sync/destinations/in-mem/d1/associations/remove";

/// Runs `test` with the engine over counting storage and the tripwire
/// connector, after creating KV-v2 at `secret/`, the secret `app` and the
/// destination `in-mem/d1`.
fn with_world(test: impl FnOnce(&World)) {
    let inner = MemStorage::new();
    let storage = Counting::new(&inner);
    let f = Fakes::default();
    let connector = Tripwire {
        inner: &f.connector,
        storage: &storage,
        after: Cell::new(After::Nothing),
    };
    let env = Env {
        storage: &storage,
        connector: &connector,
        authz: &f.authz,
        policies: &f.policies,
        tokens: &f.tokens,
        keyring: &f.keyring,
        namespaces: &f.namespaces,
    };
    let w = World {
        env,
        inner: &inner,
        storage: &storage,
        connector: &connector,
        mem: &f.connector,
    };
    w.ok("POST", "sys/mounts/secret", json!({"type": "kv-v2"}));
    w.ok("POST", "sys/sync/destinations/in-mem/d1", json!({}));
    w.ok("POST", "secret/data/app", json!({"data": {"v": "1"}}));
    test(&w);
}

struct World<'a> {
    env: Env<'a>,
    inner: &'a MemStorage,
    storage: &'a Counting<'a>,
    connector: &'a Tripwire<'a>,
    mem: &'a MemConnector,
}

impl World<'_> {
    fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        crate::testing::call(&self.env, method, path, &body)
    }

    fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, body) = self.call(method, path, body);
        assert!(
            status == 200 || status == 204,
            "{method} {path}: {status} {body}"
        );
        body
    }

    fn target() -> Value {
        json!({"mount": "secret", "secret_name": "app"})
    }

    /// The statuses a `set` or `remove` answered with.
    fn statuses(body: &Value) -> Vec<Value> {
        body["data"]["associated_secrets"]
            .as_object()
            .map(|m| m.values().map(|a| a["sync_status"].clone()).collect())
            .unwrap_or_default()
    }

    fn record(&self) -> Option<Association> {
        let accessor = crate::testing::accessor(self.inner, "secret/");
        Association::load(&mut Tx::new(self.inner), "in-mem", "d1", &accessor, "app").unwrap()
    }

    fn objects(&self) -> Vec<String> {
        self.mem.objects("in-mem", "d1").into_keys().collect()
    }

    fn calls(&self) -> usize {
        *self.mem.calls.borrow()
    }

    fn entries(&self) -> u64 {
        outbox::count(&mut Tx::new(self.inner)).unwrap()
    }

    /// The worker's run of everything due.
    fn drain(&self) -> worker::RunReport {
        let settings = Settings {
            coalesce_window_ms: 0,
            ..Settings::default()
        };
        worker::run(&self.env, 0, 1, 100, &settings)
    }
}

/// The storage fails right after `set`'s push (the process dies before the
/// outcome commit): the intent was committed, so once the claim falls due the
/// worker records the object — no external object is left that no record
/// knows. Before write-ahead the push came before the request's only commit,
/// and nothing recorded the object.
#[test]
fn a_set_that_dies_after_its_push_is_finished_by_the_worker() {
    with_world(|w| {
        w.connector.after.set(After::Crash);
        let (status, body) = w.call("POST", SET, World::target());
        // The outcome could not be committed: the answer is the intent's.
        assert_eq!(status, 200, "{body}");
        assert_eq!(World::statuses(&body), vec![json!("PENDING")]);
        assert_eq!(w.objects().len(), 1, "the provider holds the object");

        // Restart. The claim is not due yet (the request could still be
        // running it): the worker leaves it alone.
        w.storage.down.set(false);
        assert_eq!(w.drain().processed, 0);
        make_all_due(w.inner);
        let report = w.drain();
        assert_eq!(
            (report.processed, report.failed),
            (1, 1),
            "the attempt that died counts"
        );

        let record = w.record().expect("the association is recorded");
        let rows: Vec<_> = record.rows.values().collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].sync_status, SyncStatus::Synced);
        assert_eq!(w.objects(), vec![rows[0].external_name.clone()]);
        assert_eq!(w.entries(), 0);
    });
}

/// The storage fails right after `remove`'s delete: the worker finishes the
/// removal (the association goes), instead of a row that claims an object the
/// provider no longer has.
#[test]
fn a_remove_that_dies_after_its_delete_is_finished_by_the_worker() {
    with_world(|w| {
        let body = w.ok("POST", SET, World::target());
        assert_eq!(World::statuses(&body), vec![json!("SYNCED")]);
        assert_eq!(w.objects().len(), 1);

        w.connector.after.set(After::Crash);
        let (status, body) = w.call("POST", REMOVE, World::target());
        assert_eq!(status, 200, "{body}");
        assert_eq!(World::statuses(&body), vec![json!("PENDING")]);
        assert!(w.objects().is_empty(), "the provider deleted the object");

        w.storage.down.set(false);
        make_all_due(w.inner);
        assert_eq!(w.drain().processed, 1);
        assert!(w.record().is_none(), "the association is gone");
        assert_eq!(w.entries(), 0);
        let read = w.ok(
            "GET",
            "sys/sync/destinations/in-mem/d1/associations",
            Value::Null,
        );
        assert_eq!(read["data"]["associated_secrets"], json!({}));
    });
}

/// The outcome commit of `set` conflicts: the run's facts are merged onto the
/// state as it is now; the push is not made again and the request does not
/// run again (three commits: the intent, the outcome that conflicted, the
/// merge). Before write-ahead the conflict ran the whole request again.
#[test]
fn a_set_whose_outcome_commit_conflicts_pushes_once_and_runs_once() {
    with_world(|w| {
        w.connector.after.set(After::Conflict);
        let (calls, commits) = (w.calls(), w.storage.commits.get());
        let body = w.ok("POST", SET, World::target());
        assert_eq!(World::statuses(&body), vec![json!("SYNCED")]);
        assert_eq!(w.calls(), calls + 1, "pushed once");
        assert_eq!(w.storage.commits.get(), commits + 3);
        assert_eq!(w.objects().len(), 1);
        assert_eq!(w.entries(), 0);
    });
}

/// The same for `remove`, whose run drops the association: the drop is
/// merged, the delete is not made again.
#[test]
fn a_remove_whose_outcome_commit_conflicts_deletes_once_and_runs_once() {
    with_world(|w| {
        w.ok("POST", SET, World::target());
        w.connector.after.set(After::Conflict);
        let (calls, commits) = (w.calls(), w.storage.commits.get());
        let body = w.ok("POST", REMOVE, World::target());
        assert_eq!(World::statuses(&body), Vec::<Value>::new());
        assert_eq!(w.calls(), calls + 1, "deleted once");
        assert_eq!(w.storage.commits.get(), commits + 3);
        assert!(w.objects().is_empty());
        assert!(w.record().is_none());
        assert_eq!(w.entries(), 0);
    });
}

/// A conflicting intent commit runs the request again, before any provider
/// call: one push in all.
#[test]
fn a_set_whose_intent_commit_conflicts_runs_again_before_any_push() {
    with_world(|w| {
        let calls = w.calls();
        w.storage.conflicts.set(2);
        let body = w.ok("POST", SET, World::target());
        assert_eq!(World::statuses(&body), vec![json!("SYNCED")]);
        assert_eq!(w.calls(), calls + 1, "pushed once");
        assert_eq!(w.objects().len(), 1);
    });
}
