// The `kvsync:engine/connector` import: routes each call to the connector of
// the destination's type, as the Rust host's registry does
// (host/src/connectors/mod.rs): the destination's config is decoded once per
// call (blank counts as `{}`; it must be a JSON object), a type without a
// connector is a client-side error, and a provider call made while answering an
// API request that does not finish within the inline bound is `deferred` (the
// association shows PENDING and the sync worker makes the call again).

import { clientSide, deferred, internal, isSyncError } from './errors.mjs';

/** Rust's `{:?}` of a plain string, close enough for names. */
const quoted = (s) => JSON.stringify(s);

function decode(dest) {
  let config = {};
  if (dest.config.trim() !== '') {
    try {
      config = JSON.parse(dest.config);
    } catch {
      throw internal(`the config of destination ${quoted(dest.name)} is not valid JSON`);
    }
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw internal(`the config of destination ${quoted(dest.name)} is not a JSON object`);
  }
  return { kind: dest.kind, name: dest.name, config };
}

function printable(kind) {
  return [...kind].filter((c) => !/\p{Cc}/u.test(c)).slice(0, 64).join('');
}

export class Connectors {
  #byKind = new Map();

  /** `list`: connector objects with `kind`, `push`, `pushNew`, `delete`, `inspect?`. */
  constructor(list) {
    for (const c of list) this.#byKind.set(c.kind, c);
  }

  #call(dest, inlineBoundMs, fn) {
    const d = decode(dest);
    const connector = this.#byKind.get(d.kind);
    if (connector === undefined) {
      throw clientSide(`destination type ${printable(d.kind)} has no connector in this build yet`);
    }
    try {
      return fn(connector, d, inlineBoundMs);
    } catch (e) {
      if (e instanceof TimeoutError && inlineBoundMs !== undefined) {
        throw deferred(
          `the provider did not answer within ${inlineBoundMs / 1000}s; the sync worker finishes this`,
        );
      }
      if (e instanceof TimeoutError) throw e.syncError;
      if (isSyncError(e)) throw e;
      // A failure of this host, not of the provider: reported, never a trap.
      throw internal(`the ${d.kind} connector failed: ${e?.message ?? String(e)}`);
    }
  }

  /** The import object; `context()` says whether an API request is being answered. */
  imports(context) {
    const bound = () => context().inlineBoundMs;
    return {
      push: (dest, secret) => this.#call(dest, bound(), (c, d, b) => c.push(d, secret, b)),
      pushNew: (dest, secret) => this.#call(dest, bound(), (c, d, b) => c.pushNew(d, secret, b)),
      delete: (dest, name) => this.#call(dest, bound(), (c, d, b) => c.delete(d, name, b)),
      inspect: (dest) => this.#call(dest, undefined, (c, d) => {
        if (typeof c.inspect !== 'function') {
          throw clientSide('this destination type cannot list its objects');
        }
        return c.inspect(d);
      }),
    };
  }
}

/** A provider call that did not finish in time; `syncError` is what a sync run reports. */
export class TimeoutError extends Error {
  constructor(syncError) {
    super('the provider call timed out');
    this.syncError = syncError;
  }
}
