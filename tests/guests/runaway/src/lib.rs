//! A test-only engine component that misbehaves on request, so the host's
//! per-call limits can be tested. Never shipped: only `tests/` builds it.
//!
//! Paths: `loop` spins forever, `alloc` allocates without bound, `trap` panics,
//! `storage` reads a key through the host, `count` answers how many calls
//! this instance has served (so tests see which instance answered); anything
//! else answers 200.

#[cfg(target_arch = "wasm32")]
#[expect(unsafe_code, reason = "wit-bindgen's generated glue")]
mod guest {
    wit_bindgen::generate!({ world: "engine", path: "../../../wit" });

    use exports::kvsync::engine::api::Guest;
    use kvsync::engine::types::{Effects, Outcome, Request, Response, SyncDue};

    struct Runaway;

    /// Calls served by this instance (its own linear memory).
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    impl Guest for Runaway {
        fn handle(req: Request) -> Outcome {
            Outcome {
                response: respond(req),
                effects: Effects {
                    sync_due: SyncDue::None,
                },
            }
        }
    }

    fn respond(req: Request) -> Response {
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        match req.path.as_str() {
            "count" => Response {
                status: 200,
                headers: vec![],
                body: n.to_string().into_bytes(),
            },
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            #[expect(clippy::panic, reason = "a trap on request is what this guest is for")]
            "trap" => panic!("deliberate trap"),
            "storage" => {
                let found = kvsync::engine::storage::get("probe").is_ok();
                Response {
                    status: if found { 200 } else { 500 },
                    headers: vec![],
                    body: b"stored".to_vec(),
                }
            }
            _ => Response {
                status: 200,
                headers: vec![],
                body: b"ok".to_vec(),
            },
        }
    }

    impl exports::kvsync::engine::sync::Guest for Runaway {
        fn run(
            _shard: u32,
            _shards: u32,
            _limit: u32,
            _settings: exports::kvsync::engine::sync::Settings,
        ) -> exports::kvsync::engine::sync::RunReport {
            exports::kvsync::engine::sync::RunReport {
                processed: 0,
                failed: 0,
                next_due_ms: None,
            }
        }

        fn reconcile() -> u32 {
            0
        }
    }

    export!(Runaway);
}
