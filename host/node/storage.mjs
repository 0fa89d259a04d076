// The `kvsync:engine/storage` import: an in-memory ordered map with the Rust
// host's semantics (host/src/storage/mod.rs and tenant.rs):
//
// - one global commit counter: the first commit gets 1 and every successful
//   commit takes the next number, even one without ops; a put gives its key
//   that number as version;
// - `commit` checks every condition first (`version` undefined: the key must
//   be absent) and writes nothing on a conflict;
// - `list` returns keys relative to the prefix, strictly after `after`, in
//   UTF-8 byte order (`Buffer.compare`, not JS string order, which differs
//   above U+FFFF), at most `limit` (0: 1000, capped at 10,000); with a
//   delimiter, keys continuing past it fold into one entry ending in it, and
//   an `after` inside a folded group skips the whole group;
// - guest keys are validated as the tenant view does (not empty, no NUL).
//
// A thrown `{tag, val}` object is how a JS import returns `err` to the guest.

export const DEFAULT_LIST_LIMIT = 1000;
export const MAX_LIST_LIMIT = 10_000;

function storageError(tag, val) {
  return val === undefined ? { tag } : { tag, val };
}

function checkKey(key) {
  if (key.length === 0) throw storageError('invalid', 'key must not be empty');
  if (key.includes('\0')) throw storageError('invalid', 'key must not contain a NUL byte');
}

/** The effective page size of a requested `limit`. */
export function effectiveLimit(limit) {
  if (limit === 0) return DEFAULT_LIST_LIMIT;
  return Math.min(limit, MAX_LIST_LIMIT);
}

/** The part of `rel` up to and including the first `delimiter`, if any. */
function groupOf(rel, delimiter) {
  const i = rel.indexOf(delimiter);
  return i < 0 ? undefined : rel.slice(0, i + delimiter.length);
}

export class MemStorage {
  /** Keys in byte order, each with its UTF-8 bytes for comparison. */
  #keys = [];
  /** key -> { value: Uint8Array, version: bigint } */
  #entries = new Map();
  #commitVersion = 0n;

  /** The index of the first key whose bytes are >= `bytes` (or > when `exclusive`). */
  #seek(bytes, exclusive) {
    let lo = 0;
    let hi = this.#keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = Buffer.compare(this.#keys[mid].bytes, bytes);
      if (c < 0 || (exclusive && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The index of the first key greater than every key starting with `bytes`. */
  #seekPast(bytes) {
    let lo = this.#seek(bytes, false);
    while (lo < this.#keys.length && this.#keys[lo].bytes.subarray(0, bytes.length).equals(bytes)) {
      lo += 1;
    }
    return lo;
  }

  get(key) {
    checkKey(key);
    const e = this.#entries.get(key);
    return e === undefined ? undefined : { value: e.value.slice(), version: e.version };
  }

  list(prefix, after, delimiter, limit) {
    if (prefix.includes('\0') || (after !== undefined && after.includes('\0'))) {
      throw storageError('invalid', 'list prefix must not contain a NUL byte');
    }
    const max = effectiveLimit(limit);
    const prefixBytes = Buffer.from(prefix, 'utf8');
    let i;
    if (after === undefined) {
      i = this.#seek(prefixBytes, false);
    } else {
      const group = delimiter === undefined ? undefined : groupOf(after, delimiter);
      i = group === undefined
        ? this.#seek(Buffer.from(prefix + after, 'utf8'), true)
        : this.#seekPast(Buffer.from(prefix + group, 'utf8'));
    }
    const keys = [];
    let more = false;
    while (i < this.#keys.length) {
      const { key, bytes } = this.#keys[i];
      if (!bytes.subarray(0, prefixBytes.length).equals(prefixBytes)) break;
      if (keys.length === max) {
        more = true;
        break;
      }
      const rel = key.slice(prefix.length);
      const group = delimiter === undefined ? undefined : groupOf(rel, delimiter);
      if (group !== undefined) {
        keys.push(group);
        i = this.#seekPast(Buffer.from(prefix + group, 'utf8'));
        continue;
      }
      keys.push(rel);
      i += 1;
    }
    return more ? { keys, next: keys[keys.length - 1] } : { keys };
  }

  commit(conditions, ops) {
    for (const c of conditions) checkKey(c.key);
    for (const op of ops) checkKey(op.tag === 'put' ? op.val.key : op.val);
    for (const c of conditions) {
      const current = this.#entries.get(c.key)?.version;
      if (current !== c.version) throw storageError('conflict');
    }
    const version = this.#commitVersion + 1n;
    for (const op of ops) {
      if (op.tag === 'put') {
        const { key, value } = op.val;
        if (!this.#entries.has(key)) {
          const bytes = Buffer.from(key, 'utf8');
          this.#keys.splice(this.#seek(bytes, false), 0, { key, bytes });
        }
        this.#entries.set(key, { value: Uint8Array.from(value), version });
      } else {
        const key = op.val;
        if (this.#entries.delete(key)) {
          const bytes = Buffer.from(key, 'utf8');
          this.#keys.splice(this.#seek(bytes, false), 1);
        }
      }
    }
    this.#commitVersion = version;
    return version;
  }

  /** The import object of `kvsync:engine/storage`. */
  imports() {
    return {
      get: (key) => this.get(key),
      list: (prefix, after, delimiter, limit) => this.list(prefix, after, delimiter, limit),
      commit: (conditions, ops) => this.commit(conditions, ops),
    };
  }
}
