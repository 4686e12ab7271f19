//! A consistent snapshot of a buffer's statistics.
#![forbid(unsafe_code)]

/// Statistics of one buffer at one moment. Every process computes the same numbers from the
/// shared counters: the rate comes from a sample shared in the region, not from the caller's
/// previous call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Committed events.
    pub event_count: u64,
    /// Number of slots.
    pub slot_count: u32,
    /// Slots in the filled queue.
    pub filled_slots: u32,
    /// Slots in the empty queue.
    pub empty_slots: u32,
    /// Events per second over the last sample window (≥ 0.5 s).
    pub rate: f64,
    /// Summed waiting time over summed time between commits (0..1) since creation.
    pub wait_deadtime: f64,
    /// Mean of the `deadtime` metadata fields of the committed events.
    pub mean_event_deadtime: f64,
    /// Events discarded while paused.
    pub paused_count: u64,
    /// True while paused.
    pub paused: bool,
    /// True once the buffer has ended (flushed), orderly or forced.
    pub flushed: bool,
    /// True when the end was forced.
    pub forced: bool,
    /// Events overwritten (overwrite buffers).
    pub overwritten: u64,
    /// Events lost, every reason together (`lost_reader_crashed + lost_unread`).
    pub lost: u64,
    /// Writers registered and not yet finished.
    pub active_writers: u32,
    /// Writers whose process died while registered.
    pub crashed_writers: u32,
    /// Events released by readers after processing (whatever they decided about them).
    pub consumed: u64,
    /// Events lost because the reader holding them died.
    pub lost_reader_crashed: u64,
    /// Events unread when the buffer was shut down with nobody left to read them.
    pub lost_unread: u64,
    /// Slots a writer held when it died or gave up (never committed).
    pub aborted_writes: u64,
    /// Times the ring was repaired after a process died inside a protocol step.
    pub repairs: u64,
    /// Slots held by writers or readers right now.
    pub held_slots: u32,
}

/// One slot record as [`Audit`] reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotView {
    /// `SLOT_*` state (see `layout.rs`).
    pub state: u32,
    /// Holder pid while writing or reading, else 0.
    pub holder: u32,
    /// Commit sequence number of the event the slot holds.
    pub commit_seq: u64,
    /// Forwarding intent (`INTENT_*`).
    pub intent: u32,
    /// Committed slot: groups that have not taken the event yet (bit per group).
    pub pending: u32,
    /// Committed slot: groups whose reader holds the event (bit per group).
    pub reading: u32,
    /// Committed slot: the reader pid of each group in `reading` (0 for the others).
    pub group_holders: [u32; crate::layout::MAX_GROUPS],
}

/// The state of the slot protocol at one moment, for consistency checks (tests, diagnostics).
/// Read without the ring lock: only consistent while no live process changes the buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Pid holding the ring lock, 0 when free.
    pub lock_holder: u32,
    /// True while a journalled step is under way (or was left half done by a dead process).
    pub journal_active: bool,
    /// Tokens of the free-slot queue, oldest first.
    pub empty: Vec<u32>,
    /// Tokens of the filled queue, oldest first.
    pub filled: Vec<u32>,
    /// Every slot record, by slot index.
    pub slots: Vec<SlotView>,
}
