//! The `#[repr(C)]` layout of one buffer's shared-memory region.
//!
//! ```text
//! [Header | SharedState | empty TokenQueue | filled TokenQueue | SlotRecord × n | WriterEntry × W | slots]
//! ```
//!
//! Everything is addressed by offsets from the start of the mapping, never by pointers, because
//! every process maps the region at its own address. The header is written once by the creator
//! before any other process can attach; attaching checks the magic, the layout version and the
//! geometry before anything else is touched. Future extensions (reader groups, remote buffers)
//! bump [`LAYOUT_VERSION`]; [`SlotRecord::holders`] already counts several holders of a slot.
#![forbid(unsafe_code)]

use crate::metadata::METADATA_SIZE;
use crate::sync::{AtomicU32, AtomicU64, CachePadded};
use crate::token_queue::{QueueCell, QueueHeader, Waker};

/// `b"MIMOCRB2"` as a little-endian integer.
pub const MAGIC: u64 = u64::from_le_bytes(*b"MIMOCRB2");
/// Version of this layout; bumped on every incompatible change.
pub const LAYOUT_VERSION: u32 = 1;
/// Longest buffer name in bytes.
pub const MAX_NAME: usize = 240;
/// Longest dtype description (JSON text) in bytes.
pub const MAX_DTYPE: usize = 8192;
/// Number of writer registrations a buffer can track.
pub const MAX_WRITERS: usize = 256;
/// Largest slot count.
pub const MAX_SLOTS: u32 = 1 << 20;
/// Slot stride alignment (a cache line).
pub const SLOT_ALIGN: u64 = 64;

/// Immutable description of the region, written once by the creator.
#[repr(C)]
#[derive(Debug)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// `size_of::<Header>()` of the creator, checked on attach.
    pub header_size: u32,
    /// Random identity of this buffer instance (checked on attach, so a recycled fd number
    /// never maps a different buffer).
    pub instance_id: [u64; 2],
    /// Number of slots.
    pub slot_count: u32,
    /// Capacity of each token queue (a power of two ≥ `slot_count`).
    pub queue_capacity: u32,
    /// Bytes from one slot to the next (a multiple of [`SLOT_ALIGN`]).
    pub slot_stride: u64,
    /// Bytes of event data per slot (after the 24 metadata bytes).
    pub data_size: u64,
    /// 1 when a full buffer overwrites its oldest event instead of blocking the writer.
    pub overwrite: u32,
    /// Process id of the creator.
    pub creator_pid: u32,
    /// Offset of the [`SharedState`].
    pub off_state: u64,
    /// Offset of the empty-slot token queue.
    pub off_empty: u64,
    /// Offset of the filled-slot token queue.
    pub off_filled: u64,
    /// Offset of the [`SlotRecord`] array.
    pub off_records: u64,
    /// Offset of the [`WriterEntry`] array.
    pub off_writers: u64,
    /// Offset of slot 0 (aligned to a page).
    pub off_slots: u64,
    /// Total size of the region in bytes.
    pub total_size: u64,
    /// Length of the name in `name`.
    pub name_len: u32,
    /// Length of the dtype description in `dtype`.
    pub dtype_len: u32,
    /// The buffer name (UTF-8).
    pub name: [u8; MAX_NAME],
    /// The data dtype description (JSON text, as produced by the Python side).
    pub dtype: [u8; MAX_DTYPE],
}

/// Buffer has not ended.
pub const END_OPEN: u32 = 0;
/// Every registered writer finished (orderly end).
pub const END_DRAINED: u32 = 1;
/// Shut down at once by a forced flush.
pub const END_FORCED: u32 = 2;

/// Mutable state shared by all processes. Hot words sit on cache lines of their own.
#[repr(C)]
#[derive(Debug)]
pub struct SharedState {
    /// Committed events (including ones later overwritten; excluding discarded ones). Also the
    /// commit sequence number of the newest event.
    pub event_count: CachePadded<AtomicU64>,
    /// Next event number handed out by a stamping commit.
    pub next_counter: CachePadded<AtomicU64>,
    /// `(commit sequence << 24) | slot` of the most recent commit; 0 = none yet.
    pub latest: CachePadded<AtomicU64>,
    /// Futex word and sleeper count of the observers (bumped on commits while they sleep).
    pub observe: CachePadded<Waker>,
    /// [`END_OPEN`], [`END_DRAINED`] or [`END_FORCED`].
    pub end_state: AtomicU32,
    /// 1 while paused.
    pub paused: AtomicU32,
    /// Writers that must finish before an orderly end (set by the control from the setup).
    pub expected_writers: AtomicU32,
    /// Writers registered so far.
    pub writers_registered: AtomicU32,
    /// Writers whose process died while registered.
    pub writers_crashed: AtomicU32,
    /// Commits that are between their end check and their publication (written on every
    /// commit, so on a cache line of its own: readers spinning on the flags above must not
    /// steal the writer's line).
    pub inflight_commits: CachePadded<AtomicU32>,
    /// Events discarded while paused (starts the writers' statistics line).
    pub paused_count: CachePadded<AtomicU64>,
    /// Events overwritten by an `overwrite` buffer.
    pub overwritten: AtomicU64,
    /// Nanoseconds writers spent waiting for a free slot.
    pub wait_ns: AtomicU64,
    /// Nanoseconds between successive commits of each writer (the denominator of the dead time).
    pub elapsed_ns: AtomicU64,
    /// Sum of the `deadtime` fields of committed events, as f64 bits.
    pub deadtime_sum_bits: AtomicU64,
    /// Events lost because their reader died while holding them (starts the rare line).
    pub lost: CachePadded<AtomicU64>,
    /// Unix time in ns of the rate sample.
    pub rate_t_ns: AtomicU64,
    /// Event count at the rate sample.
    pub rate_count: AtomicU64,
    /// Rate (events/s, f64 bits) computed at the last sample.
    pub rate_bits: AtomicU64,
    /// Unix time in ns of the first commit (0 before it).
    pub first_commit_ns: AtomicU64,
}

/// Slot is in the empty queue.
pub const SLOT_FREE: u32 = 0;
/// A writer holds the slot.
pub const SLOT_WRITING: u32 = 1;
/// The slot is in the filled queue.
pub const SLOT_FILLED: u32 = 2;
/// A reader holds the slot.
pub const SLOT_READING: u32 = 3;

/// Ownership record of one slot.
#[repr(C)]
#[derive(Debug)]
pub struct SlotRecord {
    /// One of the `SLOT_*` states.
    pub state: AtomicU32,
    /// Process id of the holder while writing or reading (0 otherwise).
    pub holder: AtomicU32,
    /// Number of holders (1 today; reader groups will let several hold one slot).
    pub holders: AtomicU32,
    /// Reserved.
    pub reserved: AtomicU32,
    /// Padding to a cache line, so that a reader and a writer handling neighbouring slots do
    /// not share a line.
    pub pad: [u64; 4],
    /// Seqlock version: odd while a writer fills the slot, even when stable.
    pub version: AtomicU64,
    /// Commit sequence number of the event the slot holds.
    pub commit_seq: AtomicU64,
}

/// Registration is free.
pub const WRITER_FREE: u64 = 0;
/// Writer is registered and has not finished.
pub const WRITER_ACTIVE: u64 = 1;
/// Writer finished (sent its flush).
pub const WRITER_DONE: u64 = 2;
/// Writer's process died while registered.
pub const WRITER_CRASHED: u64 = 3;

/// One writer registration: `(pid << 32) | state`.
#[repr(C)]
#[derive(Debug)]
pub struct WriterEntry {
    /// Packed pid and state.
    pub word: AtomicU64,
}

/// Packs a writer entry.
#[must_use]
pub fn writer_word(pid: u32, state: u64) -> u64 {
    (u64::from(pid) << 32) | state
}

const _: () = assert!(std::mem::size_of::<Header>() % 8 == 0);
const _: () = assert!(std::mem::size_of::<SlotRecord>() == 64);
const _: () = assert!(std::mem::size_of::<WriterEntry>() == 8);
const _: () = assert!(METADATA_SIZE == 24);

/// Offsets of every part of a region with the given geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Number of slots.
    pub slot_count: u32,
    /// Token queue capacity.
    pub queue_capacity: u32,
    /// Data bytes per slot.
    pub data_size: u64,
    /// Slot stride.
    pub slot_stride: u64,
    /// See [`Header::off_state`].
    pub off_state: u64,
    /// See [`Header::off_empty`].
    pub off_empty: u64,
    /// See [`Header::off_filled`].
    pub off_filled: u64,
    /// See [`Header::off_records`].
    pub off_records: u64,
    /// See [`Header::off_writers`].
    pub off_writers: u64,
    /// See [`Header::off_slots`].
    pub off_slots: u64,
    /// See [`Header::total_size`].
    pub total_size: u64,
}

const fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Page size assumed for the start of the slot array.
pub const PAGE: u64 = 4096;

impl Geometry {
    /// Computes the layout for `slot_count` slots of `data_size` data bytes, or `None` when the
    /// sizes overflow.
    #[must_use]
    pub fn new(slot_count: u32, data_size: u64) -> Option<Geometry> {
        let queue_capacity = slot_count.checked_next_power_of_two()?.max(2);
        let slot_stride = align_up((METADATA_SIZE as u64).checked_add(data_size)?, SLOT_ALIGN);
        let queue_bytes = std::mem::size_of::<QueueHeader>() as u64
            + u64::from(queue_capacity) * std::mem::size_of::<QueueCell>() as u64;
        let off_state = align_up(std::mem::size_of::<Header>() as u64, 128);
        let off_empty = align_up(off_state + std::mem::size_of::<SharedState>() as u64, 128);
        let off_filled = align_up(off_empty + queue_bytes, 128);
        let off_records = align_up(off_filled + queue_bytes, 128);
        let off_writers = align_up(
            off_records + u64::from(slot_count) * std::mem::size_of::<SlotRecord>() as u64,
            128,
        );
        let off_slots = align_up(
            off_writers + (MAX_WRITERS * std::mem::size_of::<WriterEntry>()) as u64,
            PAGE,
        );
        let total_size = off_slots.checked_add(slot_stride.checked_mul(u64::from(slot_count))?)?;
        Some(Geometry {
            slot_count,
            queue_capacity,
            data_size,
            slot_stride,
            off_state,
            off_empty,
            off_filled,
            off_records,
            off_writers,
            off_slots,
            total_size: align_up(total_size, PAGE),
        })
    }

    /// Offset of slot `i` from the start of the region.
    #[must_use]
    pub fn slot_offset(&self, i: u32) -> u64 {
        self.off_slots + u64::from(i) * self.slot_stride
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_aligned_and_ordered() {
        let g = Geometry::new(5, 100).unwrap();
        assert_eq!(g.queue_capacity, 8);
        assert_eq!(g.slot_stride, 128);
        assert_eq!(g.off_slots % PAGE, 0);
        assert!(g.off_state < g.off_empty && g.off_empty < g.off_filled);
        assert!(g.off_filled < g.off_records && g.off_records < g.off_writers);
        assert!(g.off_writers < g.off_slots);
        assert!(g.total_size >= g.off_slots + 5 * 128);
        assert_eq!(g.slot_offset(2), g.off_slots + 256);
    }

    #[test]
    fn geometry_overflow_is_none() {
        assert!(Geometry::new(u32::MAX, u64::MAX / 2).is_none());
    }
}
