//! FIFO queues of slot tokens (`u32` indices) that live in shared memory, and the futex word
//! their consumers sleep on.
//!
//! A queue is a plain ring of cells with a head and a tail position. It is only changed under
//! the ring lock (`plock.rs`), so its operations need no atomic read-modify-write and a process
//! that dies in the middle of one cannot leave a half-claimed cell behind: the queues are an
//! index that the repair step rebuilds from the slot records, which are the truth.
//!
//! Each queue carries a futex word: a consumer that found the queue empty sleeps on it, and
//! producers make a syscall only when someone sleeps (see [`crate::wait`]). Sleeping happens
//! outside the lock.
#![forbid(unsafe_code)]

use crate::sync::{AtomicU32, AtomicU64, CachePadded, Ordering};
use crate::wait::Waker;

/// Shared part of a queue: head, tail and the futex word.
#[repr(C)]
#[derive(Debug, Default)]
pub struct FifoHeader {
    /// Next position to pop.
    pub head: AtomicU64,
    /// Next position to push.
    pub tail: AtomicU64,
    /// Futex word and waiter count.
    pub waker: CachePadded<Waker>,
}

/// A view of a queue whose memory is owned elsewhere (a shared mapping, or a test's heap).
/// Every method except [`Fifo::len`] and [`Fifo::waker`] must be called under the ring lock.
#[derive(Debug, Clone, Copy)]
pub struct Fifo<'a> {
    hdr: &'a FifoHeader,
    cells: &'a [AtomicU32],
}

impl<'a> Fifo<'a> {
    /// Wraps existing queue memory (`cells.len()` ≥ 1).
    #[must_use]
    pub fn new(hdr: &'a FifoHeader, cells: &'a [AtomicU32]) -> Self {
        Fifo { hdr, cells }
    }

    /// Capacity of the queue.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.cells.len()
    }

    /// Number of tokens in the queue (a snapshot when read without the lock).
    #[must_use]
    pub fn len(&self) -> usize {
        let head = self.hdr.head.load(Ordering::Relaxed);
        let tail = self.hdr.tail.load(Ordering::Relaxed);
        (tail.saturating_sub(head) as usize).min(self.cells.len())
    }

    /// True when the queue holds no token (snapshot).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tokens in the queue, oldest first (a snapshot when read without the lock; for
    /// consistency checks).
    #[must_use]
    pub fn tokens(&self) -> Vec<u32> {
        let head = self.hdr.head.load(Ordering::Relaxed);
        let tail = self.hdr.tail.load(Ordering::Relaxed);
        let n = tail.saturating_sub(head).min(self.cells.len() as u64);
        (head..head + n)
            .map(|p| self.cell(p).load(Ordering::Relaxed))
            .collect()
    }

    fn cell(&self, pos: u64) -> &AtomicU32 {
        &self.cells[(pos % self.cells.len() as u64) as usize]
    }

    /// Empties the queue.
    pub fn clear(&self) {
        let tail = self.hdr.tail.load(Ordering::Relaxed);
        self.hdr.head.store(tail, Ordering::Relaxed);
    }

    /// Appends a token; false when the queue is full (never for a ring, whose queues hold at
    /// most its slot count).
    pub fn push(&self, token: u32) -> bool {
        let head = self.hdr.head.load(Ordering::Relaxed);
        let tail = self.hdr.tail.load(Ordering::Relaxed);
        if tail.wrapping_sub(head) >= self.cells.len() as u64 {
            return false;
        }
        self.cell(tail).store(token, Ordering::Relaxed);
        self.hdr.tail.store(tail + 1, Ordering::Relaxed);
        true
    }

    /// The oldest token without taking it.
    #[must_use]
    pub fn peek(&self) -> Option<u32> {
        let head = self.hdr.head.load(Ordering::Relaxed);
        let tail = self.hdr.tail.load(Ordering::Relaxed);
        (head < tail).then(|| self.cell(head).load(Ordering::Relaxed))
    }

    /// Takes the oldest token.
    pub fn pop(&self) -> Option<u32> {
        let t = self.peek()?;
        let head = self.hdr.head.load(Ordering::Relaxed);
        self.hdr.head.store(head + 1, Ordering::Relaxed);
        Some(t)
    }

    /// The queue's futex word and waiter count.
    #[must_use]
    pub fn waker(&self) -> &'a Waker {
        &self.hdr.waker
    }

    /// Wakes one sleeping consumer, making a syscall only if someone sleeps.
    pub fn notify(&self) {
        crate::wait::wake(self.waker(), 1);
    }

    /// Wakes every sleeping consumer (used at the end of a buffer).
    pub fn notify_all(&self) {
        crate::wait::wake(self.waker(), u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_full_and_wrap() {
        let hdr = FifoHeader::default();
        let cells: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0)).collect();
        let q = Fifo::new(&hdr, &cells);
        assert!(q.pop().is_none());
        for round in 0..5u32 {
            for i in 0..4 {
                assert!(q.push(round * 10 + i));
            }
            assert!(!q.push(99), "a full queue refuses");
            assert_eq!(q.len(), 4);
            for i in 0..4 {
                assert_eq!(q.pop(), Some(round * 10 + i));
            }
        }
        assert!(q.push(7));
        q.clear();
        assert!(q.is_empty());
    }
}
