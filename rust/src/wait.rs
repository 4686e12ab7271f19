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

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// Futex word plus the number of sleepers on it (one per token queue, see
/// [`crate::token_queue`], and one for observers).
#[repr(C)]
#[derive(Debug, Default)]
pub struct Waker {
    /// Bumped by producers when someone sleeps.
    pub seq: AtomicU32,
    /// Number of sleeping (or about to sleep) consumers.
    pub waiters: AtomicU32,
    /// Monotonic clock (ns) until which a consumer spins on this word; 0 when none does.
    /// While one spins, a producer may leave the sleepers asleep (see [`wake_unless_spinning`]):
    /// with more processes than cores, waking a second consumer for an event the spinning one
    /// takes anyway costs the producer a syscall and a core to the woken one. A time rather
    /// than a count, so that a consumer killed while spinning stops counting by itself.
    pub spin_until: AtomicU64,
}

/// The system-wide monotonic clock in nanoseconds (the same in every process).
fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).wrapping_mul(1_000_000_000) + t.tv_nsec as u64
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

thread_local! {
    /// Set while [`without_spin`] runs: waits of this thread go to sleep at once.
    static NO_SPIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the spin phase of this thread's waits switched off. For a wait resumed after
/// a slice of it timed out (the Python bindings wait in slices to let signals through): the
/// spin pays only at the start of a wait, and spinning again every slice would make an idle
/// endpoint burn ~30 µs at every slice.
pub fn without_spin<T>(f: impl FnOnce() -> T) -> T {
    /// Puts the previous setting back, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_SPIN.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(NO_SPIN.with(|c| c.replace(true)));
    f()
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

/// Like [`wake`] for one sleeper, but leaves the sleepers asleep while a consumer spins on
/// `w`: that one takes the item, and passes the wake-up on if more are left (see
/// [`wait_until`]).
pub fn wake_unless_spinning(w: &Waker) {
    // SYNC POINT: orders the caller's publication before the loads of `waiters` and
    // `spin_until`; pairs with the fence after a spinner clears `spin_until` in `wait_until`
    // (either it sees our item or we see that it stopped spinning).
    fence(Ordering::SeqCst);
    if w.waiters.load(Ordering::Relaxed) != 0 && w.spin_until.load(Ordering::Relaxed) <= mono_ns() {
        w.seq.fetch_add(1, Ordering::Release);
        let _ = futex::wake(&w.seq, futex::Flags::empty(), 1);
    }
}

/// Calls `check` until it returns `Some`, sleeping on `w` between tries, until `deadline`.
/// Returns `None` when the deadline passed. `deadline = None` waits without a limit.
///
/// A waiter first spins (announced in `spin_until`). A producer that saw it spinning may have
/// left the sleepers asleep, so when the spinner found an item it must look whether more are
/// left and then wake a sleeper itself ([`Waker`] `spin_until`; the queue's readers do so).
pub fn wait_until<T>(
    w: &Waker,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let budget = if NO_SPIN.with(std::cell::Cell::get) {
        Duration::ZERO
    } else {
        spin_budget()
    };
    if !budget.is_zero() {
        let spin_end = Instant::now() + budget;
        w.spin_until
            .store(mono_ns() + budget.as_nanos() as u64, Ordering::Relaxed);
        let found = 'spin: loop {
            for _ in 0..16 {
                if let Some(v) = check() {
                    break 'spin Some(v);
                }
                std::hint::spin_loop();
            }
            let now = Instant::now();
            if now >= spin_end || deadline.is_some_and(|d| now >= d) {
                break None;
            }
            // Give the core away between rounds: when more processes are runnable than there
            // are cores, the process we wait for may be the one waiting for a CPU (sched_yield
            // returns at once when nobody else is runnable, so an idle core keeps spinning).
            std::thread::yield_now();
        };
        // SYNC POINT: stop counting as a spinner before looking at the queue again (the
        // caller's re-check after a find, or the announce-and-re-check below); pairs with the
        // fence in `wake_unless_spinning`.
        w.spin_until.store(0, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if found.is_some() {
            return found;
        }
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

    /// No wake-up is lost with a spinning and a sleeping consumer: the producer publishes
    /// bursts of 1–3 items at irregular intervals (so the consumers spin at times and sleep at
    /// others) and skips the wake-up while one spins; the consumer that finds an item passes
    /// the wake-up on when more are left, as the ring's readers do. Each burst must be taken
    /// long before the 500 ms cap of a sleep would rescue a lost wake-up.
    #[test]
    fn no_lost_wake_up_with_spinning_and_sleeping_consumers() {
        use crate::sync::AtomicU64;
        let w = Arc::new(Waker::default());
        let published = Arc::new(AtomicU64::new(0));
        let taken = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU32::new(0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (w, published, taken, done) =
                    (w.clone(), published.clone(), taken.clone(), done.clone());
                std::thread::spawn(move || loop {
                    let take = || {
                        if done.load(Ordering::Acquire) != 0 {
                            return Some(false);
                        }
                        let t = taken.load(Ordering::Acquire);
                        (t < published.load(Ordering::Acquire)
                            && taken
                                .compare_exchange(t, t + 1, Ordering::AcqRel, Ordering::Relaxed)
                                .is_ok())
                        .then_some(true)
                    };
                    match wait_until(&w, None, take) {
                        Some(true) => {
                            if taken.load(Ordering::Acquire) < published.load(Ordering::Acquire) {
                                wake(&w, 1);
                            }
                        }
                        _ => return,
                    }
                })
            })
            .collect();
        let mut worst = Duration::ZERO;
        for round in 0u64..3000 {
            // Irregular pauses: within and beyond the consumers' spin budget.
            let pause = Duration::from_micros((round * 7919) % 90);
            let t = Instant::now();
            while t.elapsed() < pause {
                std::hint::spin_loop();
            }
            let burst = 1 + round % 3;
            let target = published.fetch_add(burst, Ordering::AcqRel) + burst;
            wake_unless_spinning(&w);
            let t0 = Instant::now();
            while taken.load(Ordering::Acquire) < target {
                assert!(
                    t0.elapsed() < Duration::from_millis(400),
                    "burst {round} not taken in 400 ms: a wake-up was lost"
                );
                std::thread::yield_now();
            }
            worst = worst.max(t0.elapsed());
        }
        done.store(1, Ordering::Release);
        wake(&w, u32::MAX);
        for c in consumers {
            c.join().unwrap();
        }
        assert_eq!(
            taken.load(Ordering::Relaxed),
            published.load(Ordering::Relaxed)
        );
        eprintln!("slowest burst taken after {worst:?}");
    }

    /// A wait resumed after a timed-out slice sleeps at once: without the spin, `check` runs
    /// a handful of times in 20 ms instead of at least once per spin round.
    #[test]
    fn without_spin_skips_the_spin_phase() {
        let w = Waker::default();
        let count = |spin: bool| {
            let mut calls = 0u32;
            let mut wait = || {
                wait_until(&w, Some(Instant::now() + Duration::from_millis(20)), || {
                    calls += 1;
                    None::<()>
                })
            };
            let r = if spin { wait() } else { without_spin(wait) };
            assert!(r.is_none());
            calls
        };
        assert!(
            spin_budget().is_zero() || count(true) >= 16,
            "a plain wait spins first"
        );
        assert!(count(false) < 16, "no spin: {} checks", count(false));
        assert_eq!(w.spin_until.load(Ordering::Relaxed), 0);
    }
}
