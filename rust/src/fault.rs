//! Deterministic fault injection for the crash tests: with the cargo feature `fault-injection`,
//! [`point`] aborts the process (as `kill -9` would end it: no unwinding, no cleanup) when the
//! point named by the environment variable `MIMOCORB2_FAULT` is reached for the `k`-th time
//! (`MIMOCORB2_FAULT=name` or `name@k`). Without the feature it compiles to nothing.
#![forbid(unsafe_code)]

/// Names of every fault point of the slot protocol, for tests that visit them all.
pub const POINTS: &[&str] = &[
    "lock.taken",
    "step.planned",
    "journal.written",
    "journal.active",
    "apply.slots_half",
    "apply.slots",
    "apply.words",
    "step.queued",
    "step.done",
    "commit.stamped",
    "reclaim.slot",
    "repair.rolled",
    "unlock",
    "forward.intent",
];

#[cfg(feature = "fault-injection")]
mod imp {
    use crate::sync::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    pub fn point(name: &str) {
        let target = TARGET.get_or_init(|| {
            let v = std::env::var("MIMOCORB2_FAULT").ok()?;
            let (n, k) = match v.split_once('@') {
                Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some((n, k))
        });
        if let Some((n, k)) = target {
            if n == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *k {
                std::process::abort();
            }
        }
    }
}

/// A named step of the protocol where a test build may die.
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    imp::point(name);
}

/// A named step of the protocol where a test build may die (no-op in this build).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}
