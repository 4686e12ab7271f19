//! One-slot conveniences over the batch steps of `ring_protocol.rs` (for callers without a
//! registration: tests, tools). No unsafe code.
#![forbid(unsafe_code)]

use std::time::Instant;

use crate::error::Result;
use crate::ring::{Ring, TRASH};
use crate::ring_protocol::{Disposition, NO_REG};

/// Result of [`Ring::try_acquire_write`] and [`Ring::acquire_write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A real slot, now held by this process.
    Slot(u32),
    /// The buffer is paused: write into the local discard slot.
    Trash,
}

fn grant(n: usize, slot: u32) -> Grant {
    if n == 0 {
        Grant::Trash
    } else {
        Grant::Slot(slot)
    }
}

impl Ring {
    /// Takes a slot for writing without blocking: `Ok(None)` when none is free.
    ///
    /// # Errors
    /// [`crate::Error::BufferEnded`] after the end.
    pub fn try_acquire_write(&self) -> Result<Option<Grant>> {
        let mut one = [0u32];
        Ok(self
            .try_acquire_write_many(&mut one)?
            .map(|n| grant(n, one[0])))
    }

    /// Takes a slot for writing, waiting until `deadline` (`None`: no limit).
    ///
    /// # Errors
    /// [`crate::Error::BufferEnded`]; [`crate::Error::Timeout`].
    pub fn acquire_write(&self, deadline: Option<Instant>) -> Result<Grant> {
        let mut one = [0u32];
        let n = self.acquire_write_many(&mut one, deadline)?;
        Ok(grant(n, one[0]))
    }

    /// Publishes one written slot (with `stamp`, the metadata is filled in with that dead time).
    ///
    /// # Errors
    /// As [`Ring::commit_many`].
    pub fn commit(&self, slot: u32, stamp: Option<f64>) -> Result<()> {
        self.commit_many(&[slot], stamp.map(|d| (d, crate::clock::now_ns())), NO_REG)
    }

    /// Returns one slot taken for writing unpublished.
    ///
    /// # Errors
    /// As [`Ring::abort_many`].
    pub fn abort(&self, slot: u32) -> Result<()> {
        if slot == TRASH {
            return Ok(());
        }
        self.abort_many(&[slot])
    }

    /// Takes a committed slot without blocking: `Ok(Some(Some(slot)))`, `Ok(Some(None))` at
    /// the end of the stream, `Ok(None)` when nothing is there yet.
    ///
    /// # Errors
    /// None today; reserved.
    pub fn try_acquire_read(&self) -> Result<Option<Option<u32>>> {
        let mut one = [0u32];
        Ok(self
            .try_acquire_read_many(&mut one, NO_REG, 0)
            .map(|n| (n == 1).then_some(one[0])))
    }

    /// Takes the oldest committed slot, waiting until `deadline`; `Ok(None)` at the end.
    ///
    /// # Errors
    /// [`crate::Error::Timeout`].
    pub fn acquire_read(&self, deadline: Option<Instant>) -> Result<Option<u32>> {
        let mut one = [0u32];
        let n = self.acquire_read_many(&mut one, deadline, NO_REG, 0)?;
        Ok((n == 1).then_some(one[0]))
    }

    /// Gives one read slot back.
    ///
    /// # Errors
    /// As [`Ring::release_many`].
    pub fn release(&self, slot: u32) -> Result<()> {
        self.release_many(&[slot], Disposition::Consumed, NO_REG, 0)
    }
}
