//! The only place that imports atomics, so that every shared-memory atomic of the crate is visible
//! in one list (and could be swapped for a model checker's types).
#![forbid(unsafe_code)]

pub use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

/// A value padded to 128 bytes, so that two hot counters never share a cache line (two lines
/// on CPUs with adjacent-line prefetch).
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
