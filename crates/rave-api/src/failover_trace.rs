//! Opt-in timings of a takeover's phases, for measuring failover (`RAVE_FAILOVER_TRACE=1`).
//!
//! Off by default and then one relaxed load per call: the phases are printed to stderr only
//! when the variable is set (any value but `0`), one line each, so a harness can join them with
//! its own kill times. Timestamps are CLOCK_MONOTONIC nanoseconds on Linux, the clock the
//! torture harness stamps its history with; durations are microseconds.

use std::sync::OnceLock;

/// The variable that turns the trace on.
pub const ENV: &str = "RAVE_FAILOVER_TRACE";

/// Whether the trace is on (read once per process).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(ENV).is_some_and(|v| v != "0"))
}

/// Prints `rave-failover <monotonic ns> <pid> <phase> <detail>` when the trace is on.
pub fn phase(name: &str, detail: std::fmt::Arguments<'_>) {
    if enabled() {
        eprintln!(
            "rave-failover {} {} {name} {detail}",
            monotonic_ns(),
            std::process::id()
        );
    }
}

/// CPU time this thread has used, in microseconds (0 where it cannot be read): set beside a
/// phase's wall time, it tells work from waiting (on the disk, or for a core).
pub fn thread_cpu_us() -> u128 {
    clock_ns(CPU_CLOCK) / 1000
}

/// Nanoseconds this thread has spent runnable but waiting for a core, from the scheduler's
/// statistics (`/proc/thread-self/schedstat`, Linux; 0 elsewhere or when unreadable). Beside
/// the wall and CPU time of a phase, the rest is time blocked (on the disk, a lock).
pub fn thread_runqueue_wait_us() -> u128 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u128>().ok())
        .map_or(0, |ns| ns / 1000)
}

#[cfg(unix)]
const CPU_CLOCK: libc::clockid_t = libc::CLOCK_THREAD_CPUTIME_ID;
#[cfg(not(unix))]
const CPU_CLOCK: i32 = 0;

/// CLOCK_MONOTONIC in nanoseconds (the clock `std::time::Instant` reads on Linux, and the torture
/// harness's), as a number another process can compare; 0 where it cannot be read.
fn monotonic_ns() -> u128 {
    clock_ns(MONOTONIC)
}

#[cfg(unix)]
const MONOTONIC: libc::clockid_t = libc::CLOCK_MONOTONIC;
#[cfg(not(unix))]
const MONOTONIC: i32 = 0;

#[cfg(unix)]
fn clock_ns(clock: libc::clockid_t) -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the call only writes into it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u128::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u128::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

#[cfg(not(unix))]
fn clock_ns(_clock: i32) -> u128 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_monotonic_clock() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        #[cfg(unix)]
        assert!(a > 0 && b >= a, "{a} {b}");
        let _ = (a, b);
        // Some CPU was used by now (this test, at least).
        #[cfg(unix)]
        assert!(thread_cpu_us() > 0);
        let _ = thread_runqueue_wait_us();
    }
}
