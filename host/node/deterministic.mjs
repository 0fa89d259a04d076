// Deterministic WASI for tests, the same as the Rust runtime's
// (host/src/runtime/deterministic.rs): a wall clock (and monotonic clock) that
// stands still until the test advances it, and random byte streams in which
// byte `i` is byte `i % 8` (little-endian) of `splitmix64(i / 8)`;
// `get-random-u64` reads the next 8 bytes as a little-endian number. Never for
// a server: the random source is predictable by design.

const MASK = (1n << 64n) - 1n;

/** 2026-01-01T00:00:00Z in nanoseconds, the default start of the clock. */
export const DEFAULT_START_NS = 1_767_225_600n * 1_000_000_000n;

export function splitmix64(x) {
  let z = (x + 0x9e3779b97f4a7c15n) & MASK;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return z ^ (z >> 31n);
}

class Stream {
  #position = 0n;

  #byteAt(i) {
    return Number((splitmix64(i / 8n) >> (8n * (i % 8n))) & 0xffn);
  }

  bytes(len) {
    const n = BigInt(len);
    const out = new Uint8Array(Number(n));
    for (let k = 0n; k < n; k++) out[Number(k)] = this.#byteAt(this.#position + k);
    this.#position += n;
    return out;
  }

  u64() {
    let v = 0n;
    for (let k = 0n; k < 8n; k++) v |= BigInt(this.#byteAt(this.#position + k)) << (8n * k);
    this.#position += 8n;
    return v;
  }
}

export class DeterministicWasi {
  #nowNs;
  #secure = new Stream();
  #insecure = new Stream();

  constructor(startNs = DEFAULT_START_NS) {
    this.#nowNs = BigInt(startNs);
  }

  /** Moves both clocks forward by `ms` milliseconds. */
  advanceMs(ms) {
    this.#nowNs += BigInt(ms) * 1_000_000n;
  }

  /** Replaces the clock and random imports of a WASI import object. */
  override(wasi) {
    const now = () => this.#nowNs;
    return {
      ...wasi,
      'wasi:clocks/wall-clock': {
        ...wasi['wasi:clocks/wall-clock'],
        now: () => ({ seconds: now() / 1_000_000_000n, nanoseconds: Number(now() % 1_000_000_000n) }),
        resolution: () => ({ seconds: 0n, nanoseconds: 1 }),
      },
      'wasi:clocks/monotonic-clock': {
        ...wasi['wasi:clocks/monotonic-clock'],
        now,
        resolution: () => 1n,
      },
      'wasi:random/random': {
        getRandomBytes: (len) => this.#secure.bytes(len),
        getRandomU64: () => this.#secure.u64(),
      },
      'wasi:random/insecure': {
        getInsecureRandomBytes: (len) => this.#insecure.bytes(len),
        getInsecureRandomU64: () => this.#insecure.u64(),
      },
      'wasi:random/insecure-seed': {
        insecureSeed: () => [0n, 0n],
      },
    };
  }
}
