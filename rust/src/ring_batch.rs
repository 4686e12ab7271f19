//! Batch hand-offs of a [`Ring`]: many slots per queue claim (one shared-position update per
//! batch). No unsafe code: built on the accessors and per-slot operations of `ring.rs`.
#![forbid(unsafe_code)]

use std::time::Instant;

use crate::clock::pid;
use crate::error::{Error, Result};
use crate::layout::{END_OPEN, SLOT_FREE, SLOT_READING};
use crate::ring::Ring;
use crate::sync::Ordering;
use crate::wait::wait_until;

impl Ring {
    /// Takes up to `out.len()` committed slots at once (one queue claim), waiting until at least
    /// one is there or `deadline`; `Ok(0)` at the end of the stream.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the deadline passes with nothing to read.
    pub fn acquire_read_many(&self, out: &mut [u32], deadline: Option<Instant>) -> Result<usize> {
        let try_once = |out: &mut [u32]| -> Option<usize> {
            let n = self.filled().pop_batch(out);
            if n > 0 {
                return Some(n);
            }
            if self.end_reached() {
                return Some(self.filled().pop_batch(out));
            }
            None
        };
        let n =
            match try_once(out) {
                Some(n) => n,
                None => wait_until(self.filled().waker(), deadline, || try_once(out)).ok_or_else(
                    || Error::Timeout(format!("no event in buffer '{}' in time", self.name())),
                )?,
            };
        for &s in &out[..n] {
            self.mark_reading(s);
        }
        Ok(n)
    }

    /// Gives several read slots back at once.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] for a slot this process does not hold.
    pub fn release_many(&self, slots: &[u32]) -> Result<()> {
        for &s in slots {
            let rec = self.check_held(s, SLOT_READING)?;
            rec.holder.store(0, Ordering::Relaxed);
            rec.holders.store(0, Ordering::Relaxed);
            rec.state.store(SLOT_FREE, Ordering::Relaxed);
        }
        let pushed = self.empty().push_all(slots);
        self.empty().notify();
        if pushed {
            Ok(())
        } else {
            Err(self.stuck_msg())
        }
    }

    /// Takes up to `out.len()` free slots for writing at once, waiting for at least one.
    ///
    /// # Errors
    /// As [`Ring::acquire_write`].
    pub fn acquire_write_many(&self, out: &mut [u32], deadline: Option<Instant>) -> Result<usize> {
        let me = pid();
        let try_once = |out: &mut [u32]| -> Result<Option<usize>> {
            let st = self.state();
            if st.end_state.load(Ordering::Acquire) != END_OPEN {
                return Err(self.ended_msg());
            }
            if st.paused.load(Ordering::Relaxed) != 0 {
                return Ok(Some(0));
            }
            let mut n = self.empty().pop_batch(out);
            while n < out.len() && self.overwrite() {
                match self.take_free() {
                    Some(s) => {
                        out[n] = s;
                        n += 1;
                    }
                    None => break,
                }
            }
            Ok((n > 0).then_some(n))
        };
        let n = match try_once(out)? {
            Some(n) => n,
            None => wait_until(self.empty().waker(), deadline, || try_once(out).transpose())
                .ok_or_else(|| {
                    Error::Timeout(format!("no free slot in buffer '{}' in time", self.name()))
                })??,
        };
        for &s in &out[..n] {
            self.mark_writing(s, me);
        }
        Ok(n)
    }
}
