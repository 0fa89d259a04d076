// The engine component, transpiled by build.mjs into gen/, instantiated with
// this host's imports: `storage`, `connector`, `authz`, `tokens`, `policies`,
// `keyring` and `namespaces` (each in its own file) and WASI from the *sandboxed* preview2 shim (no preopened directories,
// no environment, no arguments, no network). Tests may replace the clocks and
// the random source (deterministic.mjs).
//
// One instance serves every call, one call at a time (JS is single-threaded and
// every import is synchronous). V8 has no fuel or epoch interruption, so a
// guest cannot be stopped mid-call: a trap (or any failure inside a call)
// discards the instance and the next call instantiates a fresh one; a call
// never runs in an instance a trap left behind.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';

import { authzImports } from './authz.mjs';
import { keyringImports, wallClockNs } from './keyring.mjs';
import { namespaceImports } from './namespaces.mjs';
import { policyImports } from './policies.mjs';
import { tokenImports } from './tokens.mjs';

const GEN = join(dirname(fileURLToPath(import.meta.url)), 'gen');

/** How long a provider call made while answering an API request may take. */
export const DEFAULT_INLINE_BOUND_MS = 3000;

/** The call did not produce a result: the guest trapped (a bug in the engine). */
export class TrapError extends Error {
  constructor(cause) {
    super('the engine trapped', { cause });
  }
}

const modules = new Map();
function coreModule(name) {
  let m = modules.get(name);
  if (m === undefined) {
    m = new WebAssembly.Module(readFileSync(join(GEN, name)));
    modules.set(name, m);
  }
  return m;
}

export function sandboxedWasi() {
  return new WASIShim({
    sandbox: { preopens: {}, env: {}, args: [], enableNetwork: false },
  }).getImportObject();
}

export class Engine {
  #instantiate;
  #imports;
  #instance;
  #context = { caller: undefined, inlineBoundMs: undefined };
  #inlineBoundMs;
  /** Instances created so far (1 + the traps survived). */
  instantiations = 0;

  /**
   * `storage`: a MemStorage (or anything with its `imports()`); `connectors`:
   * a Connectors registry; `root`: the WIT caller of the host's single root
   * token (the `tokens` import's only token; none: no token exists);
   * `deterministic`: a DeterministicWasi for tests.
   */
  static async create({ storage, connectors, root, deterministic, inlineBoundMs = DEFAULT_INLINE_BOUND_MS }) {
    const { instantiate } = await import('./gen/engine.js');
    return new Engine(instantiate, { storage, connectors, root, deterministic, inlineBoundMs });
  }

  constructor(instantiate, { storage, connectors, root, deterministic, inlineBoundMs }) {
    this.#instantiate = instantiate;
    this.#inlineBoundMs = inlineBoundMs;
    const context = () => this.#context;
    let wasi = sandboxedWasi();
    if (deterministic !== undefined) wasi = deterministic.override(wasi);
    this.#imports = {
      ...wasi,
      'kvsync:engine/storage': storage.imports(),
      'kvsync:engine/connector': connectors.imports(context),
      'kvsync:engine/authz': authzImports(context),
      'kvsync:engine/tokens': tokenImports(context, root),
      'kvsync:engine/policies': policyImports(context, root),
      'kvsync:engine/keyring': keyringImports(context, wallClockNs(wasi)),
      'kvsync:engine/namespaces': namespaceImports(context),
    };
    this.#instance = this.#fresh();
  }

  #fresh() {
    this.instantiations += 1;
    return this.#instantiate(coreModule, this.#imports);
  }

  #call(context, fn) {
    if (this.#instance === undefined) this.#instance = this.#fresh();
    this.#context = context;
    try {
      return fn(this.#instance);
    } catch (e) {
      this.#instance = undefined;
      throw new TrapError(e);
    } finally {
      this.#context = { caller: undefined, inlineBoundMs: undefined };
    }
  }

  /** `api.handle`: `req` is the WIT request (`caller` undefined: no token). */
  handle(req) {
    return this.#call({ caller: req.caller, inlineBoundMs: this.#inlineBoundMs }, (i) => i.api.handle(req));
  }

  /** `sync.run` (no caller; provider calls unbounded but for the connector's own timeout). */
  runSync(shard, shards, limit, settings) {
    return this.#call({ caller: undefined, inlineBoundMs: undefined }, (i) => i.sync.run(shard, shards, limit, settings));
  }

  /** `sync.reconcile`: how many associations it queued. */
  reconcile() {
    return this.#call({ caller: undefined, inlineBoundMs: undefined }, (i) => i.sync.reconcile());
  }
}
