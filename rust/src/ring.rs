//! The slot ring: one shared region holding the header, the two token queues, the per-slot
//! ownership records, the writer registrations and the slots themselves.
//!
//! Token protocol:
//! - a writer pops a token from the *empty* queue (or, on an `overwrite` buffer with no free
//!   slot, the oldest token of the *filled* queue), fills the slot and pushes it to *filled*;
//! - a reader pops from *filled* and pushes back to *empty* when done;
//! - an observer never takes a token: it copies the most recent committed slot under the slot's
//!   seqlock version and retries if a writer reused the slot meanwhile.
//!
//! Ending: every writer registers; the buffer ends in order when every registered writer has
//! finished (and at least `expected_writers` did), or at once when forced. Readers drain every
//! committed event before they see the end. A write after the end is refused with
//! [`Error::BufferEnded`].
//!
//! Every slot held by a process records the holder's pid so that [`Ring::reclaim`] can return
//! the slots of a dead process.

use std::sync::Arc;
use std::time::Instant;

use crate::clock::{now_ns, pid};
use crate::error::{Error, Result};
use crate::layout::{
    Geometry, Header, SharedState, SlotRecord, WriterEntry, END_FORCED, END_OPEN, LAYOUT_VERSION,
    MAGIC, MAX_DTYPE, MAX_NAME, MAX_SLOTS, MAX_WRITERS, SLOT_FILLED, SLOT_FREE, SLOT_READING,
    SLOT_WRITING,
};
use crate::metadata::{SlotMetadata, METADATA_SIZE};
use crate::shm::Mapping;
use crate::sync::{fence, AtomicU64, Ordering};
use crate::token_queue::{QueueCell, QueueHeader, TokenQueue};
use crate::wait::{wait_until, wake};

/// Bits of the slot index in the `latest` word (the rest holds the commit sequence modulo 2^40,
/// compared with wrap-around arithmetic, so the word never overflows).
pub(crate) const SLOT_BITS: u32 = 24;
pub(crate) const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
pub(crate) const SEQ_MASK: u64 = (1 << (64 - SLOT_BITS)) - 1;
const _: () = assert!(MAX_SLOTS as u64 <= SLOT_MASK);

/// Index used for the process-local discard slot handed out while paused.
pub const TRASH: u32 = u32::MAX;

/// One buffer's shared region, mapped in this process.
#[derive(Debug)]
pub struct Ring {
    map: Arc<Mapping>,
    geo: Geometry,
    base: *mut u8,
    name: String,
    dtype: String,
}

// SAFETY: `base` points into `map`, which `Ring` keeps alive; all shared state is accessed
// through atomics or under the slot-ownership protocol, so handing a `Ring` to another thread
// is sound.
unsafe impl Send for Ring {}
// SAFETY: as above; `Ring` has no interior state outside the shared region.
unsafe impl Sync for Ring {}

fn random_id() -> [u64; 2] {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut a = RandomState::new().build_hasher();
    a.write_u64(now_ns());
    a.write_u32(pid());
    let mut b = RandomState::new().build_hasher();
    b.write_u64(a.finish());
    [a.finish(), b.finish()]
}

/// Result of [`Ring::try_acquire_write`] and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A real slot, now held by this process.
    Slot(u32),
    /// The buffer is paused: write into the local discard slot.
    Trash,
}

impl Ring {
    /// Creates a new buffer.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad geometry, name or dtype description;
    /// [`Error::SharedMemory`] when the memory cannot be reserved.
    pub fn create(
        name: &str,
        slot_count: u32,
        data_size: u64,
        dtype: &str,
        overwrite: bool,
    ) -> Result<Ring> {
        if slot_count == 0 || slot_count > MAX_SLOTS {
            return Err(Error::InvalidArgument(format!(
                "buffer '{name}': slot_count must be between 1 and {MAX_SLOTS}, got {slot_count}"
            )));
        }
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(Error::InvalidArgument(format!(
                "buffer name must have 1 to {MAX_NAME} bytes, got {}",
                name.len()
            )));
        }
        if dtype.len() > MAX_DTYPE {
            return Err(Error::InvalidArgument(format!(
                "buffer '{name}': dtype description longer than {MAX_DTYPE} bytes"
            )));
        }
        let geo = Geometry::new(slot_count, data_size).ok_or_else(|| {
            Error::InvalidArgument(format!("buffer '{name}': slot size overflows"))
        })?;
        let len = usize::try_from(geo.total_size)
            .map_err(|_| Error::InvalidArgument(format!("buffer '{name}' is too large")))?;
        let map = Arc::new(Mapping::create(name, len)?);
        let base = map.as_ptr();
        // SAFETY: the region is fresh, zero-filled, at least `geo.total_size` bytes, page
        // aligned, and no other process can see it yet, so this exclusive write is the only
        // access; `Header` is plain old data.
        #[allow(clippy::cast_ptr_alignment)]
        let hdr = unsafe { &mut *base.cast::<Header>() };
        hdr.magic = MAGIC;
        hdr.layout_version = LAYOUT_VERSION;
        hdr.header_size = std::mem::size_of::<Header>() as u32;
        hdr.instance_id = random_id();
        hdr.slot_count = slot_count;
        hdr.queue_capacity = geo.queue_capacity;
        hdr.slot_stride = geo.slot_stride;
        hdr.data_size = data_size;
        hdr.overwrite = u32::from(overwrite);
        hdr.creator_pid = pid();
        hdr.off_state = geo.off_state;
        hdr.off_empty = geo.off_empty;
        hdr.off_filled = geo.off_filled;
        hdr.off_records = geo.off_records;
        hdr.off_writers = geo.off_writers;
        hdr.off_slots = geo.off_slots;
        hdr.total_size = geo.total_size;
        hdr.name_len = name.len() as u32;
        hdr.name[..name.len()].copy_from_slice(name.as_bytes());
        hdr.dtype_len = dtype.len() as u32;
        hdr.dtype[..dtype.len()].copy_from_slice(dtype.as_bytes());
        let ring = Ring {
            map,
            geo,
            base,
            name: name.to_owned(),
            dtype: dtype.to_owned(),
        };
        ring.empty().init();
        ring.filled().init();
        let all: Vec<u32> = (0..slot_count).collect();
        ring.empty().push_batch(&all);
        fence(Ordering::SeqCst);
        Ok(ring)
    }

    /// Attaches to the buffer that process `pid` created and holds as descriptor `fd`.
    /// `instance` (from [`Ring::instance_id`]) guards against a reused descriptor number.
    ///
    /// # Errors
    /// [`Error::SharedMemory`] if it cannot be opened; [`Error::LayoutMismatch`] if it is not a
    /// mimocorb2 buffer of this layout version or not the expected instance.
    pub fn attach(pid: u32, fd: i32, instance: Option<[u64; 2]>) -> Result<Ring> {
        let map = Arc::new(Mapping::attach(pid, fd, &format!("fd {fd} of pid {pid}"))?);
        Self::from_mapping(map, instance)
    }

    /// Builds a second handle over the same mapping (as a forked child or another thread sees it).
    ///
    /// # Errors
    /// Never in practice; shares the checks of [`Ring::attach`].
    pub fn share(&self) -> Result<Ring> {
        Self::from_mapping(self.map.clone(), Some(self.instance_id()))
    }

    fn from_mapping(map: Arc<Mapping>, instance: Option<[u64; 2]>) -> Result<Ring> {
        let base = map.as_ptr();
        if map.len() < std::mem::size_of::<Header>() {
            return Err(Error::LayoutMismatch(
                "region too small for a mimocorb2 header".into(),
            ));
        }
        // SAFETY: the mapping holds at least a `Header`, page aligned; the creator wrote the
        // header before the region became reachable and never changes it afterwards.
        #[allow(clippy::cast_ptr_alignment)]
        let hdr = unsafe { &*base.cast::<Header>() };
        if hdr.magic != MAGIC {
            return Err(Error::LayoutMismatch(
                "not a mimocorb2 buffer (bad magic)".into(),
            ));
        }
        if hdr.layout_version != LAYOUT_VERSION
            || hdr.header_size as usize != std::mem::size_of::<Header>()
        {
            return Err(Error::LayoutMismatch(format!(
                "buffer layout version {} (header {} bytes) but this mimocorb2 uses version {} \
                 ({} bytes): run every process with the same mimocorb2",
                hdr.layout_version,
                hdr.header_size,
                LAYOUT_VERSION,
                std::mem::size_of::<Header>()
            )));
        }
        if let Some(id) = instance {
            if hdr.instance_id != id {
                return Err(Error::LayoutMismatch(
                    "the descriptor now refers to a different buffer instance".into(),
                ));
            }
        }
        let geo = Geometry::new(hdr.slot_count, hdr.data_size)
            .ok_or_else(|| Error::LayoutMismatch("corrupt geometry".into()))?;
        let consistent = geo.total_size == hdr.total_size
            && geo.off_slots == hdr.off_slots
            && geo.off_state == hdr.off_state
            && geo.off_empty == hdr.off_empty
            && geo.off_filled == hdr.off_filled
            && geo.off_records == hdr.off_records
            && geo.off_writers == hdr.off_writers
            && geo.slot_stride == hdr.slot_stride
            && geo.total_size as usize <= map.len()
            && hdr.name_len as usize <= MAX_NAME
            && hdr.dtype_len as usize <= MAX_DTYPE;
        if !consistent {
            return Err(Error::LayoutMismatch(
                "header geometry is inconsistent".into(),
            ));
        }
        let name = String::from_utf8_lossy(&hdr.name[..hdr.name_len as usize]).into_owned();
        let dtype = String::from_utf8_lossy(&hdr.dtype[..hdr.dtype_len as usize]).into_owned();
        Ok(Ring {
            map,
            geo,
            base,
            name,
            dtype,
        })
    }

    // ----- accessors of the shared region -----

    /// `count` values of type `T` at byte offset `off` of the region.
    ///
    /// Only used with the offsets of the checked [`Geometry`] and with types made of atomics
    /// (or the immutable [`Header`]), which are valid for any bit pattern, including the
    /// initial zeros of a fresh region.
    fn slice_at<T>(&self, off: u64, count: usize) -> &[T] {
        let end = off as usize + count * std::mem::size_of::<T>();
        assert!(end <= self.map.len(), "layout offset outside the region");
        // SAFETY: (1) in bounds: asserted above; (2) aligned: the mapping is page aligned and
        // every layout offset is aligned for its type (`Geometry::new`); (3) valid: the types
        // are atomics or the header written before the region became reachable; (4) lifetime:
        // the mapping lives as long as `self`.
        #[allow(clippy::cast_ptr_alignment)]
        let ptr = unsafe { self.base.add(off as usize) }
            .cast::<T>()
            .cast_const();
        debug_assert!(ptr.is_aligned());
        // SAFETY: see above; shared references only, all mutation goes through atomics.
        unsafe { std::slice::from_raw_parts(ptr, count) }
    }

    pub(crate) fn header(&self) -> &Header {
        &self.slice_at::<Header>(0, 1)[0]
    }

    pub(crate) fn state(&self) -> &SharedState {
        &self.slice_at::<SharedState>(self.geo.off_state, 1)[0]
    }

    fn queue_at(&self, off: u64) -> TokenQueue<'_> {
        let cap = self.geo.queue_capacity as usize;
        let hdr = &self.slice_at::<QueueHeader>(off, 1)[0];
        let cells =
            self.slice_at::<QueueCell>(off + std::mem::size_of::<QueueHeader>() as u64, cap);
        TokenQueue::new(hdr, cells)
    }

    /// The queue of free slots.
    #[must_use]
    pub fn empty(&self) -> TokenQueue<'_> {
        self.queue_at(self.geo.off_empty)
    }

    /// The queue of committed slots.
    #[must_use]
    pub fn filled(&self) -> TokenQueue<'_> {
        self.queue_at(self.geo.off_filled)
    }

    pub(crate) fn records(&self) -> &[SlotRecord] {
        self.slice_at(self.geo.off_records, self.geo.slot_count as usize)
    }

    pub(crate) fn writers(&self) -> &[WriterEntry] {
        self.slice_at(self.geo.off_writers, MAX_WRITERS)
    }

    pub(crate) fn record(&self, slot: u32) -> Result<&SlotRecord> {
        self.records()
            .get(slot as usize)
            .ok_or_else(|| Error::SlotReleased(format!("no slot {slot} in buffer '{}'", self.name)))
    }

    /// Pointer to the first byte (the metadata) of `slot`. The caller must hold the slot (or be
    /// an observer that validates its copy) before touching the bytes.
    #[must_use]
    pub fn slot_ptr(&self, slot: u32) -> *mut u8 {
        debug_assert!(slot < self.geo.slot_count);
        // SAFETY: `slot < slot_count` for every caller (tokens are slot indices), so the offset
        // stays inside the region.
        unsafe { self.base.add(self.geo.slot_offset(slot) as usize) }
    }

    /// Start of the whole region and its length (for the zero-copy Python views).
    #[must_use]
    pub fn region(&self) -> (*mut u8, usize) {
        (self.base, self.map.len())
    }

    /// Keeps the mapping alive for as long as the returned handle lives.
    #[must_use]
    pub fn mapping(&self) -> Arc<Mapping> {
        self.map.clone()
    }

    // ----- geometry -----

    /// Buffer name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The dtype description stored by the creator.
    #[must_use]
    pub fn dtype(&self) -> &str {
        &self.dtype
    }
    /// Layout of the region.
    #[must_use]
    pub fn geometry(&self) -> Geometry {
        self.geo
    }
    /// Number of slots.
    #[must_use]
    pub fn slot_count(&self) -> u32 {
        self.geo.slot_count
    }
    /// Data bytes per slot.
    #[must_use]
    pub fn data_size(&self) -> usize {
        self.geo.data_size as usize
    }
    /// Whether a full buffer overwrites its oldest event.
    #[must_use]
    pub fn overwrite(&self) -> bool {
        self.header().overwrite != 0
    }
    /// Identity of this buffer instance.
    #[must_use]
    pub fn instance_id(&self) -> [u64; 2] {
        self.header().instance_id
    }
    /// Process that created the buffer.
    #[must_use]
    pub fn creator_pid(&self) -> u32 {
        self.header().creator_pid
    }
    /// Descriptor of the memfd in this process.
    #[must_use]
    pub fn raw_fd(&self) -> i32 {
        self.map.raw_fd()
    }

    // ----- writing -----

    pub(crate) fn take_free(&self) -> Option<u32> {
        if let Some(s) = self.empty().pop() {
            return Some(s);
        }
        if self.overwrite() {
            if let Some(s) = self.filled().pop() {
                self.state().overwritten.fetch_add(1, Ordering::Relaxed);
                return Some(s);
            }
        }
        None
    }

    pub(crate) fn mark_writing(&self, slot: u32, holder: u32) {
        let rec = &self.records()[slot as usize];
        rec.holder.store(holder, Ordering::Relaxed);
        rec.holders.store(1, Ordering::Relaxed);
        rec.state.store(SLOT_WRITING, Ordering::Relaxed);
        // Seqlock: odd version while the slot is being filled.
        rec.version.fetch_add(1, Ordering::Relaxed);
        // SYNC POINT: the odd version is visible before any byte of the slot changes; pairs
        // with the observer's Acquire fence before its second version load.
        fence(Ordering::Release);
    }

    /// Takes a slot for writing without blocking: `Ok(None)` when none is free.
    ///
    /// # Errors
    /// [`Error::BufferEnded`] after the end.
    pub fn try_acquire_write(&self) -> Result<Option<Grant>> {
        let st = self.state();
        if st.end_state.load(Ordering::Acquire) != END_OPEN {
            return Err(self.ended_msg());
        }
        if st.paused.load(Ordering::Relaxed) != 0 {
            return Ok(Some(Grant::Trash));
        }
        Ok(self.take_free().map(|s| {
            self.mark_writing(s, pid());
            Grant::Slot(s)
        }))
    }

    /// Takes a slot for writing, waiting until `deadline` (`None`: no limit).
    ///
    /// # Errors
    /// [`Error::BufferEnded`] after the end (also when it ends during the wait);
    /// [`Error::Timeout`] when the deadline passes.
    pub fn acquire_write(&self, deadline: Option<Instant>) -> Result<Grant> {
        if let Some(g) = self.try_acquire_write()? {
            return Ok(g);
        }
        let r = wait_until(self.empty().waker(), deadline, || {
            match self.try_acquire_write() {
                Ok(Some(g)) => Some(Ok(g)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        });
        r.unwrap_or_else(|| {
            Err(Error::Timeout(format!(
                "no free slot in buffer '{}' in time",
                self.name
            )))
        })
    }

    pub(crate) fn check_held(&self, slot: u32, want: u32) -> Result<&SlotRecord> {
        let rec = self.record(slot)?;
        if rec.state.load(Ordering::Relaxed) != want {
            return Err(Error::SlotReleased(format!(
                "slot {slot} of buffer '{}' is not held any more (already committed or released)",
                self.name
            )));
        }
        Ok(rec)
    }

    /// Publishes a written slot. With `stamp`, the metadata is filled in first (counter,
    /// timestamp, the given deadtime). A commit of [`TRASH`] counts a discarded event.
    ///
    /// # Errors
    /// [`Error::BufferEnded`] if the buffer was force-ended meanwhile (the slot is returned
    /// unpublished); [`Error::SlotReleased`] for a slot this process does not hold.
    pub fn commit(&self, slot: u32, stamp: Option<f64>) -> Result<()> {
        self.commit_many(&[slot], stamp.map(|d| (d, now_ns())))
    }

    /// Publishes several written slots at once (one queue claim, one wake-up).
    ///
    /// # Errors
    /// As [`Ring::commit`].
    pub fn commit_many(&self, slots: &[u32], stamp: Option<(f64, u64)>) -> Result<()> {
        let st = self.state();
        if slots.first() == Some(&TRASH) {
            st.paused_count
                .fetch_add(slots.len() as u64, Ordering::Relaxed);
            if stamp.is_some() {
                st.next_counter
                    .fetch_add(slots.len() as u64, Ordering::Relaxed);
            }
            return Ok(());
        }
        for &s in slots {
            self.check_held(s, SLOT_WRITING)?;
        }
        st.inflight_commits.fetch_add(1, Ordering::SeqCst);
        if st.end_state.load(Ordering::SeqCst) == END_FORCED {
            st.inflight_commits.fetch_sub(1, Ordering::SeqCst);
            for &s in slots {
                self.abort(s)?;
            }
            return Err(self.ended_msg());
        }
        let n = slots.len() as u64;
        let first_counter = stamp.map(|_| st.next_counter.fetch_add(n, Ordering::Relaxed));
        let mut dt_sum = 0.0;
        for (i, &s) in slots.iter().enumerate() {
            let p = self.slot_ptr(s);
            if let (Some((deadtime, t_ns)), Some(c0)) = (stamp, first_counter) {
                let md = SlotMetadata {
                    counter: (c0 + i as u64) as i64,
                    timestamp: t_ns as f64 * 1e-9,
                    deadtime,
                };
                write_meta(p, &md);
                dt_sum += deadtime;
            } else {
                dt_sum += read_meta(p).deadtime;
            }
        }
        let seq0 = st.event_count.fetch_add(n, Ordering::Relaxed) + 1;
        for (i, &s) in slots.iter().enumerate() {
            let rec = &self.records()[s as usize];
            rec.commit_seq.store(seq0 + i as u64, Ordering::Relaxed);
            rec.holder.store(0, Ordering::Relaxed);
            rec.holders.store(0, Ordering::Relaxed);
            rec.state.store(SLOT_FILLED, Ordering::Relaxed);
            // SYNC POINT: even version (Release) marks the slot stable for observers.
            rec.version.fetch_add(1, Ordering::Release);
        }
        if !self.filled().push_all(slots) {
            st.inflight_commits.fetch_sub(1, Ordering::SeqCst);
            st.lost.fetch_add(n, Ordering::Relaxed);
            return Err(self.stuck_msg());
        }
        if let Some(&last) = slots.last() {
            let seq = seq0 + n - 1;
            // SYNC POINT: Release publishes the record updates to observers loading `latest`.
            st.latest.store(
                ((seq & SEQ_MASK) << SLOT_BITS) | u64::from(last),
                Ordering::Release,
            );
        }
        add_f64(&st.deadtime_sum_bits, dt_sum);
        if st.first_commit_ns.load(Ordering::Relaxed) == 0 {
            let _ = st.first_commit_ns.compare_exchange(
                0,
                now_ns(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        st.inflight_commits.fetch_sub(1, Ordering::SeqCst);
        // One fence for both wake-ups.
        fence(Ordering::SeqCst);
        let filled = self.filled();
        if filled.waker().waiters.load(Ordering::Relaxed) != 0 {
            filled.notify();
        }
        if st.observe.waiters.load(Ordering::Relaxed) != 0 {
            wake(&st.observe, u32::MAX);
        }
        Ok(())
    }

    /// Returns a slot taken for writing without publishing it.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] for a slot this process does not hold.
    pub fn abort(&self, slot: u32) -> Result<()> {
        if slot == TRASH {
            return Ok(());
        }
        let rec = self.check_held(slot, SLOT_WRITING)?;
        self.free_slot(rec, slot);
        Ok(())
    }

    pub(crate) fn free_slot(&self, rec: &SlotRecord, slot: u32) {
        rec.holder.store(0, Ordering::Relaxed);
        rec.holders.store(0, Ordering::Relaxed);
        if rec.version.load(Ordering::Relaxed) % 2 == 1 {
            rec.version.fetch_add(1, Ordering::Release);
        }
        rec.state.store(SLOT_FREE, Ordering::Relaxed);
        if !self.empty().push_all(&[slot]) {
            self.state().lost.fetch_add(1, Ordering::Relaxed);
        }
        self.empty().notify();
    }

    pub(crate) fn stuck_msg(&self) -> Error {
        Error::SharedMemory(format!(
            "a token queue of buffer '{}' is stuck: a process was killed in the middle of a \
             queue operation; the buffer cannot be used any more",
            self.name
        ))
    }

    /// Records the wait of a writer (for the buffer's dead-time statistics).
    pub fn account_writer_time(&self, wait_ns: u64, elapsed_ns: u64) {
        let st = self.state();
        st.wait_ns.fetch_add(wait_ns, Ordering::Relaxed);
        st.elapsed_ns.fetch_add(elapsed_ns, Ordering::Relaxed);
    }

    // ----- reading -----

    pub(crate) fn end_reached(&self) -> bool {
        let st = self.state();
        st.end_state.load(Ordering::SeqCst) != END_OPEN
            && st.inflight_commits.load(Ordering::SeqCst) == 0
    }

    /// Takes a committed slot without blocking: `Ok(Some(Some(slot)))`, `Ok(Some(None))` at
    /// the end of the stream, `Ok(None)` when nothing is there yet.
    ///
    /// # Errors
    /// None today; reserved.
    pub fn try_acquire_read(&self) -> Result<Option<Option<u32>>> {
        if let Some(s) = self.filled().pop() {
            self.mark_reading(s);
            return Ok(Some(Some(s)));
        }
        if self.end_reached() {
            if let Some(s) = self.filled().pop() {
                self.mark_reading(s);
                return Ok(Some(Some(s)));
            }
            return Ok(Some(None));
        }
        Ok(None)
    }

    pub(crate) fn mark_reading(&self, slot: u32) {
        let rec = &self.records()[slot as usize];
        rec.holder.store(pid(), Ordering::Relaxed);
        rec.holders.store(1, Ordering::Relaxed);
        rec.state.store(SLOT_READING, Ordering::Relaxed);
    }

    /// Takes the oldest committed slot, waiting until `deadline`; `Ok(None)` at the end of the
    /// stream (after every committed event was delivered).
    ///
    /// # Errors
    /// [`Error::Timeout`] when the deadline passes.
    pub fn acquire_read(&self, deadline: Option<Instant>) -> Result<Option<u32>> {
        if let Some(r) = self.try_acquire_read()? {
            return Ok(r);
        }
        wait_until(self.filled().waker(), deadline, || {
            self.try_acquire_read().ok().flatten()
        })
        .ok_or_else(|| Error::Timeout(format!("no event in buffer '{}' in time", self.name)))
    }

    /// Gives a read slot back to the writers.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] for a slot this process does not hold.
    pub fn release(&self, slot: u32) -> Result<()> {
        let rec = self.check_held(slot, SLOT_READING)?;
        self.free_slot(rec, slot);
        Ok(())
    }

    /// Copies metadata + data of `slot` into `dst` (which must have that length).
    pub fn copy_out(&self, slot: u32, dst: &mut [u8]) {
        let n = (METADATA_SIZE + self.data_size()).min(dst.len());
        // SAFETY: the slot holds at least `METADATA_SIZE + data_size` bytes inside the mapping,
        // `dst` is a distinct local buffer of at least `n` bytes. Concurrent writes by a writer
        // reusing the slot can only occur for observers, which validate the copy with the seqlock
        // version and discard it if it may be torn.
        unsafe { std::ptr::copy_nonoverlapping(self.slot_ptr(slot), dst.as_mut_ptr(), n) };
    }

    /// Copies `src` (metadata + data, or only data when `src` is shorter) into `slot`.
    pub fn copy_in(&self, slot: u32, src: &[u8], with_meta: bool) {
        let (off, max) = if with_meta {
            (0, METADATA_SIZE + self.data_size())
        } else {
            (METADATA_SIZE, self.data_size())
        };
        let n = src.len().min(max);
        let dst = self.slot_ptr(slot).wrapping_add(off);
        // SAFETY: this process holds `slot` for writing (callers acquired it), so nobody else
        // writes it; `off + n` stays inside the slot; `src` is a distinct buffer.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, n) };
    }
}

fn add_f64(cell: &AtomicU64, x: f64) {
    if x == 0.0 {
        return;
    }
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
        Some((f64::from_bits(b) + x).to_bits())
    });
}

fn write_meta(p: *mut u8, md: &SlotMetadata) {
    let bytes = md.to_bytes();
    // SAFETY: `p` is the start of a slot held for writing by this process; a slot has at least
    // `METADATA_SIZE` bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, METADATA_SIZE) };
}

fn read_meta(p: *const u8) -> SlotMetadata {
    let mut bytes = [0u8; METADATA_SIZE];
    // SAFETY: `p` is the start of a slot held by this process; a slot has at least
    // `METADATA_SIZE` bytes.
    unsafe { std::ptr::copy_nonoverlapping(p, bytes.as_mut_ptr(), METADATA_SIZE) };
    SlotMetadata::from_bytes(&bytes)
}
