//! Statistics of a [`Ring`]: the shared snapshot every process computes alike, the audit of
//! the slot records, and the endpoint registrations with their counters. No unsafe code.
#![forbid(unsafe_code)]

use crate::clock::now_ns;
use crate::layout::{
    ctr, RegEntry, END_FORCED, END_OPEN, MAX_GROUPS, REG_ACTIVE, REG_CRASHED, REG_FREE,
    SLOT_FILLED, SLOT_READING,
};
use crate::ring::Ring;
use crate::stats::{Audit, SlotView, Stats};
use crate::sync::Ordering;

impl Ring {
    /// A statistics snapshot (see [`Stats`]).
    #[must_use]
    pub fn stats(&self) -> Stats {
        let st = self.state();
        let events = self.ctr(ctr::COMMITTED);
        let now = now_ns();
        let t0 = st.rate_t_ns.load(Ordering::Acquire);
        if t0 == 0 {
            if st
                .rate_t_ns
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                st.rate_count.store(events, Ordering::Release);
            }
        } else if now.saturating_sub(t0) >= 500_000_000
            && st
                .rate_t_ns
                .compare_exchange(t0, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let c0 = st.rate_count.swap(events, Ordering::AcqRel);
            let rate = events.saturating_sub(c0) as f64 / ((now - t0) as f64 * 1e-9);
            st.rate_bits.store(rate.to_bits(), Ordering::Release);
        }
        let wait = st.wait_ns.load(Ordering::Relaxed) as f64;
        let elapsed = st.elapsed_ns.load(Ordering::Relaxed) as f64;
        let dt_sum = f64::from_bits(self.ctr(ctr::DEADTIME_SUM));
        let end = st.end_state.load(Ordering::Acquire);
        // Slots waiting for a group (with one group: its filled queue).
        let waiting = if self.every_group() {
            self.records()
                .iter()
                .filter(|r| {
                    r.state.load(Ordering::Relaxed) == SLOT_FILLED
                        && r.pending.load(Ordering::Relaxed) != 0
                })
                .count() as u32
        } else {
            self.filled().len() as u32
        };
        let active = self
            .writers()
            .iter()
            .filter(|e| e.word.load(Ordering::Relaxed) & 0xffff_ffff == REG_ACTIVE)
            .count() as u32;
        Stats {
            event_count: events,
            slot_count: self.slot_count(),
            filled_slots: waiting,
            empty_slots: self.empty().len() as u32,
            rate: f64::from_bits(st.rate_bits.load(Ordering::Acquire)),
            wait_deadtime: if elapsed > 0.0 {
                (wait / elapsed).min(1.0)
            } else {
                0.0
            },
            mean_event_deadtime: if events > 0 {
                dt_sum / events as f64
            } else {
                0.0
            },
            paused_count: st.paused_count.load(Ordering::Relaxed),
            paused: st.paused.load(Ordering::Relaxed) != 0,
            flushed: end != END_OPEN,
            forced: end == END_FORCED,
            overwritten: self.ctr(ctr::OVERWRITTEN),
            lost: self.ctr(ctr::LOST_READER_CRASHED) + self.ctr(ctr::LOST_UNREAD),
            consumed: self.ctr(ctr::CONSUMED),
            lost_reader_crashed: self.ctr(ctr::LOST_READER_CRASHED),
            lost_unread: self.ctr(ctr::LOST_UNREAD),
            aborted_writes: self.ctr(ctr::ABORTED_WRITES),
            repairs: self.ctr(ctr::REPAIRS),
            held_slots: self
                .slot_count()
                .saturating_sub(waiting + self.empty().len() as u32),
            active_writers: active,
            crashed_writers: self
                .writers()
                .iter()
                .filter(|e| e.word.load(Ordering::Relaxed) & 0xffff_ffff == REG_CRASHED)
                .count() as u32,
        }
    }

    /// A snapshot of the slot protocol's state (lock, journal, queues, slot records) for
    /// consistency checks; see [`Audit`].
    #[must_use]
    pub fn audit(&self) -> Audit {
        let st = self.state();
        Audit {
            lock_holder: st.lock.load(Ordering::Acquire) & !crate::plock::SLEEPERS,
            journal_active: st.journal.active.load(Ordering::Acquire) != 0,
            empty: self.empty().tokens(),
            filled: self.filled().tokens(),
            slots: self
                .records()
                .iter()
                .enumerate()
                .map(|(i, r)| self.slot_view(i, r))
                .collect(),
        }
    }

    /// One slot as the audit shows it: a committed slot that no group waits for any more but
    /// one reads is `SLOT_READING`, held by that group's reader.
    fn slot_view(&self, i: usize, r: &crate::layout::SlotRecord) -> SlotView {
        let state = r.state.load(Ordering::Relaxed);
        let pending = r.pending.load(Ordering::Relaxed);
        let reading = r.reading.load(Ordering::Relaxed);
        let mut view = SlotView {
            state,
            holder: r.holder.load(Ordering::Relaxed),
            commit_seq: r.commit_seq.load(Ordering::Relaxed),
            intent: 0,
            pending,
            reading,
            group_holders: [0; MAX_GROUPS],
        };
        for (g, h) in view.group_holders.iter_mut().enumerate() {
            if reading & (1 << g) != 0 {
                *h = r.group_holder[g].load(Ordering::Relaxed);
            }
        }
        if state == SLOT_FILLED && pending == 0 && reading != 0 {
            let g = reading.trailing_zeros() as usize;
            view.state = SLOT_READING;
            view.holder = r.group_holder[g].load(Ordering::Relaxed);
            let reg = r.group_reg[g].load(Ordering::Relaxed) as usize;
            let fwd = self
                .readers()
                .get(reg)
                .is_some_and(|e| e.fwd_slot.load(Ordering::Relaxed) == i as u64 + 1);
            view.intent = u32::from(fwd);
        }
        view
    }

    /// The endpoint registrations with their counters, for the run's ledger.
    #[must_use]
    pub fn registrations(&self) -> Vec<Registration> {
        let one = |writer: bool, e: &RegEntry| {
            let w = e.word.load(Ordering::Relaxed);
            (w & 0xffff_ffff != REG_FREE).then(|| Registration {
                writer,
                pid: (w >> 32) as u32,
                state: (w & 0xffff_ffff) as u32,
                tag: e.tag.load(Ordering::Relaxed),
                events: e.events.load(Ordering::Relaxed),
                filtered: e.filtered.load(Ordering::Relaxed),
                dropped: e.dropped.load(Ordering::Relaxed),
                failed: e.failed.load(Ordering::Relaxed),
            })
        };
        self.writers()
            .iter()
            .filter_map(|e| one(true, e))
            .chain(self.readers().iter().filter_map(|e| one(false, e)))
            .collect()
    }
}

/// One endpoint registration as [`Ring::registrations`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// Writer (else reader).
    pub writer: bool,
    /// Process id.
    pub pid: u32,
    /// `REG_*` state.
    pub state: u32,
    /// Worker tag of the process.
    pub tag: u64,
    /// Writer: events committed; reader: events released.
    pub events: u64,
    /// Reader: released as filtered out.
    pub filtered: u64,
    /// Reader: released as dropped.
    pub dropped: u64,
    /// Reader: released as given up after the worker's function failed.
    pub failed: u64,
}
