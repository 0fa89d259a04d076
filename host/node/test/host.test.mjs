// Unit tests of the Node.js host's own code: `node --test host/node/test/`
// (tests/run.sh runs them). The engine itself is compared with the Rust host by
// the parity test (tests/tests/parity.rs).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Connectors } from '../connector/index.mjs';
import { InMemory } from '../connector/in-mem.mjs';
import { splitmix64, DeterministicWasi } from '../deterministic.mjs';
import { Engine, TrapError } from '../engine.mjs';
import { MemStorage } from '../storage.mjs';

const put = (key, value = 'v') => ({ tag: 'put', val: { key, value: new TextEncoder().encode(value) } });
const del = (key) => ({ tag: 'delete', val: key });

function listAll(s, prefix, delimiter, limit) {
  const out = [];
  let after;
  for (let i = 0; i < 1000; i++) {
    const page = s.list(prefix, after, delimiter, limit);
    assert.ok(page.keys.length <= limit || limit === 0);
    out.push(...page.keys);
    if (page.next === undefined) return out;
    after = page.next;
  }
  throw new Error('listing did not end');
}

test('commit versions are one global counter, conditions are all or nothing', () => {
  const s = new MemStorage();
  assert.equal(s.commit([], [put('a')]), 1n);
  assert.equal(s.commit([], []), 2n); // a commit without ops still takes a number
  assert.equal(s.get('a').version, 1n);
  assert.throws(() => s.commit([{ key: 'a', version: 2n }], [put('b')]), { tag: 'conflict' });
  assert.throws(() => s.commit([{ key: 'a' }], [put('b')]), { tag: 'conflict' }); // must be absent
  assert.equal(s.get('b'), undefined);
  assert.equal(s.commit([{ key: 'a', version: 1n }, { key: 'b' }], [put('b'), del('a'), del('zz')]), 3n);
  assert.equal(s.get('a'), undefined);
  assert.equal(s.get('b').version, 3n);
  assert.throws(() => s.get(''), { tag: 'invalid', val: 'key must not be empty' });
  assert.throws(() => s.commit([], [put('x\0y')]), { tag: 'invalid' });
});

test('list: byte order, paging, limit 0 and the cap, delimiter folding', () => {
  const s = new MemStorage();
  // U+FF5E sorts before U+1F600 in UTF-8 bytes, after it in UTF-16 code units.
  const keys = ['x/a', 'x/b/c', 'x/b/d', 'x/e', 'x/\u{1F600}', 'x/\uFF5E', 'y/z'];
  s.commit([], keys.map((k) => put(k)));
  assert.deepEqual(listAll(s, 'x/', undefined, 0), ['a', 'b/c', 'b/d', 'e', '\uFF5E', '\u{1F600}']);
  for (let limit = 1; limit <= 7; limit++) {
    assert.deepEqual(listAll(s, 'x/', '/', limit), ['a', 'b/', 'e', '\uFF5E', '\u{1F600}'], `limit ${limit}`);
  }
  // `after` inside a folded group skips the group
  assert.deepEqual(s.list('x/', 'b/c', '/', 0).keys, ['e', '\uFF5E', '\u{1F600}']);
  // ...but without a delimiter it is a plain key
  assert.deepEqual(s.list('x/', 'b/c', undefined, 0).keys, ['b/d', 'e', '\uFF5E', '\u{1F600}']);
  assert.deepEqual(s.list('x/', undefined, undefined, 2), { keys: ['a', 'b/c'], next: 'b/c' });
  const many = new MemStorage();
  many.commit([], Array.from({ length: 10_050 }, (_, i) => put(`k${String(i).padStart(5, '0')}`)));
  assert.equal(many.list('', undefined, undefined, 0).keys.length, 1000);
  assert.equal(many.list('', undefined, undefined, 4_000_000_000).keys.length, 10_000);
});

test('the deterministic stream is the Rust host\'s', () => {
  assert.equal(splitmix64(0n), 0xe220a8397b1dcdafn); // also asserted in runtime/deterministic.rs
  const wasi = new DeterministicWasi().override({});
  const first = wasi['wasi:random/random'].getRandomU64();
  assert.equal(first, splitmix64(0n));
  const bytes = new DeterministicWasi().override({})['wasi:random/random'].getRandomBytes(8n);
  assert.equal(Buffer.from(bytes).readBigUInt64LE(), first);
});

test('a trap discards the instance and the next call gets a fresh one', async () => {
  const storage = new MemStorage();
  let failNext = false;
  const failing = {
    imports() {
      const inner = storage.imports();
      return {
        ...inner,
        get: (key) => {
          if (failNext) {
            failNext = false;
            throw new Error('host bug'); // not a storage-error: the guest traps
          }
          return inner.get(key);
        },
      };
    },
  };
  const engine = await Engine.create({ storage: failing, connectors: new Connectors([new InMemory()]) });
  const root = {
    token: 't', accessor: 'a', displayName: 'root', policies: ['root'], path: 'auth/token/root', creationTime: 0n,
  };
  const req = (method, path, body = '') => ({
    method, path, query: '', headers: [['content-type', 'application/json']],
    body: new TextEncoder().encode(body), caller: root,
  });
  assert.equal(engine.handle(req('POST', 'sys/mounts/secret', '{"type":"kv-v2"}')).response.status, 204);
  failNext = true;
  assert.throws(() => engine.handle(req('GET', 'secret/data/x')), TrapError);
  assert.equal(engine.instantiations, 1);
  assert.equal(engine.handle(req('GET', 'sys/mounts/secret')).response.status, 200);
  assert.equal(engine.instantiations, 2);
});

test('the keyring is one in-memory key: term 1 from the start, each rotation a term more', async () => {
  const deterministic = new DeterministicWasi();
  const engine = await Engine.create({
    storage: new MemStorage(), connectors: new Connectors([new InMemory()]), deterministic,
  });
  const root = {
    token: 't', accessor: 'a', displayName: 'root', policies: ['root'], path: 'auth/token/root', creationTime: 0n,
  };
  const req = (method, path) => ({
    method, path, query: '', headers: [], body: new Uint8Array(), caller: root,
  });
  const anonymous = (method, path) => ({ ...req(method, path), caller: undefined });
  const status = () => {
    const { response } = engine.handle(req('GET', 'sys/key-status'));
    assert.equal(response.status, 200);
    return JSON.parse(new TextDecoder().decode(response.body)).data;
  };
  assert.deepEqual(status(), { term: 1, install_time: '2026-01-01T00:00:00Z', encryptions: 0 });
  deterministic.advanceMs(60_000);
  assert.equal(engine.handle(req('POST', 'sys/rotate')).response.status, 204);
  assert.deepEqual(status(), { term: 2, install_time: '2026-01-01T00:01:00Z', encryptions: 0 });
  assert.equal(engine.handle(anonymous('GET', 'sys/key-status')).response.status, 403);
  assert.equal(engine.handle(anonymous('POST', 'sys/rotate')).response.status, 403);
  assert.equal(status().term, 2);
});
