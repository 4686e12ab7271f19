//! Administration of a [`Ring`]: writer registrations and the end of the buffer, pause and
//! resume, recovery of the slots of dead processes, and statistics. No unsafe code: everything
//! goes through the accessors of `ring.rs`.
#![forbid(unsafe_code)]

use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::layout::{
    writer_word, END_DRAINED, END_FORCED, END_OPEN, MAX_WRITERS, SLOT_READING, SLOT_WRITING,
    WRITER_ACTIVE, WRITER_CRASHED, WRITER_DONE, WRITER_FREE,
};
use crate::ring::Ring;
use crate::stats::Stats;
use crate::sync::Ordering;
use crate::wait::wake;

impl Ring {
    // ----- end, pause -----

    /// True once the buffer has ended (orderly or forced).
    #[must_use]
    pub fn is_ended(&self) -> bool {
        self.state().end_state.load(Ordering::Acquire) != END_OPEN
    }

    pub(crate) fn ended_msg(&self) -> Error {
        Error::BufferEnded(format!(
            "buffer '{}' has been shut down (flushed): no more events can be written to it",
            self.name()
        ))
    }

    pub(crate) fn wake_everyone(&self) {
        self.filled().notify_all();
        self.empty().notify_all();
        wake(&self.state().observe, u32::MAX);
    }

    /// Ends the buffer at once: writes are refused from now on; readers still receive every
    /// event committed before, then the end of stream.
    pub fn force_end(&self) {
        let st = self.state();
        let _ =
            st.end_state
                .compare_exchange(END_OPEN, END_FORCED, Ordering::SeqCst, Ordering::SeqCst);
        self.wake_everyone();
    }

    /// Sets how many writers must finish before an orderly end (the control knows this from the
    /// setup before any worker starts, so an early finisher cannot end the buffer).
    pub fn set_expected_writers(&self, n: u32) {
        self.state().expected_writers.store(n, Ordering::SeqCst);
    }

    /// Registers a writer of process `pid`; returns its registration index.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when all registrations are taken.
    pub fn register_writer(&self, pid: u32) -> Result<usize> {
        for (i, e) in self.writers().iter().enumerate() {
            if e.word
                .compare_exchange(
                    WRITER_FREE,
                    writer_word(pid, WRITER_ACTIVE),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                self.state()
                    .writers_registered
                    .fetch_add(1, Ordering::SeqCst);
                return Ok(i);
            }
        }
        Err(Error::InvalidArgument(format!(
            "buffer '{}': more than {MAX_WRITERS} writers",
            self.name()
        )))
    }

    /// Marks registration `idx` as finished; the buffer ends when no registered writer is
    /// active any more (and at least the expected number finished). Returns true if this call
    /// ended the buffer.
    pub fn writer_done(&self, idx: usize) -> bool {
        if let Some(e) = self.writers().get(idx) {
            let w = e.word.load(Ordering::SeqCst);
            if w & 0xffff_ffff == WRITER_ACTIVE {
                let _ = e.word.compare_exchange(
                    w,
                    (w & !0xffff_ffff) | WRITER_DONE,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
        }
        self.try_end()
    }

    pub(crate) fn try_end(&self) -> bool {
        let mut active = 0u32;
        let mut finished = 0u32;
        for e in self.writers() {
            match e.word.load(Ordering::SeqCst) & 0xffff_ffff {
                WRITER_ACTIVE => active += 1,
                WRITER_DONE | WRITER_CRASHED => finished += 1,
                _ => {}
            }
        }
        let st = self.state();
        if active == 0 && finished >= st.expected_writers.load(Ordering::SeqCst) {
            let ended = st
                .end_state
                .compare_exchange(END_OPEN, END_DRAINED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            self.wake_everyone();
            return ended;
        }
        false
    }

    /// Pauses: writers get the discard slot until [`Ring::resume`].
    pub fn pause(&self) {
        self.state().paused.store(1, Ordering::SeqCst);
        self.empty().notify_all();
    }

    /// Resumes after [`Ring::pause`].
    pub fn resume(&self) {
        self.state().paused.store(0, Ordering::SeqCst);
    }

    /// True while paused.
    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.state().paused.load(Ordering::Relaxed) != 0
    }

    // ----- recovery -----

    /// Returns every slot that process `dead_pid` held and ends its writer registrations. Only
    /// for processes known to be dead. Returns `(slots it was writing, events lost with it,
    /// writer registrations closed)`.
    pub fn reclaim(&self, dead_pid: u32) -> (u32, u32, u32) {
        self.reclaim_inner(dead_pid, false)
    }

    /// Like [`Ring::reclaim`] for a process that will be started again: its writer
    /// registrations are released without counting as finished, so the buffer stays open for
    /// the replacement process.
    pub fn reclaim_for_restart(&self, dead_pid: u32) -> (u32, u32, u32) {
        self.reclaim_inner(dead_pid, true)
    }

    fn reclaim_inner(&self, dead_pid: u32, restart: bool) -> (u32, u32, u32) {
        let (mut writing, mut lost, mut writers) = (0, 0, 0);
        for (i, rec) in self.records().iter().enumerate() {
            if rec.holder.load(Ordering::SeqCst) != dead_pid || dead_pid == 0 {
                continue;
            }
            match rec.state.load(Ordering::SeqCst) {
                SLOT_WRITING => {
                    writing += 1;
                    self.free_slot(rec, i as u32);
                }
                SLOT_READING => {
                    lost += 1;
                    self.free_slot(rec, i as u32);
                }
                _ => {}
            }
        }
        self.state()
            .lost
            .fetch_add(u64::from(lost), Ordering::Relaxed);
        for e in self.writers() {
            let w = e.word.load(Ordering::SeqCst);
            if w == writer_word(dead_pid, WRITER_ACTIVE)
                && e.word
                    .compare_exchange(
                        w,
                        if restart {
                            WRITER_FREE
                        } else {
                            writer_word(dead_pid, WRITER_CRASHED)
                        },
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .is_ok()
            {
                writers += 1;
            }
        }
        if writers > 0 && !restart {
            self.state()
                .writers_crashed
                .fetch_add(writers, Ordering::Relaxed);
            self.try_end();
        }
        (writing, lost, writers)
    }

    /// Process ids currently holding slots (for the supervisor's liveness checks).
    #[must_use]
    pub fn holders(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .records()
            .iter()
            .map(|r| r.holder.load(Ordering::Relaxed))
            .chain(self.writers().iter().filter_map(|e| {
                let w = e.word.load(Ordering::Relaxed);
                (w & 0xffff_ffff == WRITER_ACTIVE).then_some((w >> 32) as u32)
            }))
            .filter(|&p| p != 0)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    // ----- statistics -----

    /// A statistics snapshot (see [`Stats`]).
    #[must_use]
    pub fn stats(&self) -> Stats {
        let st = self.state();
        let events = st.event_count.load(Ordering::Relaxed);
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
        let dt_sum = f64::from_bits(st.deadtime_sum_bits.load(Ordering::Relaxed));
        let end = st.end_state.load(Ordering::Acquire);
        let active = self
            .writers()
            .iter()
            .filter(|e| e.word.load(Ordering::Relaxed) & 0xffff_ffff == WRITER_ACTIVE)
            .count() as u32;
        Stats {
            event_count: events,
            slot_count: self.slot_count(),
            filled_slots: self.filled().len() as u32,
            empty_slots: self.empty().len() as u32,
            rate: f64::from_bits(st.rate_bits.load(Ordering::Acquire)),
            average_deadtime: if elapsed > 0.0 {
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
            overwritten: st.overwritten.load(Ordering::Relaxed),
            lost: st.lost.load(Ordering::Relaxed),
            active_writers: active,
            crashed_writers: st.writers_crashed.load(Ordering::Relaxed),
        }
    }
}
