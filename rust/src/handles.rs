//! Process-local endpoints over a shared [`Ring`]: a [`Writer`] (registration, dead-time
//! bookkeeping, the slot it holds), a [`Reader`] and an [`Observer`] (its private copy).
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{now_ns, pid};
use crate::error::{Error, Result};
use crate::metadata::METADATA_SIZE;
use crate::ring::{Ring, TRASH};
use crate::ring_protocol::{Disposition, NO_REG};

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// A writer of one process. Registers itself with the buffer, so the buffer ends only once
/// every registered writer has called [`Writer::finish`] (or died).
#[derive(Debug)]
pub struct Writer {
    ring: Arc<Ring>,
    registration: Option<usize>,
    last_commit_ns: u64,
    held: Option<(u32, u64)>,
    /// Start of a wait for a slot that has not succeeded yet (a wait may be split into
    /// several timed calls; the dead time counts all of them).
    wait_start: Option<u64>,
}

impl Writer {
    /// Registers a new writer.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the buffer has no free writer registration.
    pub fn new(ring: Arc<Ring>) -> Result<Writer> {
        let registration = Some(ring.register_writer(pid())?);
        Ok(Writer {
            ring,
            registration,
            last_commit_ns: now_ns(),
            held: None,
            wait_start: None,
        })
    }

    /// The ring this writer writes to.
    #[must_use]
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// The slot currently held, if any ([`TRASH`] while paused).
    #[must_use]
    pub fn held(&self) -> Option<u32> {
        self.held.map(|(s, _)| s)
    }

    /// Takes a slot (waiting at most `timeout`); returns its index or [`TRASH`].
    ///
    /// # Errors
    /// [`Error::SlotReleased`] if a slot is already held; [`Error::BufferEnded`];
    /// [`Error::Timeout`].
    pub fn acquire(&mut self, timeout: Option<Duration>) -> Result<u32> {
        if let Some((s, _)) = self.held {
            return Err(Error::SlotReleased(format!(
                "this writer already holds slot {s} of buffer '{}': commit or abort it first",
                self.ring.name()
            )));
        }
        let t0 = *self.wait_start.get_or_insert_with(now_ns);
        let mut one = [0u32];
        let grant = self.ring.acquire_write_many(&mut one, deadline(timeout));
        let n = self.end_wait(grant)?;
        let waited = now_ns().saturating_sub(t0);
        let slot = if n == 0 { TRASH } else { one[0] };
        self.held = Some((slot, waited));
        Ok(slot)
    }

    /// Like [`Writer::acquire`] but returns `Ok(None)` instead of waiting.
    ///
    /// # Errors
    /// As [`Writer::acquire`].
    pub fn try_acquire(&mut self) -> Result<Option<u32>> {
        if self.held.is_some() {
            return self.acquire(None).map(Some);
        }
        let t0 = *self.wait_start.get_or_insert_with(now_ns);
        let mut one = [0u32];
        let n = match self.ring.try_acquire_write_many(&mut one) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => return Ok(None),
            Err(e) => Err(e),
        };
        let s = if self.end_wait(n)? == 0 {
            TRASH
        } else {
            one[0]
        };
        self.held = Some((s, now_ns().saturating_sub(t0)));
        Ok(Some(s))
    }

    /// Ends the current wait unless it only timed out (then the next call continues it).
    fn end_wait<T>(&mut self, r: Result<T>) -> Result<T> {
        if !matches!(r, Err(Error::Timeout(_))) {
            self.wait_start = None;
        }
        r
    }

    /// Publishes the held slot. With `stamp`, counter, timestamp and dead time are set.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] when nothing is held; [`Error::BufferEnded`] after a forced end.
    pub fn commit(&mut self, stamp: bool) -> Result<()> {
        let (slot, waited) = self.held.take().ok_or_else(|| self.nothing_held())?;
        let now = now_ns();
        let elapsed = now.saturating_sub(self.last_commit_ns).max(1);
        self.last_commit_ns = now;
        let deadtime = (waited as f64 / elapsed as f64).min(1.0);
        if slot != TRASH {
            self.ring.account_writer_time(waited, elapsed);
        }
        self.ring
            .commit_many(&[slot], stamp.then_some((deadtime, now)), self.reg())
    }

    /// This writer's registration index ([`NO_REG`] after it finished).
    #[must_use]
    pub fn reg(&self) -> u32 {
        self.registration.map_or(NO_REG, |r| r as u32)
    }

    /// Returns the held slot unpublished.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] when nothing is held.
    pub fn abort(&mut self) -> Result<()> {
        let (slot, _) = self.held.take().ok_or_else(|| self.nothing_held())?;
        self.ring.abort_many(&[slot])
    }

    fn nothing_held(&self) -> Error {
        Error::SlotReleased(format!(
            "this writer holds no slot of buffer '{}' (already committed or aborted)",
            self.ring.name()
        ))
    }

    /// Writes up to `count` events from `src` (rows of `row` bytes: metadata + data when
    /// `with_meta`, else data only) in one hand-off. Returns how many were written (or
    /// discarded while paused); waits at most `timeout` for the first free slot.
    ///
    /// # Errors
    /// [`Error::BufferEnded`], [`Error::Timeout`], [`Error::InvalidArgument`] for a short `src`.
    pub fn write_batch(
        &mut self,
        src: &[u8],
        count: usize,
        with_meta: bool,
        stamp: bool,
        timeout: Option<Duration>,
    ) -> Result<usize> {
        let data = self.ring.data_size();
        let row = if with_meta {
            METADATA_SIZE + data
        } else {
            data
        };
        if count == 0 {
            return Ok(0);
        }
        if src.len() < row * count {
            return Err(Error::InvalidArgument(format!(
                "batch of {count} events needs {} bytes, got {}",
                row * count,
                src.len()
            )));
        }
        if self.held.is_some() {
            return Err(Error::SlotReleased(
                "finish the held slot before a batch".into(),
            ));
        }
        let mut slots = vec![0u32; count.min(self.ring.slot_count() as usize)];
        let t0 = *self.wait_start.get_or_insert_with(now_ns);
        let n = self.ring.acquire_write_many(&mut slots, deadline(timeout));
        let n = self.end_wait(n)?;
        let waited = now_ns().saturating_sub(t0);
        let now = now_ns();
        let elapsed = now.saturating_sub(self.last_commit_ns).max(1);
        self.last_commit_ns = now;
        if n == 0 {
            // Paused: the whole batch is discarded and counted.
            let k = slots.len();
            self.ring
                .commit_many(&vec![TRASH; k], stamp.then_some((0.0, now)), NO_REG)?;
            return Ok(k);
        }
        for (i, &s) in slots[..n].iter().enumerate() {
            self.ring
                .copy_in(s, &src[i * row..(i + 1) * row], with_meta);
        }
        self.ring.account_writer_time(waited, elapsed);
        let deadtime = (waited as f64 / elapsed as f64).min(1.0);
        self.ring
            .commit_many(&slots[..n], stamp.then_some((deadtime, now)), self.reg())?;
        Ok(n)
    }

    /// Tells the buffer this writer is done (its "flush"): the buffer ends once every writer
    /// is done. Returns true if this ended the buffer. Idempotent.
    pub fn finish(&mut self) -> bool {
        if let Some((s, _)) = self.held.take() {
            let _ = self.ring.abort_many(&[s]);
        }
        match self.registration.take() {
            Some(r) => self.ring.writer_done(r),
            None => false,
        }
    }
}

/// A reader of one process. Registers itself (for the per-worker counts of the ledger).
#[derive(Debug)]
pub struct Reader {
    ring: Arc<Ring>,
    held: Option<u32>,
    reg: u32,
    group: usize,
    how: Disposition,
}

impl Reader {
    /// A reader over `ring`.
    #[must_use]
    pub fn new(ring: Arc<Ring>) -> Reader {
        let group = ring.group_index(None).unwrap_or(0);
        Self::in_group(ring, group)
    }

    /// A reader of reader group `name` (`None`: the default group). On a competing buffer
    /// every reader is in its one group whatever the name.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the buffer has no room for another group.
    pub fn with_group(ring: Arc<Ring>, name: Option<&str>) -> Result<Reader> {
        let group = ring.group_index(name)?;
        Ok(Self::in_group(ring, group))
    }

    fn in_group(ring: Arc<Ring>, group: usize) -> Reader {
        let reg = ring
            .register_reader(pid(), group)
            .map_or(NO_REG, |r| r as u32);
        Reader {
            ring,
            held: None,
            reg,
            group,
            how: Disposition::Consumed,
        }
    }

    /// The reader group of this reader.
    #[must_use]
    pub fn group(&self) -> usize {
        self.group
    }

    /// The ring this reader reads.
    #[must_use]
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// Takes the next event's slot; `Ok(None)` at the end of the stream.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] if a slot is still held; [`Error::Timeout`].
    pub fn acquire(&mut self, timeout: Option<Duration>) -> Result<Option<u32>> {
        if let Some(s) = self.held {
            return Err(Error::SlotReleased(format!(
                "this reader still holds slot {s} of buffer '{}': release it first",
                self.ring.name()
            )));
        }
        let mut one = [0u32];
        let n = self
            .ring
            .acquire_read_many(&mut one, deadline(timeout), self.reg, self.group)?;
        self.held = (n == 1).then_some(one[0]);
        self.how = Disposition::Consumed;
        Ok(self.held)
    }

    /// The slot currently held, if any.
    #[must_use]
    pub fn held(&self) -> Option<u32> {
        self.held
    }

    /// Like [`Reader::acquire`] without waiting: `Ok(None)` when nothing is there yet,
    /// `Ok(Some(None))` at the end of the stream.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] if a slot is still held.
    pub fn try_acquire(&mut self) -> Result<Option<Option<u32>>> {
        if self.held.is_some() {
            return self.acquire(None).map(Some);
        }
        let mut one = [0u32];
        Ok(self
            .ring
            .try_acquire_read_many(&mut one, self.reg, self.group)
            .map(|n| {
                self.held = (n == 1).then_some(one[0]);
                self.how = Disposition::Consumed;
                self.held
            }))
    }

    /// Sets what the release of the held event counts as (filtered out, dropped).
    pub fn set_disposition(&mut self, how: Disposition) {
        self.how = how;
    }

    /// Records that the held event is being forwarded through `writer`: call right before its
    /// commit, so that if this process dies before releasing the event, reclaim counts it as
    /// delivered once that commit happened.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] when nothing is held.
    pub fn mark_forward(&self, writer: &Writer) -> Result<()> {
        let Some(s) = self.held else {
            return Err(Error::SlotReleased("this reader holds no slot".into()));
        };
        let reg = writer.reg();
        if reg == NO_REG {
            return Ok(());
        }
        let done = writer.ring().writer_events(reg as usize).unwrap_or(0);
        self.ring.mark_forward(
            s,
            self.reg,
            self.group,
            writer.ring().instance_id()[0],
            reg,
            done + 1,
        )
    }

    /// Gives the held slot back.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] when nothing is held.
    pub fn release(&mut self) -> Result<()> {
        let s = self.held.take().ok_or_else(|| {
            Error::SlotReleased(format!(
                "this reader holds no slot of buffer '{}' (already released)",
                self.ring.name()
            ))
        })?;
        self.ring.release_many(&[s], self.how, self.reg, self.group)
    }

    /// Copies up to `max` events (metadata + data rows) into `dst` in one hand-off; returns how
    /// many, 0 at the end of the stream.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::InvalidArgument`] for a short `dst`.
    pub fn read_batch(
        &mut self,
        dst: &mut [u8],
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize> {
        let row = METADATA_SIZE + self.ring.data_size();
        if max == 0 {
            return Err(Error::InvalidArgument(
                "read_batch needs max_events >= 1".into(),
            ));
        }
        if dst.len() < row * max {
            return Err(Error::InvalidArgument(format!(
                "batch of {max} events needs {} bytes, got {}",
                row * max,
                dst.len()
            )));
        }
        let mut slots = vec![0u32; max.min(self.ring.slot_count() as usize)];
        let n = self
            .ring
            .acquire_read_many(&mut slots, deadline(timeout), self.reg, self.group)?;
        for (i, &s) in slots[..n].iter().enumerate() {
            self.ring.copy_out(s, &mut dst[i * row..(i + 1) * row]);
        }
        self.ring
            .release_many(&slots[..n], Disposition::Consumed, self.reg, self.group)?;
        Ok(n)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(s) = self.held.take() {
            let _ = self.ring.release_many(&[s], self.how, self.reg, self.group);
        }
        if self.reg != NO_REG {
            self.ring.reader_done(self.reg as usize);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some((s, _)) = self.held.take() {
            let _ = self.ring.abort_many(&[s]);
        }
    }
}

/// An observer: sees the newest event as a private copy, never taking it from readers.
#[derive(Debug)]
pub struct Observer {
    ring: Arc<Ring>,
    last_seq: u64,
}

impl Observer {
    /// An observer over `ring`.
    #[must_use]
    pub fn new(ring: Arc<Ring>) -> Observer {
        Observer { ring, last_seq: 0 }
    }

    /// Copies the newest event newer than the last one seen into `dst`; `Ok(false)` after the
    /// end of the buffer.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::InvalidArgument`] for a short `dst`.
    pub fn observe(&mut self, dst: &mut [u8], timeout: Option<Duration>) -> Result<bool> {
        match self.ring.observe(self.last_seq, dst, deadline(timeout))? {
            Some(seq) => {
                self.last_seq = seq;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
