//! Cross-process wait and wake on a futex word in shared memory.
//!
//! A waiter first spins briefly (a hand-off in progress usually completes within a microsecond),
//! then announces itself in `waiters`, re-checks its condition and sleeps on the futex word with
//! a timeout. The waking side bumps the word and makes the `FUTEX_WAKE` syscall only when
//! `waiters` is non-zero. The `SeqCst` fences on both sides (announce → re-check, publish → read
//! `waiters`) guarantee that either the waiter sees the new state or the waker sees the waiter.
//! The futexes are process-shared (no `FUTEX_PRIVATE_FLAG`).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use rustix::thread::futex;

use crate::sync::{fence, AtomicU32, Ordering};

/// Futex word plus the number of sleepers on it (one per token queue, see
/// [`crate::token_queue`], and one for observers).
#[repr(C)]
#[derive(Debug, Default)]
pub struct Waker {
    /// Bumped by producers when someone sleeps.
    pub seq: AtomicU32,
    /// Number of sleeping (or about to sleep) consumers.
    pub waiters: AtomicU32,
}

/// How long a waiter spins (re-checking, with a CPU hint) before it sleeps. A hand-off in a
/// busy pipeline usually completes within this time, and a spinning waiter saves the waker its
/// `FUTEX_WAKE` syscall and itself a context switch.
fn spin_budget() -> Duration {
    static BUDGET: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let us = std::env::var("MIMOCORB2_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        Duration::from_micros(us)
    })
}

/// Wakes up to `n` sleepers of `w`; a no-op (no syscall) when nobody sleeps.
pub fn wake(w: &Waker, n: u32) {
    // SYNC POINT: orders the caller's publication (a queue push, an end flag) before reading
    // `waiters`; pairs with the fence in `wait_until`.
    fence(Ordering::SeqCst);
    if w.waiters.load(Ordering::Relaxed) != 0 {
        w.seq.fetch_add(1, Ordering::Release);
        // Errors of FUTEX_WAKE (none expected on a valid address) leave sleepers to their timeout.
        let _ = futex::wake(&w.seq, futex::Flags::empty(), n);
    }
}

/// Calls `check` until it returns `Some`, sleeping on `w` between tries, until `deadline`.
/// Returns `None` when the deadline passed. `deadline = None` waits without a limit.
pub fn wait_until<T>(
    w: &Waker,
    deadline: Option<Instant>,
    check: impl FnMut() -> Option<T>,
) -> Option<T> {
    wait_with(w, deadline, true, check)
}

/// [`wait_until`], spinning first only if `spin` (else it goes to sleep at once: for a waiter
/// whose waker will wake it only once several items are ready, spinning cannot pay).
pub fn wait_with<T>(
    w: &Waker,
    deadline: Option<Instant>,
    spin: bool,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let spin_end = Instant::now() + if spin { spin_budget() } else { Duration::ZERO };
    loop {
        for _ in 0..16 {
            if let Some(v) = check() {
                return Some(v);
            }
            std::hint::spin_loop();
        }
        let now = Instant::now();
        if now >= spin_end || deadline.is_some_and(|d| now >= d) {
            break;
        }
        // Give the core away between rounds: when more processes are runnable than there are
        // cores, the process we wait for may be the one waiting for a CPU (sched_yield returns
        // at once when nobody else is runnable, so an idle core keeps spinning).
        std::thread::yield_now();
    }
    loop {
        let timeout = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return check();
                }
                Some(d - now)
            }
            None => None,
        };
        w.waiters.fetch_add(1, Ordering::Relaxed);
        let seen = w.seq.load(Ordering::Relaxed);
        // SYNC POINT: announce (waiters) before re-checking the state; pairs with `wake`.
        fence(Ordering::SeqCst);
        if let Some(v) = check() {
            w.waiters.fetch_sub(1, Ordering::Relaxed);
            return Some(v);
        }
        sleep(w, seen, timeout);
        w.waiters.fetch_sub(1, Ordering::Relaxed);
        if let Some(v) = check() {
            return Some(v);
        }
    }
}

fn sleep(w: &Waker, seen: u32, timeout: Option<Duration>) {
    // Never sleep unbounded: a waker that died between its publication and its wake-up must
    // not leave us asleep forever, so cap each sleep and let the caller re-check.
    let cap = Duration::from_millis(500);
    let t = timeout.map_or(cap, |t| t.min(cap));
    let ts = futex::Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    };
    // EAGAIN (word changed), EINTR (signal) and ETIMEDOUT all mean: re-check.
    let _ = futex::wait(&w.seq, futex::Flags::empty(), seen, Some(&ts));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn times_out() {
        let w = Waker::default();
        let t0 = Instant::now();
        let r: Option<()> = wait_until(&w, Some(t0 + Duration::from_millis(30)), || None);
        assert!(r.is_none());
        assert!(t0.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn wakes_a_sleeper() {
        let w = Arc::new(Waker::default());
        let flag = Arc::new(AtomicU32::new(0));
        let (w2, f2) = (w.clone(), flag.clone());
        let h = std::thread::spawn(move || {
            wait_until(&w2, Some(Instant::now() + Duration::from_secs(10)), || {
                (f2.load(Ordering::Acquire) == 1).then_some(())
            })
        });
        std::thread::sleep(Duration::from_millis(50));
        flag.store(1, Ordering::Release);
        wake(&w, 1);
        assert!(h.join().unwrap().is_some());
    }
}
