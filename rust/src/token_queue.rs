//! Bounded lock-free MPMC queue of slot tokens (`u32` indices) that lives in shared memory.
//!
//! The algorithm is D. Vyukov's bounded MPMC queue: every cell carries a sequence number that
//! tells whether it is ready for the producer or the consumer of a given position, so producers
//! and consumers claim positions with one compare-and-swap on `tail` / `head` and never wait on
//! each other's locks. Positions are 64-bit and never wrap in practice. Batches claim `k`
//! consecutive positions with a single CAS (one shared-position update per batch).
//!
//! Each queue carries a futex word: a consumer that found the queue empty sleeps on it, and
//! producers make a syscall only when someone sleeps (see [`crate::wait`]).
//!
//! Invariant used by the ring: tokens are conserved (each slot index is in at most one queue
//! or held by one process), so a queue never needs more capacity than the slot count.
#![forbid(unsafe_code)]

use crate::sync::{fence, AtomicU32, AtomicU64, CachePadded, Ordering};

/// How long [`TokenQueue::push_all`] retries before it declares the queue stuck.
pub const STUCK_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Shared part of a queue: head, tail and the futex word, each on its own cache line.
#[repr(C)]
#[derive(Debug, Default)]
pub struct QueueHeader {
    /// Next position to pop.
    pub head: CachePadded<AtomicU64>,
    /// Next position to push.
    pub tail: CachePadded<AtomicU64>,
    /// Futex word and waiter count.
    pub waker: CachePadded<Waker>,
}

/// Futex word plus the number of sleepers on it.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Waker {
    /// Bumped by producers when someone sleeps.
    pub seq: AtomicU32,
    /// Number of sleeping (or about to sleep) consumers.
    pub waiters: AtomicU32,
}

/// One queue cell, on a cache line of its own (a consumer releasing cell `p` and a producer
/// filling cell `p + 1` must not fight over one line).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct QueueCell {
    /// Vyukov sequence number of the cell.
    pub seq: AtomicU64,
    /// The token.
    pub value: AtomicU64,
}

/// A view of a queue whose memory is owned elsewhere (a shared mapping, or a test's heap).
#[derive(Debug, Clone, Copy)]
pub struct TokenQueue<'a> {
    hdr: &'a QueueHeader,
    cells: &'a [QueueCell],
    mask: u64,
}

impl<'a> TokenQueue<'a> {
    /// Wraps existing queue memory. `cells.len()` must be a power of two.
    ///
    /// # Panics
    /// Panics if `cells.len()` is not a power of two (a layout bug, never user input).
    #[must_use]
    pub fn new(hdr: &'a QueueHeader, cells: &'a [QueueCell]) -> Self {
        assert!(
            cells.len().is_power_of_two(),
            "queue capacity must be a power of two"
        );
        TokenQueue {
            hdr,
            cells,
            mask: cells.len() as u64 - 1,
        }
    }

    /// Puts the queue into its empty state. Only for fresh memory no other process uses yet.
    pub fn init(&self) {
        self.hdr.head.store(0, Ordering::Relaxed);
        self.hdr.tail.store(0, Ordering::Relaxed);
        for (i, c) in self.cells.iter().enumerate() {
            c.seq.store(i as u64, Ordering::Relaxed);
            c.value.store(0, Ordering::Relaxed);
        }
        fence(Ordering::Release);
    }

    /// Capacity of the queue.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.cells.len()
    }

    /// Number of tokens in the queue (a snapshot; may be stale as soon as it is returned).
    #[must_use]
    pub fn len(&self) -> usize {
        let head = self.hdr.head.load(Ordering::Relaxed);
        let tail = self.hdr.tail.load(Ordering::Relaxed);
        tail.saturating_sub(head) as usize
    }

    /// True when the queue holds no token (snapshot).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cell(&self, pos: u64) -> &QueueCell {
        &self.cells[(pos & self.mask) as usize]
    }

    /// Pushes one token; returns false when the queue is full. Does not wake sleepers: call
    /// [`TokenQueue::notify`] after a push (or after a batch).
    pub fn push(&self, token: u32) -> bool {
        self.push_batch(std::slice::from_ref(&token)) == 1
    }

    /// Pushes every token of `tokens`, for callers that know there is room (tokens are
    /// conserved, so a ring's queues never lack room). A push can still see a cell that a
    /// consumer has claimed but not yet released, and report "full" for a moment; this retries
    /// (spinning, then yielding) until that consumer is through. Gives up and returns false only
    /// if the queue stays stuck for [`STUCK_LIMIT`], which means a process died inside a queue
    /// operation.
    pub fn push_all(&self, tokens: &[u32]) -> bool {
        let mut rest = tokens;
        let mut failures = 0u32;
        let mut since: Option<std::time::Instant> = None;
        while !rest.is_empty() {
            let n = self.push_batch(rest);
            rest = &rest[n..];
            if n > 0 {
                continue;
            }
            failures += 1;
            if failures < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
                let t0 = *since.get_or_insert_with(std::time::Instant::now);
                if t0.elapsed() > STUCK_LIMIT {
                    return false;
                }
            }
        }
        true
    }

    /// Pops one token, or `None` when the queue is empty.
    pub fn pop(&self) -> Option<u32> {
        let mut out = [0u32; 1];
        (self.pop_batch(&mut out) == 1).then_some(out[0])
    }

    /// Pushes up to `tokens.len()` tokens with one claim of consecutive positions; returns how
    /// many were pushed (fewer only when the queue is full).
    pub fn push_batch(&self, tokens: &[u32]) -> usize {
        if tokens.is_empty() {
            return 0;
        }
        let mut pos = self.hdr.tail.load(Ordering::Relaxed);
        loop {
            // Count the cells after `pos` that are free for this lap.
            let mut ready = 0usize;
            while ready < tokens.len() {
                let p = pos + ready as u64;
                // SYNC POINT: Acquire pairs with the consumer's Release of `seq` after it took
                // the previous lap's value out of this cell.
                let seq = self.cell(p).seq.load(Ordering::Acquire);
                if seq != p {
                    break;
                }
                ready += 1;
            }
            if ready == 0 {
                let seq = self.cell(pos).seq.load(Ordering::Acquire);
                if (seq as i64).wrapping_sub(pos as i64) < 0 {
                    return 0; // full
                }
                pos = self.hdr.tail.load(Ordering::Relaxed);
                continue;
            }
            match self.hdr.tail.compare_exchange_weak(
                pos,
                pos + ready as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    for (i, &t) in tokens[..ready].iter().enumerate() {
                        let p = pos + i as u64;
                        let c = self.cell(p);
                        c.value.store(u64::from(t), Ordering::Relaxed);
                        // SYNC POINT: Release publishes the value (and the slot contents written
                        // before the push) to the consumer that Acquires this `seq`.
                        c.seq.store(p + 1, Ordering::Release);
                    }
                    return ready;
                }
                Err(p) => pos = p,
            }
        }
    }

    /// Pops up to `out.len()` tokens with one claim of consecutive positions; returns how many.
    pub fn pop_batch(&self, out: &mut [u32]) -> usize {
        if out.is_empty() {
            return 0;
        }
        let cap = self.cells.len() as u64;
        let mut pos = self.hdr.head.load(Ordering::Relaxed);
        loop {
            let mut ready = 0usize;
            while ready < out.len() {
                let p = pos + ready as u64;
                // SYNC POINT: Acquire pairs with the producer's Release of `seq`, making the
                // token and the slot contents visible.
                let seq = self.cell(p).seq.load(Ordering::Acquire);
                if seq != p + 1 {
                    break;
                }
                ready += 1;
            }
            if ready == 0 {
                let seq = self.cell(pos).seq.load(Ordering::Acquire);
                if (seq as i64).wrapping_sub((pos + 1) as i64) < 0 {
                    return 0; // empty
                }
                pos = self.hdr.head.load(Ordering::Relaxed);
                continue;
            }
            match self.hdr.head.compare_exchange_weak(
                pos,
                pos + ready as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    for (i, slot) in out[..ready].iter_mut().enumerate() {
                        let p = pos + i as u64;
                        let c = self.cell(p);
                        *slot = c.value.load(Ordering::Relaxed) as u32;
                        // SYNC POINT: Release hands the cell back to the producer of the next lap.
                        c.seq.store(p + cap, Ordering::Release);
                    }
                    return ready;
                }
                Err(p) => pos = p,
            }
        }
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

/// Heap-backed queue memory, for tests and benchmarks of the queue alone.
#[derive(Debug)]
pub struct HeapQueue {
    hdr: Box<QueueHeader>,
    cells: Vec<QueueCell>,
}

impl HeapQueue {
    /// A fresh empty queue with room for `capacity` tokens (rounded up to a power of two).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.next_power_of_two().max(2);
        let q = HeapQueue {
            hdr: Box::default(),
            cells: (0..cap).map(|_| QueueCell::default()).collect(),
        };
        q.queue().init();
        q
    }

    /// A view of the queue.
    #[must_use]
    pub fn queue(&self) -> TokenQueue<'_> {
        TokenQueue::new(&self.hdr, &self.cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_full() {
        let h = HeapQueue::new(4);
        let q = h.queue();
        assert!(q.pop().is_none());
        for i in 0..4 {
            assert!(q.push(i));
        }
        assert!(!q.push(9), "a full queue refuses");
        assert_eq!(q.len(), 4);
        for i in 0..4 {
            assert_eq!(q.pop(), Some(i));
        }
        assert!(q.is_empty());
    }

    #[test]
    fn batches_wrap_around() {
        let h = HeapQueue::new(8);
        let q = h.queue();
        let mut out = [0u32; 8];
        for round in 0..10u32 {
            let toks: Vec<u32> = (0..5).map(|i| round * 10 + i).collect();
            assert_eq!(q.push_batch(&toks), 5);
            assert_eq!(q.pop_batch(&mut out[..3]), 3);
            assert_eq!(&out[..3], &toks[..3]);
            assert_eq!(q.pop_batch(&mut out), 2);
            assert_eq!(&out[..2], &toks[3..]);
        }
        assert_eq!(q.push_batch(&[1; 12]), 8, "a batch stops at capacity");
    }
}
