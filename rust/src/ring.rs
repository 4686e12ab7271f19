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

use crate::clock::{now_ns, pid};
use crate::error::{Error, Result};
use crate::layout::{
    Geometry, Header, RegEntry, SharedState, SlotRecord, DELIVERY_COMPETE, DELIVERY_EVERY_GROUP,
    GROUP_ACTIVE, LAYOUT_VERSION, MAGIC, MAX_DTYPE, MAX_GROUPS, MAX_NAME, MAX_READERS, MAX_SLOTS,
    MAX_WRITERS,
};
use crate::metadata::{SlotMetadata, METADATA_SIZE};
use crate::shm::Mapping;
use crate::sync::{fence, AtomicU32, Ordering};
use crate::token_queue::{Fifo, FifoHeader};

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
        Self::create_with(
            name,
            slot_count,
            data_size,
            dtype,
            overwrite,
            DELIVERY_COMPETE,
        )
    }

    /// Creates a new buffer with the given delivery ([`DELIVERY_COMPETE`]: readers compete;
    /// [`DELIVERY_EVERY_GROUP`]: every reader group receives every event).
    ///
    /// # Errors
    /// As [`Ring::create`].
    pub fn create_with(
        name: &str,
        slot_count: u32,
        data_size: u64,
        dtype: &str,
        overwrite: bool,
        delivery: u32,
    ) -> Result<Ring> {
        let every = delivery == DELIVERY_EVERY_GROUP;
        let group_queues = if every { MAX_GROUPS as u32 } else { 1 };
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
        let geo = Geometry::new(slot_count, data_size, group_queues).ok_or_else(|| {
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
        hdr.delivery = u32::from(every);
        hdr.group_queues = group_queues;
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
        for s in 0..slot_count {
            ring.empty().push(s);
        }
        if !every {
            // The one group of a competing buffer: every reader is in it.
            ring.state().groups[0]
                .word
                .store(GROUP_ACTIVE, Ordering::Relaxed);
            ring.state().active_groups.store(1, Ordering::Relaxed);
        }
        crate::registry::remember(ring.instance_id()[0], &ring.map);
        // SYNC POINT: the initialised header, queues and group words are published before the
        // ring's descriptor is handed to any other process or thread (they attach afterwards and
        // read them with Acquire loads of the header).
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

    /// A handle over a mapping of this process (for the registry).
    pub(crate) fn from_shared(map: Arc<Mapping>) -> Result<Ring> {
        Self::from_mapping(map, None)
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
        let geo = Geometry::new(hdr.slot_count, hdr.data_size, hdr.group_queues)
            .ok_or_else(|| Error::LayoutMismatch("corrupt geometry".into()))?;
        let consistent = geo.total_size == hdr.total_size
            && geo.off_slots == hdr.off_slots
            && geo.off_state == hdr.off_state
            && geo.off_empty == hdr.off_empty
            && geo.off_filled == hdr.off_filled
            && geo.off_records == hdr.off_records
            && geo.off_writers == hdr.off_writers
            && (hdr.group_queues == 1 || hdr.group_queues == MAX_GROUPS as u32)
            && geo.slot_stride == hdr.slot_stride
            && geo.total_size as usize <= map.len()
            && hdr.name_len as usize <= MAX_NAME
            && hdr.dtype_len as usize <= MAX_DTYPE;
        if !consistent {
            return Err(Error::LayoutMismatch(
                "header geometry is inconsistent".into(),
            ));
        }
        crate::registry::remember(hdr.instance_id[0], &map);
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

    fn queue_at(&self, off: u64) -> Fifo<'_> {
        let cap = self.geo.queue_capacity as usize;
        let hdr = &self.slice_at::<FifoHeader>(off, 1)[0];
        let cells = self.slice_at::<AtomicU32>(off + std::mem::size_of::<FifoHeader>() as u64, cap);
        Fifo::new(hdr, cells)
    }

    /// The queue of free slots (changed only under the ring lock).
    #[must_use]
    pub fn empty(&self) -> Fifo<'_> {
        self.queue_at(self.geo.off_empty)
    }

    /// The filled queue of group 0 (the only group of a competing buffer).
    #[must_use]
    pub fn filled(&self) -> Fifo<'_> {
        self.filled_of(0)
    }

    /// The queue of committed slots group `g` has not taken yet (changed only under the ring
    /// lock). `g` is clamped to the buffer's groups.
    #[must_use]
    pub fn filled_of(&self, g: usize) -> Fifo<'_> {
        let g = (g as u64).min(u64::from(self.geo.group_queues) - 1);
        self.queue_at(self.geo.off_filled + g * self.geo.queue_stride)
    }

    /// Number of groups this buffer can have (1 for a competing buffer).
    #[must_use]
    pub fn group_capacity(&self) -> usize {
        self.geo.group_queues as usize
    }

    /// True when every reader group receives every event.
    #[must_use]
    pub fn every_group(&self) -> bool {
        self.header().delivery == DELIVERY_EVERY_GROUP
    }

    pub(crate) fn records(&self) -> &[SlotRecord] {
        self.slice_at(self.geo.off_records, self.geo.slot_count as usize)
    }

    pub(crate) fn writers(&self) -> &[RegEntry] {
        self.slice_at(self.geo.off_writers, MAX_WRITERS)
    }

    pub(crate) fn readers(&self) -> &[RegEntry] {
        let off = self.geo.off_writers + (MAX_WRITERS * std::mem::size_of::<RegEntry>()) as u64;
        self.slice_at(off, MAX_READERS)
    }

    pub(crate) fn record(&self, slot: u32) -> Result<&SlotRecord> {
        self.records()
            .get(slot as usize)
            .ok_or_else(|| Error::SlotReleased(format!("no slot {slot} in buffer '{}'", self.name)))
    }

    /// Pointer to the first byte (the metadata) of `slot`, or `None` for a slot the buffer does
    /// not have. Computing the pointer is safe; dereferencing it is up to the caller, who must
    /// hold the slot (or be an observer that validates its copy).
    #[must_use]
    pub fn slot_ptr(&self, slot: u32) -> Option<*mut u8> {
        (slot < self.geo.slot_count)
            .then(|| self.base.wrapping_add(self.geo.slot_offset(slot) as usize))
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

    /// Copies metadata + data of `slot` into `dst` (at most its length); does nothing for a
    /// slot the buffer does not have.
    pub fn copy_out(&self, slot: u32, dst: &mut [u8]) {
        let Some(src) = self.slot_ptr(slot) else {
            return;
        };
        let n = (METADATA_SIZE + self.data_size()).min(dst.len());
        // SAFETY: the slot holds at least `METADATA_SIZE + data_size` bytes inside the mapping,
        // `dst` is a distinct local buffer of at least `n` bytes. Concurrent writes by a writer
        // reusing the slot can only occur for observers, which validate the copy with the seqlock
        // version and discard it if it may be torn.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), n) };
    }

    /// Copies `src` (metadata + data, or only data when `src` is shorter) into `slot`; does
    /// nothing for a slot the buffer does not have. Callers must hold the slot for writing:
    /// otherwise concurrent readers may see the bytes change (never memory outside the slot).
    pub fn copy_in(&self, slot: u32, src: &[u8], with_meta: bool) {
        let Some(base) = self.slot_ptr(slot) else {
            return;
        };
        let (off, max) = if with_meta {
            (0, METADATA_SIZE + self.data_size())
        } else {
            (METADATA_SIZE, self.data_size())
        };
        let n = src.len().min(max);
        let dst = base.wrapping_add(off);
        // SAFETY: `slot` exists (checked above) and `off + n` stays inside it, so the range is
        // inside the mapping; `src` is a distinct buffer. The bytes are shared memory: a racing
        // reader may see them torn, which the slot protocol prevents for well-behaved callers.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, n) };
    }

    /// Writes the metadata of `slot` (nothing for a slot the buffer does not have).
    pub(crate) fn write_meta(&self, slot: u32, md: &SlotMetadata) {
        self.copy_in(slot, &md.to_bytes(), true);
    }

    /// Reads the metadata of `slot` (zeros for a slot the buffer does not have).
    pub(crate) fn read_meta(&self, slot: u32) -> SlotMetadata {
        let mut bytes = [0u8; METADATA_SIZE];
        self.copy_out(slot, &mut bytes);
        SlotMetadata::from_bytes(&bytes)
    }
}
