//! Routes a logical request to the backend that serves its path (sync, system,
//! token, or the secrets engine mounted there) through the path tables
//! ([`crate::framework::Path`]), and runs it as one storage transaction (run
//! again, a bounded number of times, when a concurrent commit conflicts).
//! Before the transaction commits, the changes the request recorded in it
//! become their sync work in the same commit ([`sync::changes::settle`]);
//! what that made due leaves with the response as its effects. Provider
//! calls a request claimed in its commit run after it, once
//! ([`sync::worker::inline`]).

use crate::api::{self, LogicalRequest, Operation, Outcome, Reply, Request};
use crate::effects::Effects;
use crate::env::Env;
use crate::error::{ApiError, ApiResult};
use crate::framework::{self, Backend, Call, Fields, Path, Schema};
use crate::storage::Tx;
use crate::sys::mounts::{MountEntry, MountTable};
use crate::{auth, kv, sync, sys};

/// How often a request is run at most when its commit conflicts.
const CONFLICT_RETRIES: usize = 8;
/// The pause before the second run after a conflict; it doubles per run, up
/// to [`CONFLICT_BACKOFF_CAP_US`], half of it fixed and half drawn at random
/// (requests that conflicted with each other do not meet again in step). At
/// most 48 ms in all, and the request holds nothing meanwhile: its
/// transaction is dropped before the pause.
const CONFLICT_BACKOFF_US: u64 = 500;
const CONFLICT_BACKOFF_CAP_US: u64 = 16_000;

/// The pause before run `attempt` (1: the first run again) after a conflict.
fn conflict_backoff(attempt: u32, jitter: u64) -> std::time::Duration {
    let growth = 1u64
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u64::MAX);
    let backoff = CONFLICT_BACKOFF_US
        .saturating_mul(growth)
        .min(CONFLICT_BACKOFF_CAP_US);
    std::time::Duration::from_micros(crate::time::equal_jitter(backoff, jitter))
}

pub fn handle(env: &Env, req: Request) -> Outcome {
    let logical = match api::to_logical(req) {
        Ok(l) => l,
        Err(e) => return Outcome::only(api::render_error(&e)),
    };
    let mut last = ApiError::Conflict;
    for attempt in 0..CONFLICT_RETRIES {
        if attempt > 0 {
            // Another commit won: let it (and its neighbours) finish before
            // reading again (the clock of the component is the host's,
            // through WASI).
            let jitter = u64::from_le_bytes(api::random_bytes::<8>());
            std::thread::sleep(conflict_backoff(
                u32::try_from(attempt).unwrap_or(u32::MAX),
                jitter,
            ));
        }
        let mut tx = Tx::new(env.storage);
        let outcome = route(&mut tx, env, &logical).and_then(|(reply, mount_type)| {
            let settled = sync::changes::settle(&mut tx)?;
            tx.commit()?;
            Ok((
                reply.with_warnings(settled.warnings),
                mount_type,
                settled.sync_due,
            ))
        });
        match outcome {
            Ok((mut reply, mount_type, mut sync_due)) => {
                // Provider calls claimed in the commit run now, once: nothing
                // after the commit runs the request again.
                if let Some(run) = reply.inline.take() {
                    let (answer, remains) = sync::associations::finish_inline(env, &run, reply);
                    reply = answer;
                    if remains {
                        sync_due = sync_due.and(format!("{}/{}", run.id.kind, run.id.name));
                    }
                }
                return Outcome {
                    response: api::render(reply, &logical.request_id, mount_type),
                    effects: Effects { sync_due },
                };
            }
            Err(ApiError::Conflict) => last = ApiError::Conflict,
            Err(e) => {
                last = e;
                break;
            }
        }
    }
    if matches!(last, ApiError::Internal(_) | ApiError::Unavailable(_)) {
        // Goes to the host's log through wasi:cli/stderr; never includes request data.
        eprintln!("request {} failed: {last}", logical.request_id);
    }
    Outcome::only(api::render_error(&last))
}

/// Every backend: their path tables are the one list of what the engine
/// serves (the router, the ACL step and API documents read them). Those at
/// fixed roots come first, the most specific root first; the secrets engine
/// serves any other path that a mount of it covers, relative to the mount.
pub const BACKENDS: &[&Backend] = &[
    &sync::BACKEND,
    &sync::activation::BACKEND,
    &sys::BACKEND,
    &auth::token::BACKEND,
    &kv::BACKEND,
];

/// Runs a request against a transaction: returns the reply and the `mount_type`
/// of the envelope. Nothing is committed here.
pub fn route(tx: &mut Tx, env: &Env, req: &LogicalRequest) -> ApiResult<(Reply, &'static str)> {
    let table;
    let (backend, rel, mount) = match BACKENDS
        .iter()
        .find_map(|b| Some((*b, b.relative(&req.path)?)))
    {
        Some((backend, rel)) => (backend, rel, None),
        None => {
            table = MountTable::load(tx)?;
            match table.find(&req.path) {
                Some((mount, rel)) if mount.is_kv_v2() => (&kv::BACKEND, rel, Some(mount)),
                _ => {
                    authorize(env, req, req.operation, None)?;
                    return Err(ApiError::NoHandler(req.path.clone()));
                }
            }
        }
    };
    let reply = serve(tx, env, req, backend, rel, mount)?;
    Ok((reply, backend.mount_type))
}

/// Serves a request with the backend that owns its path (`rel`: relative to
/// the backend's root or the mount). The steps: find the path; a known path
/// without the request's operation is a 405; a POST/PUT becomes `Create` or
/// `Update` through the path's existence check; [`authorize`] (every request
/// passes it, whatever its answer, before anything else happens); the
/// backend's guard; the fields are parsed; the handler runs.
fn serve(
    tx: &mut Tx,
    env: &Env,
    req: &LogicalRequest,
    backend: &Backend,
    rel: &str,
    mount: Option<&MountEntry>,
) -> ApiResult<Reply> {
    let Some((path, params)) = backend.find(rel, req.operation) else {
        authorize(env, req, req.operation, None)?;
        return (backend.fallback)(rel, req.operation);
    };
    if !path.serves(req.operation) {
        authorize(env, req, req.operation, Some(path))?;
        return Err(ApiError::UnsupportedOperation);
    }
    let mut call = Call {
        env: *env,
        req,
        operation: req.operation,
        params,
        fields: Fields::default(),
        mount,
    };
    if let (Operation::Update, Some(exists)) = (call.operation, path.existence_check)
        && !exists(tx, &call)?
    {
        call.operation = Operation::Create;
    }
    let op = path
        .op(call.operation)
        .ok_or(ApiError::UnsupportedOperation)?;
    let authorized = authorize(env, req, call.operation, Some(path))?;
    if let Some(guard) = backend.guard {
        guard(tx)?;
    }
    let schema = path.schema_of(op);
    if !matches!(schema, Schema::None) {
        let tables = schema.tables(&call.params)?;
        if !req.data.is_empty() {
            call.fields = framework::parse_tables(&tables, &req.data, call.params.names())?;
        }
    }
    // Vault's framework warns of the fields the endpoint does not declare.
    Ok(op
        .run(&authorized, tx, &call)?
        .with_warning(call.fields.unknown_warning()))
}

/// Proof that a request went through [`authorize`]: a handler runs only with
/// one ([`crate::framework::Op::run`]), and only [`authorize`] makes one.
pub struct Authorized(());

/// The one authorization step, for every request before any handler runs:
/// `operation` is the one the request needs (after the existence check),
/// `req.path` the full request path (LIST paths end in `/`), `path` the
/// matched endpoint with its flags (`None`: no path matched, and the request
/// ends in a 404 or a fallback reply: it is checked as any other, so a
/// caller learns nothing of paths it may not use).
///
/// The decision is the host's (`authz.authorize`, on the caller's policies):
/// the operation's capability on the request path, and `sudo` as well on a
/// root-protected path. Paths served without a token are not asked about;
/// paths authorized by access under a mount are decided by their handler.
pub fn authorize(
    env: &Env,
    req: &LogicalRequest,
    operation: Operation,
    path: Option<&Path>,
) -> ApiResult<Authorized> {
    if path.is_some_and(|p| p.unauthenticated || p.access_by_mount) {
        return Ok(Authorized(()));
    }
    let sudo = path.is_some_and(|p| p.sudo);
    if env.authz.authorize(operation, &req.path, sudo) {
        Ok(Authorized(()))
    } else {
        Err(ApiError::PermissionDenied)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conflict_backoff_grows_to_its_cap_with_jitter() {
        use std::time::Duration;
        assert_eq!(super::conflict_backoff(1, 0), Duration::from_micros(250));
        assert_eq!(
            super::conflict_backoff(1, u64::MAX - 5),
            Duration::from_micros(250 + (u64::MAX - 5) % 251)
        );
        assert_eq!(super::conflict_backoff(2, 0), Duration::from_micros(500));
        assert_eq!(
            super::conflict_backoff(30, 8_000),
            Duration::from_micros(16_000)
        );
        let most: Duration = (1..super::CONFLICT_RETRIES)
            .map(|a| super::conflict_backoff(u32::try_from(a).unwrap(), 8_000))
            .sum();
        assert!(most <= Duration::from_millis(48), "{most:?}");
    }

    use serde_json::{Value, json};

    use super::*;
    use crate::api::Operation::{Create, Delete, List, Patch, Read, Update};
    use crate::env::Fakes;
    use crate::framework::path::{MAX_PARAMS, Segment, segments};
    use crate::framework::{Check, FieldSpec, FieldType, op};

    /// Every field table an operation of `path` may parse against.
    fn tables_of(path: &Path, op: &crate::framework::Op) -> Vec<&'static [FieldSpec]> {
        match path.schema_of(op) {
            Schema::None => Vec::new(),
            Schema::Fields(fields) => vec![fields],
            Schema::ByParam { param, tables } => {
                let spec = path.params.iter().find(|p| p.name == param);
                let Some(FieldSpec {
                    check: Check::OneOf(values),
                    ..
                }) = spec
                else {
                    panic!(
                        "{}: {param} is not a parameter with its values",
                        path.pattern
                    );
                };
                values
                    .iter()
                    .flat_map(|v| tables(v).unwrap())
                    .filter(|t| !t.is_empty())
                    .collect()
            }
        }
    }

    #[test]
    fn every_table_is_well_formed() {
        let mut count = Vec::new();
        let mut ids: Vec<(&str, &str)> = Vec::new();
        for backend in BACKENDS {
            assert!(backend.root.is_empty() || backend.root.ends_with('/'));
            let mut patterns = Vec::new();
            for path in backend.paths {
                let p = path.pattern;
                assert!(!path.description.is_empty(), "{p}: no description");
                assert!(!patterns.contains(&p), "{p}: declared twice");
                patterns.push(p);
                // The pattern parses: no empty segment (but the last of a
                // folder that is only listed, `accessors/`), captures named
                // once, only literals after a rest capture.
                let segs: Vec<Segment> = segments(p).collect();
                let captures: Vec<&str> = segs.iter().filter_map(|s| s.param()).collect();
                let listed_folder =
                    p.ends_with('/') && path.operations.iter().all(|o| o.operation == List);
                if !p.is_empty() {
                    let inner = segs.len() - usize::from(listed_folder);
                    assert!(
                        segs[..inner].iter().all(|s| *s != Segment::Literal("")),
                        "{p}"
                    );
                }
                for (i, s) in segs.iter().enumerate() {
                    if let Some(name) = s.param() {
                        assert!(
                            !name.is_empty()
                                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                            "{p}: bad parameter name {name:?}"
                        );
                    }
                    if let Segment::Literal(l) = s {
                        assert!(!l.contains(['{', '}']), "{p}: unbalanced braces");
                    }
                    if matches!(s, Segment::Rest(_) | Segment::Leaf(_)) {
                        assert!(
                            segs[i + 1..]
                                .iter()
                                .all(|s| matches!(s, Segment::Literal(_))),
                            "{p}: only literals may follow a rest capture"
                        );
                    }
                }
                assert!(captures.len() <= MAX_PARAMS, "{p}");
                let mut unique = captures.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), captures.len(), "{p}: a parameter twice");
                // Parameters are declared, described, in pattern order.
                let declared: Vec<&str> = path.params.iter().map(|f| f.name).collect();
                assert_eq!(declared, captures, "{p}: parameters");
                for param in path.params {
                    assert!(!param.description.is_empty(), "{p}: {}", param.name);
                    assert_eq!(param.ty, FieldType::String, "{p}: {}", param.name);
                }
                // Operations: some, each once, summarised.
                assert!(!path.operations.is_empty(), "{p}");
                for (i, o) in path.operations.iter().enumerate() {
                    assert!(!o.summary.is_empty(), "{p}: {:?}", o.operation);
                    // Operation ids: Vault's spelling, one per operation but
                    // the POST (create and update).
                    assert!(
                        !o.id.is_empty()
                            && o.id.chars().all(|c| c.is_ascii_lowercase()
                                || c.is_ascii_digit()
                                || "-_{}".contains(c)),
                        "{p}: operation id {:?}",
                        o.id
                    );
                    let post = |x: &crate::framework::Op| x.operation.is_write();
                    for (other, q) in &ids {
                        assert!(
                            *other != o.id || (*q == p && post(o)),
                            "{p}: operation id {} also on {q}",
                            o.id
                        );
                    }
                    ids.push((o.id, p));
                    assert!(
                        path.operations[..i]
                            .iter()
                            .all(|x| x.operation != o.operation),
                        "{p}: {:?} twice",
                        o.operation
                    );
                    // Every field is described, once per operation, and
                    // none is named like a parameter (the path's value wins).
                    let mut names = Vec::new();
                    for table in tables_of(path, o) {
                        for f in table {
                            assert!(
                                !f.description.is_empty(),
                                "{p}: field {} has no description",
                                f.name
                            );
                            assert!(
                                !declared.contains(&f.name),
                                "{p}: field {} is a parameter",
                                f.name
                            );
                            names.push(f.name);
                        }
                    }
                    if !matches!(path.schema_of(o), Schema::ByParam { .. }) {
                        let n = names.len();
                        names.sort();
                        names.dedup();
                        assert_eq!(names.len(), n, "{p}: a field twice");
                    }
                }
                // An existence check exactly where both create and update are served.
                let creates = path.op(Create).is_some();
                let updates = path.op(Update).is_some();
                assert_eq!(
                    path.existence_check.is_some(),
                    creates && updates,
                    "{p}: existence check"
                );
                assert!(!creates || updates, "{p}: create without update");
            }
            count.push((backend.root, backend.paths.len()));
        }
        assert_eq!(
            count,
            vec![
                ("sys/sync/", 13),
                ("sys/activation-flags/", 2),
                ("sys/", 24),
                ("auth/token/", 17),
                ("", 7)
            ]
        );
    }

    /// Every connection-details table of every destination type is described.
    #[test]
    fn every_destination_field_is_described() {
        for t in crate::sync::destinations::TYPES {
            for table in t.request_fields() {
                for f in table {
                    assert!(!f.description.is_empty(), "{}: {}", t.kind, f.name);
                }
            }
        }
    }

    fn echo(_tx: &mut Tx, call: &Call) -> ApiResult<Reply> {
        Ok(Reply::data(json!({
            "operation": call.operation.as_str(),
            "name": call.param("name"),
            "n": call.fields.int("n"),
        })))
    }

    fn exists(tx: &mut Tx, call: &Call) -> ApiResult<bool> {
        Ok(tx.get(&format!("things/{}", call.param("name")))?.is_some())
    }

    fn closed(tx: &mut Tx) -> ApiResult<()> {
        match tx.get("closed")? {
            Some(_) => Err(ApiError::bad_request("closed")),
            None => Ok(()),
        }
    }

    const N: &[FieldSpec] = &[FieldSpec::new("n", FieldType::Int).describe("A number.")];

    static TEST: Backend = Backend::new(
        "test/",
        "test",
        &[
            Path::new(
                "things/{name}",
                "A thing.",
                &[
                    op(Read, "test-read", "Read.", echo).no_fields(),
                    op(Create, "test-write", "Create.", echo),
                    op(Update, "test-write", "Update.", echo),
                    op(Delete, "test-delete", "Delete.", echo),
                ],
            )
            .params(&[FieldSpec::string("name").describe("Its name.")])
            .fields(N)
            .existence_check(exists),
            Path::new(
                "plain",
                "No existence check.",
                &[op(Update, "test-plain", "Update.", echo)],
            ),
            Path::new(
                "guarded",
                "Root-protected.",
                &[op(Update, "test-guarded", "Update.", echo)],
            )
            .sudo(),
            Path::new(
                "open",
                "Served without a token.",
                &[op(Read, "test-open", "Read.", echo)],
            )
            .unauthenticated(),
        ],
    )
    .guard(closed);

    fn call(fakes: &Fakes, operation: Operation, rel: &str, data: Value) -> ApiResult<Value> {
        call_with(&fakes.env(), operation, rel, data)
    }

    fn call_with(env: &Env, operation: Operation, rel: &str, data: Value) -> ApiResult<Value> {
        let req = LogicalRequest::new(operation, &format!("test/{rel}"), data);
        let mut tx = Tx::new(env.storage);
        let reply = serve(&mut tx, env, &req, &TEST, rel, None)?;
        tx.commit()?;
        Ok(json!({"data": reply.data, "warnings": reply.warnings}))
    }

    #[test]
    fn writes_are_create_or_update_through_the_existence_check() {
        let fakes = Fakes::default();
        let out = call(&fakes, Update, "things/a", json!({"n": "5"})).unwrap();
        assert_eq!(
            out["data"],
            json!({"operation": "create", "name": "a", "n": 5})
        );
        let mut tx = Tx::new(&fakes.storage);
        tx.put("things/a", b"1".to_vec());
        tx.commit().unwrap();
        let out = call(&fakes, Update, "things/a", json!({})).unwrap();
        assert_eq!(out["data"]["operation"], "update");
        // Without an existence check a write is an update.
        let out = call(&fakes, Update, "plain", json!({})).unwrap();
        assert_eq!(out["data"]["operation"], "update");
    }

    #[test]
    fn the_pipeline_answers_like_vault() {
        let fakes = Fakes::default();
        // A known path without the operation: 405; no path: the fallback.
        assert_eq!(
            call(&fakes, Patch, "things/a", json!({})).unwrap_err(),
            ApiError::UnsupportedOperation
        );
        assert_eq!(
            call(&fakes, List, "things/a/", json!({})).unwrap_err(),
            ApiError::UnsupportedPath
        );
        assert_eq!(
            call(&fakes, Read, "things", json!({})).unwrap_err(),
            ApiError::UnsupportedPath
        );
        // Fields are coerced; unknown ones are warned of; a field named like
        // a parameter is neither (the path wins).
        let out = call(&fakes, Update, "things/a", json!({"n": "x"})).unwrap_err();
        assert_eq!(out.status(), 400);
        let out = call(&fakes, Update, "things/a", json!({"name": "b", "m": 1})).unwrap();
        assert_eq!(out["data"]["name"], "a");
        assert_eq!(
            out["warnings"],
            json!(["Endpoint ignored these unrecognized parameters: [m]"])
        );
        // An operation that reads no field does not parse them.
        let out = call(&fakes, Read, "things/a", json!({"n": "x"})).unwrap();
        assert_eq!(out["data"]["n"], Value::Null);
        assert_eq!(out["warnings"], json!([]));
        // The guard runs before any handler, once a path matched.
        let mut tx = Tx::new(&fakes.storage);
        tx.put("closed", b"1".to_vec());
        tx.commit().unwrap();
        assert_eq!(
            call(&fakes, Read, "things/a", json!({}))
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            call(&fakes, Read, "nothing", json!({})).unwrap_err(),
            ApiError::UnsupportedPath
        );
    }

    /// Records what the authorization step asks, and answers `allow`.
    struct Asked {
        allow: bool,
        asked: std::cell::RefCell<Vec<(Operation, String, bool)>>,
    }

    impl Asked {
        fn new(allow: bool) -> Self {
            Asked {
                allow,
                asked: Default::default(),
            }
        }

        fn take(&self) -> Vec<(Operation, String, bool)> {
            self.asked.take()
        }
    }

    impl crate::authz::Authz for Asked {
        fn authorize(&self, operation: Operation, path: &str, sudo: bool) -> bool {
            self.asked
                .borrow_mut()
                .push((operation, path.to_string(), sudo));
            self.allow
        }

        fn allowed(&self, _: &str, _: &str) -> bool {
            self.allow
        }

        fn can_reach(&self, _: &str) -> bool {
            self.allow
        }
    }

    fn asked(op: Operation, path: &str, sudo: bool) -> Vec<(Operation, String, bool)> {
        vec![(op, path.to_string(), sudo)]
    }

    #[test]
    fn every_request_is_authorized_with_the_operation_after_the_existence_check() {
        let fakes = Fakes::default();
        let authz = Asked::new(true);
        let env = Env {
            authz: &authz,
            ..fakes.env()
        };
        call_with(&env, Update, "things/a", json!({})).unwrap();
        assert_eq!(authz.take(), asked(Create, "test/things/a", false));
        let mut tx = Tx::new(&fakes.storage);
        tx.put("things/a", b"1".to_vec());
        tx.commit().unwrap();
        call_with(&env, Update, "things/a", json!({})).unwrap();
        assert_eq!(authz.take(), asked(Update, "test/things/a", false));
        call_with(&env, Update, "plain", json!({})).unwrap();
        assert_eq!(authz.take(), asked(Update, "test/plain", false));
        // Root-protected paths need sudo; unauthenticated ones ask nothing.
        call_with(&env, Update, "guarded", json!({})).unwrap();
        assert_eq!(authz.take(), asked(Update, "test/guarded", true));
        call_with(&env, Read, "open", json!({})).unwrap();
        assert_eq!(authz.take(), vec![]);
        // Requests that end in a 405 or a 404 are asked about too.
        call_with(&env, Patch, "things/a", json!({})).unwrap_err();
        assert_eq!(authz.take(), asked(Patch, "test/things/a", false));
        call_with(&env, Read, "nothing", json!({})).unwrap_err();
        assert_eq!(authz.take(), asked(Read, "test/nothing", false));
    }

    #[test]
    fn a_refused_request_runs_nothing() {
        let fakes = Fakes::default();
        let authz = Asked::new(false);
        let env = Env {
            authz: &authz,
            ..fakes.env()
        };
        // Refused before the guard, the field parsing and the handler.
        let mut tx = Tx::new(&fakes.storage);
        tx.put("closed", b"1".to_vec());
        tx.commit().unwrap();
        for (op, rel, data) in [
            (Update, "things/a", json!({"n": "not a number"})),
            (Read, "things/a", json!({})),
            (Patch, "things/a", json!({})),
            (Read, "nothing", json!({})),
        ] {
            assert_eq!(
                call_with(&env, op, rel, data).unwrap_err(),
                ApiError::PermissionDenied,
                "{op:?} {rel}"
            );
        }
        assert_eq!(
            call_with(&env, Read, "open", json!({}))
                .unwrap_err()
                .status(),
            400,
            "the guard of the open path"
        );
    }

    #[test]
    fn list_paths_and_unknown_mounts_are_authorized_on_the_full_path() {
        let fakes = Fakes::default();
        let authz = Asked::new(true);
        let env = Env {
            authz: &authz,
            ..fakes.env()
        };
        let send = |method: &str, path: &str| {
            crate::testing::call(&env, method, path, &json!({"type": "kv-v2"})).0
        };
        assert_eq!(send("POST", "sys/mounts/secret"), 204);
        authz.take();
        assert_eq!(send("LIST", "secret/metadata"), 404);
        assert_eq!(authz.take(), asked(List, "secret/metadata/", false));
        assert_eq!(send("GET", "secret/metadata/a?list=true"), 404);
        assert_eq!(authz.take(), asked(List, "secret/metadata/a/", false));
        assert_eq!(send("GET", "nomount/x"), 404);
        assert_eq!(authz.take(), asked(Read, "nomount/x", false));
        assert_eq!(send("GET", "sys/health"), 200);
        assert_eq!(authz.take(), vec![]);
        // Decided by access under the mount, in the handler.
        assert_eq!(send("GET", "sys/internal/ui/mounts/secret/a"), 200);
        assert_eq!(authz.take(), vec![]);
    }

    /// Vault's root-protected paths that kvsync serves: each one is flagged
    /// `sudo`, and no other path is.
    #[test]
    fn root_protected_paths_are_flagged_sudo() {
        // `revoke-orphan` checks root or sudo in its handler, as Vault does.
        const SUDO: &[&str] = &["auth/token/accessors", "sys/rotate"];
        for backend in BACKENDS {
            for path in backend.paths {
                let full = format!("{}{}", backend.root, path.pattern);
                let full = full.trim_end_matches('/');
                assert_eq!(path.sudo, SUDO.contains(&full), "{full}");
            }
        }
    }

    #[test]
    fn ui_mounts_answer_for_a_mount_the_caller_can_reach() {
        let fakes = Fakes::default();
        let env = fakes.env();
        let get = |path: &str| crate::testing::call(&env, "GET", path, &Value::Null);
        crate::testing::call(&env, "POST", "sys/mounts/secret", &json!({"type": "kv-v2"}));
        let (status, body) = get("sys/internal/ui/mounts/secret/a/b");
        assert_eq!(status, 200);
        assert_eq!(body["data"]["path"], "secret/");
        assert_eq!(body["data"]["options"], json!({"version": "2"}));
        let (status, body) = get("sys/internal/ui/mounts/sys");
        assert_eq!(
            (status, body["data"]["type"].clone()),
            (200, json!("system"))
        );
        // Unmounted, or out of reach: 403, never 404.
        assert_eq!(get("sys/internal/ui/mounts/nope/a").0, 403);
        fakes.authz.deny("reach", "secret/");
        let (status, body) = get("sys/internal/ui/mounts/secret/a");
        assert_eq!(
            (status, body),
            (403, json!({"errors": ["permission denied"]}))
        );
    }
}
