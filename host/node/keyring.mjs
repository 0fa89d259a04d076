// The `kvsync:engine/keyring` import (`sys/key-status`, `sys/rotate`) for a
// host without a storage barrier: this host keeps its storage in memory and
// encrypts nothing, so the keyring is a single in-memory key that exists to
// answer the endpoints. `status` reports term 1, installed when the engine was
// created (the host's start), with 0 encryptions; `rotate` adds a term in
// memory, installed at the time of the rotation. Nothing survives a restart.
// The caller is the host's root token, always in the root namespace; a call
// without a caller is refused as the Rust host refuses it.

const forbidden = (m) => ({ tag: 'forbidden', val: m });

/**
 * `context()`: the current call's `{ caller }`; `nowNs()`: the wall clock in
 * nanoseconds since the Unix epoch (the engine's WASI clock, so a
 * deterministic clock applies here too).
 */
export function keyringImports(context, nowNs) {
  let term = 1;
  let installTime = nowNs();

  const status = () => {
    if (context().caller === undefined) throw forbidden('permission denied');
    return { term, installTime, encryptions: 0n };
  };

  return {
    status,
    rotate: () => {
      const current = status();
      term = Math.min(current.term + 1, 0xffff_ffff);
      installTime = nowNs();
      return { term, installTime, encryptions: 0n };
    },
  };
}

/** The wall clock of a WASI import object, in nanoseconds. */
export function wallClockNs(wasi) {
  const clock = wasi['wasi:clocks/wall-clock'];
  return () => {
    const { seconds, nanoseconds } = clock.now();
    return seconds * 1_000_000_000n + BigInt(nanoseconds);
  };
}
