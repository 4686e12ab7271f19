//! The `#[repr(C)]` layout of one buffer's shared-memory region.
//!
//! ```text
//! [Header | SharedState | empty Fifo | filled Fifo | SlotRecord × n | writer RegEntry × W | reader RegEntry × R | slots]
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
use crate::token_queue::FifoHeader;
use crate::wait::Waker;

/// `b"MIMOCRB2"` as a little-endian integer.
pub const MAGIC: u64 = u64::from_le_bytes(*b"MIMOCRB2");
/// Version of this layout; bumped on every incompatible change.
pub const LAYOUT_VERSION: u32 = 3;
/// Longest buffer name in bytes.
pub const MAX_NAME: usize = 240;
/// Longest dtype description (JSON text) in bytes.
pub const MAX_DTYPE: usize = 8192;
/// Number of writer registrations a buffer can track.
pub const MAX_WRITERS: usize = 256;
/// Number of reader registrations a buffer can track.
pub const MAX_READERS: usize = 256;
/// Reader groups a buffer can have (`delivery: every_worker`; a competing buffer has one).
pub const MAX_GROUPS: usize = 16;
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
    /// [`DELIVERY_COMPETE`] or [`DELIVERY_EVERY_GROUP`].
    pub delivery: u32,
    /// Number of filled queues (1, or [`MAX_GROUPS`] for every-group delivery).
    pub group_queues: u32,
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
    /// Offset of the writer [`RegEntry`] array (the reader entries follow it).
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

/// Readers compete: every event goes to one reader (one group).
pub const DELIVERY_COMPETE: u32 = 0;
/// Every reader group receives every event; the readers of one group compete.
pub const DELIVERY_EVERY_GROUP: u32 = 1;

/// Group entry is free.
pub const GROUP_FREE: u64 = 0;
/// Group receives the events committed from now on.
pub const GROUP_ACTIVE: u64 = 1;
/// Group's worker ended: it holds nothing back any more.
pub const GROUP_ENDED: u64 = 2;

/// One reader group: its state, name and ledger counters. Its filled queue is the
/// `index`-th queue after the header.
#[repr(C)]
#[derive(Debug)]
pub struct GroupEntry {
    /// `GROUP_*` state.
    pub word: AtomicU64,
    /// FNV-1a hash of the name (the key).
    pub name_hash: AtomicU64,
    /// Length of the name in `name`.
    pub name_len: AtomicU64,
    /// The name (UTF-8, at most 32 bytes shown).
    pub name: [AtomicU64; 4],
    /// Events the group's readers released.
    pub consumed: AtomicU64,
    /// Events the group lost (its reader died holding them, or unread when it ended).
    pub lost: AtomicU64,
    /// Events overwritten before the group read them.
    pub overwritten: AtomicU64,
    /// Reserved.
    pub reserved: [AtomicU64; 6],
}

/// Buffer has not ended.
pub const END_OPEN: u32 = 0;
/// Every registered writer finished (orderly end).
pub const END_DRAINED: u32 = 1;
/// Shut down at once by a forced flush.
pub const END_FORCED: u32 = 2;

/// Indices of the event counters in [`SharedState::counters`]. Every counter that a protocol
/// step changes is set to an absolute value written in the [`Journal`] first, so replaying a
/// half-done step is harmless.
pub mod ctr {
    /// Committed events; also the commit sequence number of the newest event.
    pub const COMMITTED: usize = 0;
    /// Next event number handed out by a stamping commit.
    pub const NEXT_COUNTER: usize = 1;
    /// `(commit sequence << 24) | slot` of the most recent commit; 0 = none yet.
    pub const LATEST: usize = 2;
    /// Events a reader released after processing them (whatever it decided about them).
    pub const CONSUMED: usize = 3;
    /// Events overwritten by an `overwrite` buffer before anybody read them.
    pub const OVERWRITTEN: usize = 4;
    /// Events lost because the reader holding them died.
    pub const LOST_READER_CRASHED: usize = 5;
    /// Events still unread when the buffer was shut down with nobody left to read them.
    pub const LOST_UNREAD: usize = 6;
    /// Slots a writer held when it died or gave up (never committed, so no event of the ledger).
    pub const ABORTED_WRITES: usize = 7;
    /// Sum of the `deadtime` fields of committed events, as f64 bits.
    pub const DEADTIME_SUM: usize = 8;
    /// Unix time in ns of the first commit (0 before it).
    pub const FIRST_COMMIT_NS: usize = 9;
    /// Times the lock was taken over from a dead holder and the ring repaired.
    pub const REPAIRS: usize = 10;
    /// Number of counters.
    pub const COUNT: usize = 12;
}

/// Mutable state shared by all processes. Hot words sit on cache lines of their own.
#[repr(C)]
#[derive(Debug)]
pub struct SharedState {
    /// The ring lock: pid of the holder (0 = free), bit 31 set while someone sleeps on it.
    /// Every change of a slot's owner and of a queue happens under it (see `plock.rs`).
    pub lock: CachePadded<AtomicU32>,
    /// Event counters, indexed by the constants of [`ctr`].
    pub counters: CachePadded<[AtomicU64; ctr::COUNT]>,
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
    /// Process id of the supervisor that reclaims dead processes (0: none; then waiting
    /// endpoints reclaim dead processes themselves).
    pub supervisor_pid: AtomicU32,
    /// Bit mask of the active groups (a commit gives its events to these groups).
    pub active_groups: AtomicU32,
    /// Events discarded while paused (counted outside the lock: one atomic add).
    pub paused_count: CachePadded<AtomicU64>,
    /// Nanoseconds writers spent waiting for a free slot.
    pub wait_ns: AtomicU64,
    /// Nanoseconds between successive commits of each writer (the denominator of the dead time).
    pub elapsed_ns: AtomicU64,
    /// Unix time in ns of the rate sample.
    pub rate_t_ns: AtomicU64,
    /// Event count at the rate sample.
    pub rate_count: AtomicU64,
    /// Rate (events/s, f64 bits) computed at the last sample.
    pub rate_bits: AtomicU64,
    /// Redo record of the protocol step in progress.
    pub journal: CachePadded<Journal>,
    /// The reader groups.
    pub groups: [GroupEntry; MAX_GROUPS],
}

/// Slots one journalled step can change (larger batches take several steps).
pub const JOURNAL_SLOTS: usize = 64;
/// Words (counters) one journalled step can set.
pub const JOURNAL_WORDS: usize = 24;

/// Redo record of one protocol step, written under the ring lock before the step changes
/// anything: the new owner state of some slots and the new absolute values of some counters.
/// Applying it is idempotent, so whoever takes the lock over from a dead holder replays it
/// (roll forward) and rebuilds the queues from the slot records.
#[repr(C)]
#[derive(Debug)]
pub struct Journal {
    /// 1 while the record is valid (written last, cleared when the step is done).
    pub active: AtomicU32,
    /// Number of valid entries of `slots`.
    pub n_slots: AtomicU32,
    /// `SLOT_*` state the slots get.
    pub new_state: AtomicU32,
    /// Holder pid the slots get (writing, reading), 0 otherwise.
    pub new_holder: AtomicU32,
    /// Commit sequence number of the first slot (for `SLOT_FILLED`).
    pub seq0: AtomicU64,
    /// Number of valid entries of `word_id` / `word_val`.
    pub n_words: AtomicU32,
    /// Reader registration of the step (reads), else `u32::MAX`.
    pub reserved: AtomicU32,
    /// Group of the step (reads, releases, drops).
    pub group: AtomicU32,
    /// Group mask of a commit (the groups that get the events).
    pub mask: AtomicU32,
    /// Which word each entry sets (see `Ring::word`).
    pub word_id: [AtomicU32; JOURNAL_WORDS],
    /// The absolute value each entry sets.
    pub word_val: [AtomicU64; JOURNAL_WORDS],
    /// The slots.
    pub slots: [AtomicU32; JOURNAL_SLOTS],
}

/// Slot is in the empty queue.
pub const SLOT_FREE: u32 = 0;
/// A writer holds the slot.
pub const SLOT_WRITING: u32 = 1;
/// The slot is in the filled queue.
pub const SLOT_FILLED: u32 = 2;
/// A reader holds the slot.
pub const SLOT_READING: u32 = 3;

/// Journal step: group `g` takes filled slots (its reader holds them).
pub const STEP_READ: u32 = 10;
/// Journal step: group `g` releases slots; a slot no group needs any more becomes free.
pub const STEP_RELEASE: u32 = 11;
/// Journal step: group `g` gives up slots it has not read (group ended, overwritten, unread).
pub const STEP_UNPEND: u32 = 12;

/// Ownership record of one slot: the truth from which the queues can be rebuilt.
///
/// A written slot is `SLOT_WRITING` (held by `holder`). A committed slot is `SLOT_FILLED`
/// until every group in its masks has released it: `pending` has the groups that have not
/// taken it yet (it is in their filled queues), `reading` the groups whose reader holds it
/// (pid in `group_holder`, reader registration in `group_reg`). Then it is `SLOT_FREE`.
#[repr(C)]
#[derive(Debug)]
pub struct SlotRecord {
    /// One of the `SLOT_*` states.
    pub state: AtomicU32,
    /// Process id of the writer while writing (0 otherwise).
    pub holder: AtomicU32,
    /// Groups that still need the slot (`pending | reading`, counted), for diagnostics.
    pub holders: AtomicU32,
    /// Groups that have not taken the committed event yet.
    pub pending: AtomicU32,
    /// Groups whose reader holds the event.
    pub reading: AtomicU32,
    /// Reserved.
    pub reserved: AtomicU32,
    /// Seqlock version: odd while a writer fills the slot, even when stable.
    pub version: AtomicU64,
    /// Commit sequence number of the event the slot holds.
    pub commit_seq: AtomicU64,
    /// Reader pid per group (while the group reads the slot).
    pub group_holder: [AtomicU32; MAX_GROUPS],
    /// Reader registration per group (while the group reads the slot).
    pub group_reg: [AtomicU32; MAX_GROUPS],
    /// Padding to three cache lines.
    pub pad: [AtomicU64; 3],
}

/// Registration is free.
pub const REG_FREE: u64 = 0;
/// Endpoint is registered and has not finished.
pub const REG_ACTIVE: u64 = 1;
/// Endpoint finished (a writer sent its flush; a reader was closed).
pub const REG_DONE: u64 = 2;
/// Endpoint's process died while registered.
pub const REG_CRASHED: u64 = 3;
/// A writer's process died and will be restarted: neither active nor finished; its
/// replacement takes the registration over.
pub const REG_RESTARTING: u64 = 4;
/// Writer registration states (aliases kept for readability).
pub const WRITER_FREE: u64 = REG_FREE;
/// See [`REG_ACTIVE`].
pub const WRITER_ACTIVE: u64 = REG_ACTIVE;
/// See [`REG_DONE`].
pub const WRITER_DONE: u64 = REG_DONE;
/// See [`REG_CRASHED`].
pub const WRITER_CRASHED: u64 = REG_CRASHED;

/// One endpoint registration (writer or reader): packed pid and state, the worker tag of the
/// process and its event counters (they survive the process, for the run's ledger).
#[repr(C)]
#[derive(Debug)]
pub struct RegEntry {
    /// `(pid << 32) | state`.
    pub word: AtomicU64,
    /// Worker tag of the process (`MIMOCORB2_WORKER_TAG`, 0 when unset).
    pub tag: AtomicU64,
    /// Writer: events committed. Reader: events released (read to the end).
    pub events: AtomicU64,
    /// Reader: events released as filtered out.
    pub filtered: AtomicU64,
    /// Reader: events released as dropped (the worker's sink had ended).
    pub dropped: AtomicU64,
    /// Reader: events released as given up because the worker's function failed on them.
    pub failed: AtomicU64,
    /// Reader: its group.
    pub group: AtomicU64,
    /// Reader: slot + 1 of the event it forwards (0: none). The forwarding intent: written
    /// before the event is committed into another buffer, so that reclaim can tell a delivered
    /// event from a lost one.
    pub fwd_slot: AtomicU64,
    /// Instance id (first word) of the buffer the event is forwarded to.
    pub fwd_ring: AtomicU64,
    /// Writer registration in that buffer.
    pub fwd_reg: AtomicU64,
    /// The event counts as delivered once that registration's commit count reaches this.
    pub fwd_commits: AtomicU64,
    /// Reserved.
    pub reserved: [AtomicU64; 5],
}

/// Packs a registration word.
#[must_use]
pub fn writer_word(pid: u32, state: u64) -> u64 {
    (u64::from(pid) << 32) | state
}

const _: () = assert!(std::mem::size_of::<Header>() % 8 == 0);
const _: () = assert!(std::mem::size_of::<SlotRecord>() == 192);
const _: () = assert!(std::mem::size_of::<RegEntry>() == 128);
const _: () = assert!(std::mem::size_of::<GroupEntry>() == 128);
const _: () = assert!(METADATA_SIZE == 24);

/// Offsets of every part of a region with the given geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Number of slots.
    pub slot_count: u32,
    /// Token queue capacity.
    pub queue_capacity: u32,
    /// Number of filled queues (one per possible group).
    pub group_queues: u32,
    /// Bytes from one filled queue to the next.
    pub queue_stride: u64,
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
    pub fn new(slot_count: u32, data_size: u64, group_queues: u32) -> Option<Geometry> {
        let queue_capacity = slot_count.checked_next_power_of_two()?.max(2);
        let slot_stride = align_up((METADATA_SIZE as u64).checked_add(data_size)?, SLOT_ALIGN);
        let queue_bytes = std::mem::size_of::<FifoHeader>() as u64 + u64::from(queue_capacity) * 4;
        let off_state = align_up(std::mem::size_of::<Header>() as u64, 128);
        let off_empty = align_up(off_state + std::mem::size_of::<SharedState>() as u64, 128);
        let off_filled = align_up(off_empty + queue_bytes, 128);
        let queue_stride = align_up(queue_bytes, 128);
        let off_records = align_up(
            off_filled + queue_stride.checked_mul(u64::from(group_queues.max(1)))?,
            128,
        );
        let off_writers = align_up(
            off_records + u64::from(slot_count) * std::mem::size_of::<SlotRecord>() as u64,
            128,
        );
        let off_slots = align_up(
            off_writers + ((MAX_WRITERS + MAX_READERS) * std::mem::size_of::<RegEntry>()) as u64,
            PAGE,
        );
        let total_size = off_slots.checked_add(slot_stride.checked_mul(u64::from(slot_count))?)?;
        Some(Geometry {
            slot_count,
            queue_capacity,
            group_queues: group_queues.max(1),
            queue_stride,
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
        let g = Geometry::new(5, 100, 1).unwrap();
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
        assert!(Geometry::new(u32::MAX, u64::MAX / 2, 1).is_none());
    }
}
