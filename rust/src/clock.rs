//! Wall-clock helpers.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
#[must_use]
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// The calling process's id.
#[must_use]
pub fn pid() -> u32 {
    std::process::id()
}
