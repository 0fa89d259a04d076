//! The wit-bindgen adapter: converts WIT records to the engine's types and
//! implements [`Storage`] with the host's storage import. Only built for wasm32.

use crate::storage::{Condition, Entry, Op, Page, Storage, StorageError};

wit_bindgen::generate!({
    world: "engine",
    path: "../wit",
});

use exports::kvsync::engine::api::Guest;
use kvsync::engine::storage as host;
use kvsync::engine::types;

struct Component;

impl Guest for Component {
    fn handle(req: types::Request) -> types::Response {
        let caller = req.caller.map(|c| crate::Caller {
            token: c.token,
            accessor: c.accessor,
            display_name: c.display_name,
            policies: c.policies,
            path: c.path,
            creation_time: c.creation_time,
        });
        let req = crate::Request {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
            caller,
        };
        let resp = crate::handle(&HostStorage, req);
        types::Response {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        }
    }
}

export!(Component);

struct HostStorage;

fn from_host(e: host::StorageError) -> StorageError {
    match e {
        host::StorageError::Conflict => StorageError::Conflict,
        host::StorageError::Invalid(m) => StorageError::Invalid(m),
        host::StorageError::Unavailable(m) => StorageError::Unavailable(m),
    }
}

impl Storage for HostStorage {
    fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        host::get(key)
            .map(|e| {
                e.map(|e| Entry {
                    value: e.value,
                    version: e.version,
                })
            })
            .map_err(from_host)
    }

    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        delimiter: Option<char>,
        limit: u32,
    ) -> Result<Page, StorageError> {
        host::list(prefix, after, delimiter, limit)
            .map(|p| Page {
                keys: p.keys,
                next: p.next,
            })
            .map_err(from_host)
    }

    fn commit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<u64, StorageError> {
        let conditions: Vec<host::Condition> = conditions
            .into_iter()
            .map(|c| host::Condition {
                key: c.key,
                version: c.version,
            })
            .collect();
        let ops: Vec<host::Op> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => host::Op::Put(host::Put { key, value }),
                Op::Delete { key } => host::Op::Delete(key),
            })
            .collect();
        host::commit(&conditions, &ops).map_err(from_host)
    }
}
