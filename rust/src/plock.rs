//! The ring lock: a futex lock whose word holds the pid of its holder, so that a lock left
//! behind by a process that died inside a protocol step is taken over by the next process that
//! needs it (which then repairs the ring from the journal, see `ring_protocol.rs`).
//!
//! Word: 0 when free, else `holder pid | SLEEPERS` where [`SLEEPERS`] is set while a waiter may
//! sleep on the futex (the unlocking side then makes the wake-up syscall). A waiter that sees the
//! same holder for [`STALE_AFTER`] checks `/proc` whether that process still lives, and takes the
//! lock over with one compare-and-swap if it does not.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use rustix::thread::futex;

use crate::sync::{AtomicU32, Ordering};

/// Set in the lock word while someone may sleep on it.
pub const SLEEPERS: u32 = 1 << 31;
const PID_MASK: u32 = !SLEEPERS;
/// How long one holder must hold the lock before a waiter checks whether it is still alive.
pub const STALE_AFTER: Duration = Duration::from_millis(20);
const SLEEP: Duration = Duration::from_millis(5);

/// How the lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// From a live holder or free: the protected state is consistent.
    Clean,
    /// Taken over from this dead process: the protected state may be half changed.
    TakenOver(u32),
}

/// True unless `/proc` says process `pid` does not exist or has already exited (a zombie
/// that its parent has not reaped yet counts as dead).
#[must_use]
pub fn process_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => match text.rfind(')') {
            Some(i) => !matches!(
                text[i + 1..].trim_start().chars().next(),
                Some('Z' | 'X' | 'x')
            ),
            None => true,
        },
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Takes the lock for process `me`, waiting as long as its holder lives.
pub fn lock(word: &AtomicU32, me: u32) -> Acquired {
    lock_with(word, me, process_alive)
}

/// [`lock`] with a custom liveness check (for tests and model checking).
pub fn lock_with(word: &AtomicU32, me: u32, alive: impl Fn(u32) -> bool) -> Acquired {
    debug_assert!(me != 0 && me & SLEEPERS == 0);
    // SYNC POINT: Acquire pairs with the Release of `unlock`: the previous holder's changes
    // are visible inside the critical section.
    if word
        .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return Acquired::Clean;
    }
    for _ in 0..64 {
        std::hint::spin_loop();
        if word.load(Ordering::Relaxed) == 0
            && word
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Acquired::Clean;
        }
    }
    let mut seen = (0u32, Instant::now());
    loop {
        let cur = word.load(Ordering::Relaxed);
        if cur == 0 {
            // Keep SLEEPERS: other waiters may still sleep.
            if word
                .compare_exchange(0, me | SLEEPERS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Acquired::Clean;
            }
            continue;
        }
        let holder = cur & PID_MASK;
        if seen.0 != holder {
            seen = (holder, Instant::now());
        } else if seen.1.elapsed() >= STALE_AFTER && holder != me && !alive(holder) {
            if word
                .compare_exchange(cur, me | SLEEPERS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Acquired::TakenOver(holder);
            }
            continue;
        }
        if cur & SLEEPERS == 0
            && word
                .compare_exchange(cur, cur | SLEEPERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        sleep(word, cur | SLEEPERS);
    }
}

fn sleep(word: &AtomicU32, expected: u32) {
    let ts = futex::Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(SLEEP.subsec_nanos()),
    };
    // EAGAIN (word changed), EINTR and ETIMEDOUT all mean: look again.
    let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&ts));
}

/// Releases the lock.
pub fn unlock(word: &AtomicU32) {
    // SYNC POINT: Release publishes the critical section's changes to the next holder.
    let prev = word.swap(0, Ordering::Release);
    if prev & SLEEPERS != 0 {
        let _ = futex::wake(word, futex::Flags::empty(), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn mutual_exclusion_between_threads() {
        let word = Arc::new(AtomicU32::new(0));
        let inside = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (1..=4u32)
            .map(|me| {
                let (w, c) = (word.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        assert_eq!(lock_with(&w, me, |_| true), Acquired::Clean);
                        assert_eq!(c.fetch_add(1, Ordering::Relaxed), 0);
                        c.fetch_sub(1, Ordering::Relaxed);
                        unlock(&w);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn dead_holder_is_taken_over() {
        let word = AtomicU32::new(4_000_000);
        let t0 = Instant::now();
        assert_eq!(
            lock_with(&word, 7, |p| p != 4_000_000),
            Acquired::TakenOver(4_000_000)
        );
        assert!(t0.elapsed() >= STALE_AFTER);
        unlock(&word);
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn liveness_from_proc() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(0));
        assert!(!process_alive(u32::MAX >> 1));
    }
}
