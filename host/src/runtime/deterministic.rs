//! Deterministic WASI for tests: a wall clock (and monotonic clock) that stands
//! still until the test advances it, and a random source that is a fixed byte
//! stream. With both, the engine's answers (request ids, timestamps, UUIDs)
//! depend only on the requests, so two hosts can be compared byte for byte
//! (the Node host's `deterministic.mjs` implements the same clock and stream).
//!
//! Never for a server: the random source is predictable by design.
//!
//! The byte stream: byte `i` is byte `i % 8` (little-endian) of
//! `splitmix64(i / 8)`; `get-random-u64` reads the next 8 bytes as a
//! little-endian number. Secure and insecure randomness are two streams, each
//! shared by every instance of the runtime.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// The clock and random streams of a deterministic runtime; clones share them.
#[derive(Clone, Debug)]
pub struct DeterministicWasi {
    now_ns: Arc<AtomicU64>,
    /// How long each clock read blocks its thread (nanoseconds; 0: not at all).
    stall_ns: Arc<AtomicU64>,
    secure: Arc<AtomicU64>,
    insecure: Arc<AtomicU64>,
}

/// 2026-01-01T00:00:00Z, the default start of the clock.
pub const DEFAULT_START: Duration = Duration::from_secs(1_767_225_600);

impl DeterministicWasi {
    /// A clock at `start` (since the Unix epoch) and both streams at byte 0.
    pub fn new(start: Duration) -> Self {
        DeterministicWasi {
            now_ns: Arc::new(AtomicU64::new(nanos(start))),
            stall_ns: Arc::new(AtomicU64::new(0)),
            secure: Arc::new(AtomicU64::new(0)),
            insecure: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves both clocks forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now_ns.fetch_add(nanos(by), Ordering::SeqCst);
    }

    /// Makes each clock read block its thread for `by` (sleeping, using no
    /// CPU): the guest's thread is off the CPU in the middle of a call, as
    /// when the OS runs other threads on a loaded machine.
    pub fn stall_clock_reads(&self, by: Duration) {
        self.stall_ns.store(nanos(by), Ordering::SeqCst);
    }

    fn clock(&self) -> Clock {
        Clock {
            now_ns: self.now_ns.clone(),
            stall_ns: self.stall_ns.clone(),
        }
    }

    /// The WASI context of one instance: the guest's stderr as in
    /// production, the clocks and streams of this runtime.
    pub(super) fn ctx(&self) -> WasiCtx {
        let mut b = WasiCtxBuilder::new();
        b.inherit_stderr()
            .wall_clock(self.clock())
            .monotonic_clock(self.clock())
            .secure_random(Stream(self.secure.clone()))
            .insecure_random(Stream(self.insecure.clone()))
            .insecure_random_seed(0);
        b.build()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

struct Clock {
    now_ns: Arc<AtomicU64>,
    stall_ns: Arc<AtomicU64>,
}

impl Clock {
    fn read(&self) -> u64 {
        let stall = self.stall_ns.load(Ordering::SeqCst);
        if stall > 0 {
            std::thread::sleep(Duration::from_nanos(stall));
        }
        self.now_ns.load(Ordering::SeqCst)
    }
}

impl HostWallClock for Clock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.read())
    }
}

impl HostMonotonicClock for Clock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.read()
    }
}

/// splitmix64: a bijective mixer of the block number.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Byte `i` of the stream.
fn byte_at(i: u64) -> u8 {
    let [low, ..] = (splitmix64(i / 8) >> (8 * (i % 8))).to_le_bytes();
    low
}

/// A position in the byte stream, shared by every instance.
struct Stream(Arc<AtomicU64>);

impl Stream {
    fn take(&self, n: u64) -> u64 {
        self.0.fetch_add(n, Ordering::SeqCst)
    }
}

impl rand_core::TryRng for Stream {
    type Error = Infallible;

    /// One byte of the stream (rand draws a `u8` as `next_u32() as u8`, so
    /// `get-random-bytes` reads the stream byte by byte).
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(u32::from(byte_at(self.take(1))))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let start = self.take(8);
        let mut bytes = [0u8; 8];
        for (k, b) in (0u64..).zip(bytes.iter_mut()) {
            *b = byte_at(start + k);
        }
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let start = self.take(dst.len() as u64);
        for (k, b) in (0u64..).zip(dst.iter_mut()) {
            *b = byte_at(start + k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand_core::Rng;

    use super::*;

    #[test]
    fn the_stream_is_the_same_however_it_is_read() {
        let mut a = Stream(Arc::new(AtomicU64::new(0)));
        let mut b = Stream(Arc::new(AtomicU64::new(0)));
        let x = a.next_u64();
        let mut bytes = [0u8; 8];
        b.fill_bytes(&mut bytes);
        assert_eq!(x.to_le_bytes(), bytes);
        assert_eq!(x, splitmix64(0));
        // Known value of splitmix64(0), also checked by the Node host's copy.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn the_clock_stands_still_until_advanced() {
        let d = DeterministicWasi::new(DEFAULT_START);
        let c = d.clock();
        assert_eq!(HostWallClock::now(&c), DEFAULT_START);
        d.advance(Duration::from_millis(1500));
        assert_eq!(
            HostWallClock::now(&c),
            DEFAULT_START + Duration::from_millis(1500)
        );
    }
}
