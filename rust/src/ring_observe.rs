//! Observing a [`Ring`]: a private copy of the newest committed event, validated by the slot's
//! seqlock version, never taking the event from readers and never blocking writers. No unsafe
//! code: the copy itself is `Ring::copy_out`.
#![forbid(unsafe_code)]

use std::time::Instant;

use crate::error::{Error, Result};
use crate::layout::{ctr, END_OPEN};
use crate::metadata::METADATA_SIZE;
use crate::ring::{Ring, SEQ_MASK, SLOT_BITS, SLOT_MASK};
use crate::sync::{fence, Ordering};
use crate::wait::wait_until;

impl Ring {
    /// Copies the most recent committed event newer than `after` (a commit sequence number)
    /// into `dst` (metadata + data bytes), without taking it from the readers. Waits until
    /// `deadline`; `Ok(None)` once the buffer has ended.
    ///
    /// # Errors
    /// [`Error::Timeout`] when nothing newer arrives in time; [`Error::InvalidArgument`] when
    /// `dst` is smaller than a slot's metadata + data.
    pub fn observe(
        &self,
        after: u64,
        dst: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<Option<u64>> {
        let need = METADATA_SIZE + self.data_size();
        if dst.len() < need {
            return Err(Error::InvalidArgument(format!(
                "observer buffer of {} bytes is smaller than a slot ({need} bytes)",
                dst.len()
            )));
        }
        let st = self.state();
        let attempt = |dst: &mut [u8]| -> Option<Option<u64>> {
            // SYNC POINT: Acquire pairs with the commit's Release store of `latest`.
            let latest = st.counters[ctr::LATEST].load(Ordering::Acquire);
            let seq40 = latest >> SLOT_BITS;
            let newer = seq40.wrapping_sub(after & SEQ_MASK) & SEQ_MASK;
            if latest != 0 && newer != 0 && newer < SEQ_MASK / 2 {
                let slot = (latest & SLOT_MASK) as u32;
                if let Some(rec) = self.records().get(slot as usize) {
                    let v1 = rec.version.load(Ordering::Acquire);
                    let seq = rec.commit_seq.load(Ordering::Relaxed);
                    if v1 % 2 == 0 && seq & SEQ_MASK == seq40 {
                        self.copy_out(slot, &mut dst[..need]);
                        // SYNC POINT: the copy happens before the second version load.
                        fence(Ordering::Acquire);
                        if rec.version.load(Ordering::Relaxed) == v1 {
                            return Some(Some(seq));
                        }
                    }
                }
            }
            if st.end_state.load(Ordering::Acquire) != END_OPEN {
                return Some(None);
            }
            None
        };
        if let Some(r) = attempt(dst) {
            return Ok(r);
        }
        wait_until(&st.observe, deadline, || attempt(dst)).ok_or_else(|| {
            Error::Timeout(format!("no new event in buffer '{}' in time", self.name()))
        })
    }
}
