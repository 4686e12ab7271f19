//! Wall-clock helpers.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use crate::sync::{AtomicU32, Ordering};

/// Nanoseconds since the Unix epoch.
#[must_use]
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

static PID: AtomicU32 = AtomicU32::new(0);

/// The calling process's id, cached (a slot hand-off records it twice per event). A process
/// created by `fork` must call [`reset_pid_cache`] in the child; the Python package does so
/// through `os.register_at_fork`.
#[must_use]
pub fn pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => {
            let p = std::process::id();
            PID.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

/// Forgets the cached process id (call in the child after a fork).
pub fn reset_pid_cache() {
    PID.store(0, Ordering::Relaxed);
}
