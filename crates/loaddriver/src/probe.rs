//! A machine-speed probe for the benchmark runs.
//!
//! The targets are absolute numbers (transitions/s, tasks/s), and the
//! shared VM this project is measured on changes speed between days by up to
//! ~2× (the host, its other tenants). `run_all.py` runs this probe at the start
//! and the end of a run and writes its three numbers into the results table, so
//! a reader can tell a slower machine from a slower scheduler:
//!
//! - **memory latency**: dependent loads chasing a random single-cycle
//!   permutation much larger than the last-level cache (the pure core's
//!   compute/finish loop is bound by exactly these misses);
//! - **dependent integer operations**: the core's clock, cache-resident;
//! - **loopback round trip**: one byte to a thread and back over TCP on
//!   127.0.0.1, both sides blocked in `recv` (the sleep/wake-up and syscall
//!   cost that dominates a scheduler's CPU per task with real workers), as
//!   wall time and as both threads' CPU time.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A small xorshift generator: the probe needs reproducible indices, not
/// statistical quality.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a seed (a zero seed is replaced, xorshift needs a bit set).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (`n > 0`; the slight modulo bias does not matter here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A random permutation of `0..n` that is one single cycle (Sattolo's
/// algorithm), so that following it from any slot visits every slot before
/// coming back: no short loop can stay inside the cache.
pub fn cyclic_permutation(n: usize, seed: u64) -> Vec<u32> {
    assert!(
        n <= u32::MAX as usize,
        "probe array too large for u32 indices"
    );
    let mut next: Vec<u32> = (0..n as u32).collect();
    let mut rng = XorShift::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i);
        next.swap(i, j);
    }
    next
}

/// Follow `next` from slot 0 for `steps` dependent loads; returns where it
/// stopped (returned so that the loads cannot be optimized away).
pub fn chase(next: &[u32], steps: usize) -> u32 {
    let mut at = 0u32;
    for _ in 0..steps {
        at = next[at as usize];
    }
    at
}

/// `iters` dependent multiply-rotate-xor steps (about 5 cycles each on current
/// x86 cores); returns the result so the loop stays.
pub fn spin(iters: u64, seed: u64) -> u64 {
    let mut x = seed | 1;
    for i in 0..iters {
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ i;
    }
    x
}

/// CPU time the calling thread has run, in ns (`/proc/thread-self/schedstat`,
/// which counts exactly, unlike tick-based `utime`); `None` where unavailable.
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What [`loopback_round_trips`] measured.
#[derive(Debug, Clone, Copy)]
pub struct RoundTrips {
    /// Wall time of all the round trips.
    pub wall: Duration,
    /// CPU time of both threads (sender and echo) over them, in ns, user and
    /// kernel; `None` where the kernel does not report it.
    pub cpu_ns: Option<u64>,
}

/// Time `n` one-byte round trips over a TCP connection on 127.0.0.1 to an
/// echoing thread (Nagle off on both ends, both sides blocking in `recv`).
pub fn loopback_round_trips(n: usize) -> io::Result<RoundTrips> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> io::Result<Option<u64>> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let cpu0 = thread_cpu_ns();
        let mut b = [0u8; 1];
        loop {
            match s.read(&mut b)? {
                0 => return Ok(cpu0.zip(thread_cpu_ns()).map(|(a, b)| b.saturating_sub(a))),
                _ => s.write_all(&b)?,
            }
        }
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut b = [7u8; 1];
    let (t0, cpu0) = (Instant::now(), thread_cpu_ns());
    for _ in 0..n {
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
    }
    let (wall, cpu1) = (t0.elapsed(), thread_cpu_ns());
    drop(c);
    let echo_cpu = echo
        .join()
        .map_err(|_| io::Error::other("echo thread panicked"))??;
    let own_cpu = cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a));
    Ok(RoundTrips {
        wall,
        cpu_ns: own_cpu.zip(echo_cpu).map(|(a, b)| a + b),
    })
}

/// Median, minimum and maximum of some measurements (`xs` not empty).
pub fn median_min_max(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let med = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    (med, v[0], v[v.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_one_cycle_over_every_slot() {
        for n in [1usize, 2, 3, 10, 1000] {
            let next = cyclic_permutation(n, 42);
            let mut seen = vec![false; n];
            let mut at = 0usize;
            for _ in 0..n {
                assert!(
                    !seen[at],
                    "n={n}: slot {at} visited twice before the cycle closed"
                );
                seen[at] = true;
                at = next[at] as usize;
            }
            assert_eq!(at, 0, "n={n}: the walk must come back to 0 after n steps");
            assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn chase_follows_the_permutation() {
        let next = vec![2u32, 0, 3, 1];
        assert_eq!(chase(&next, 0), 0);
        assert_eq!(chase(&next, 1), 2);
        assert_eq!(chase(&next, 3), 1);
        assert_eq!(chase(&next, 4), 0);
    }

    #[test]
    fn spin_depends_on_every_step() {
        assert_ne!(spin(1000, 1), spin(1001, 1));
        assert_eq!(spin(1000, 1), spin(1000, 1));
    }

    #[test]
    fn loopback_round_trips_complete() {
        let rt = loopback_round_trips(50).expect("loopback");
        assert!(rt.wall > Duration::ZERO);
        if let Some(cpu) = rt.cpu_ns {
            // 100 sends and 100 receives cannot take no CPU at all
            assert!(cpu > 0, "both threads' CPU over 50 round trips was 0");
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_min_max(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_min_max(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }
}
