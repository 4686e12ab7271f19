//! The steps of writing and reading a [`Ring`]: taking slots, committing them, reading and
//! releasing them (per reader group), discarding what nobody will read. Each is one or more
//! journalled steps of `ring_protocol.rs`. No unsafe code.
#![forbid(unsafe_code)]

use std::time::Instant;

use crate::clock::{now_ns, pid};
use crate::error::{Error, Result};
use crate::fault::point;
use crate::layout::{
    ctr, END_FORCED, END_OPEN, GROUP_ACTIVE, JOURNAL_SLOTS, MAX_GROUPS, SLOT_FILLED, SLOT_FREE,
    SLOT_WRITING, STEP_READ, STEP_RELEASE, STEP_UNPEND,
};
use crate::metadata::SlotMetadata;
use crate::ring::{Ring, SEQ_MASK, SLOT_BITS};
use crate::ring_protocol::{
    Disposition, Plan, NO_REG, W_DROPPED, W_FAILED, W_FILTERED, W_GROUP_CONSUMED, W_GROUP_LOST,
    W_GROUP_OVERWRITTEN, W_READER, W_WRITER,
};
use crate::sync::{fence, Ordering};
use crate::wait::{wait_until, wake, wake_unless_spinning};

impl Ring {
    // ----- writing -----

    /// Takes up to `out.len()` slots for writing, waiting for at least one until `deadline`.
    /// Returns how many; 0 while the buffer is paused (write into the discard slot).
    ///
    /// # Errors
    /// [`Error::BufferEnded`] after the end (also when it ends during the wait);
    /// [`Error::Timeout`] when the deadline passes.
    pub fn acquire_write_many(&self, out: &mut [u32], deadline: Option<Instant>) -> Result<usize> {
        if let Some(n) = self.try_acquire_write_many(out)? {
            return Ok(n);
        }
        wait_until(self.empty().waker(), deadline, || {
            self.sweep_while_waiting();
            self.try_acquire_write_many(out).transpose()
        })
        .ok_or_else(|| {
            Error::Timeout(format!("no free slot in buffer '{}' in time", self.name()))
        })?
    }

    /// Non-blocking [`Ring::acquire_write_many`]: `Ok(None)` when no slot is free.
    ///
    /// # Errors
    /// [`Error::BufferEnded`] after the end.
    pub fn try_acquire_write_many(&self, out: &mut [u32]) -> Result<Option<usize>> {
        let st = self.state();
        if st.end_state.load(Ordering::Acquire) != END_OPEN {
            return Err(self.ended_msg());
        }
        if st.paused.load(Ordering::Relaxed) != 0 || out.is_empty() {
            return Ok(Some(0));
        }
        if self.empty().is_empty() && !self.overwrite() {
            // Nothing free (a snapshot): do not take the lock from the readers that are about
            // to free a slot. A waiting writer re-checks after every wake-up.
            return Ok(None);
        }
        let me = pid();
        let lock = self.locked();
        if st.end_state.load(Ordering::Relaxed) != END_OPEN {
            return Err(self.ended_msg());
        }
        let mut taken = 0;
        // One journalled step per JOURNAL_SLOTS slots, all under one lock hold.
        while taken < out.len() {
            let mut plan = Plan::new(SLOT_WRITING, me, NO_REG);
            let mut overwritten = 0u64;
            let mut per_group = [0u64; MAX_GROUPS];
            while taken + plan.n < out.len() && !plan.full() {
                if let Some(s) = self.empty().pop() {
                    plan.slot(s);
                } else if self.overwrite() {
                    let Some((s, mask)) = self.take_oldest_unread() else {
                        break;
                    };
                    overwritten += 1;
                    for (g, c) in per_group.iter_mut().enumerate() {
                        *c += u64::from(mask >> g & 1);
                    }
                    plan.slot(s);
                } else {
                    break;
                }
            }
            if plan.n == 0 {
                break;
            }
            if overwritten > 0 {
                plan.set(
                    ctr::OVERWRITTEN as u32,
                    self.ctr(ctr::OVERWRITTEN) + overwritten,
                );
                for (g, &c) in per_group.iter().enumerate() {
                    if c > 0 {
                        let id = W_GROUP_OVERWRITTEN + g as u32;
                        plan.set(id, self.word_value(id) + c);
                    }
                }
            }
            self.run(&lock, &plan);
            out[taken..taken + plan.n].copy_from_slice(&plan.slots[..plan.n]);
            taken += plan.n;
        }
        drop(lock);
        if taken == 0 {
            return Ok(None);
        }
        // SYNC POINT: the odd seqlock versions are visible before any byte of the slots
        // changes; pairs with the observer's Acquire fence before its second version load.
        fence(Ordering::Release);
        Ok(Some(taken))
    }

    /// The oldest committed slot that no group is reading, taken out of every group queue
    /// (an overwrite). Returns it with the groups that lose it. Lock held.
    fn take_oldest_unread(&self) -> Option<(u32, u32)> {
        let mut best: Option<(u64, u32)> = None;
        for g in 0..self.group_capacity() {
            if let Some(s) = self.filled_of(g).peek() {
                let seq = self.record(s).ok()?.commit_seq.load(Ordering::Relaxed);
                if best.is_none_or(|(b, _)| seq < b) {
                    best = Some((seq, s));
                }
            }
        }
        let (_, s) = best?;
        let rec = self.record(s).ok()?;
        if rec.reading.load(Ordering::Relaxed) != 0 {
            return None;
        }
        let mask = rec.pending.load(Ordering::Relaxed);
        for g in 0..self.group_capacity() {
            if mask & (1 << g) != 0 && self.filled_of(g).peek() == Some(s) {
                self.filled_of(g).pop();
            }
        }
        Some((s, mask))
    }

    fn held_by_me(&self, slot: u32, want: u32) -> Result<()> {
        let rec = self.record(slot)?;
        if rec.state.load(Ordering::Relaxed) != want || rec.holder.load(Ordering::Relaxed) != pid()
        {
            return Err(Error::SlotReleased(format!(
                "slot {slot} of buffer '{}' is not held by this process any more (already \
                 committed or released)",
                self.name()
            )));
        }
        Ok(())
    }

    /// Publishes written slots. With `stamp = Some((deadtime, t_ns))` the metadata is filled in
    /// (counter, timestamp, dead time). `reg` is the writer registration whose commit count
    /// grows ([`NO_REG`] for none). A commit of [`crate::ring::TRASH`] counts discarded events.
    ///
    /// # Errors
    /// [`Error::BufferEnded`] if the buffer was force-ended meanwhile (the slots are returned
    /// unpublished); [`Error::SlotReleased`] for a slot this process does not hold.
    pub fn commit_many(&self, slots: &[u32], stamp: Option<(f64, u64)>, reg: u32) -> Result<()> {
        let st = self.state();
        if slots.first() == Some(&crate::ring::TRASH) {
            st.paused_count
                .fetch_add(slots.len() as u64, Ordering::Relaxed);
            if stamp.is_some() {
                let lock = self.locked();
                let mut plan = Plan::new(SLOT_FREE, 0, NO_REG);
                plan.set(
                    ctr::NEXT_COUNTER as u32,
                    self.ctr(ctr::NEXT_COUNTER) + slots.len() as u64,
                );
                self.run(&lock, &plan);
            }
            return Ok(());
        }
        for &s in slots {
            self.held_by_me(s, SLOT_WRITING)?;
        }
        for chunk in slots.chunks(JOURNAL_SLOTS) {
            self.commit_chunk(chunk, stamp, reg)?;
        }
        // SYNC POINT: the commit (under the lock) is ordered before the loads of the waiter
        // counts below; pairs with the waiters' announce-then-re-check fence in `wait_until`,
        // so either a reader sees the new event or we see it sleeping and wake it. The
        // wake-ups fence again; this one covers the `waiters` loads made here to skip them.
        fence(Ordering::SeqCst);
        let mask = st.active_groups.load(Ordering::Relaxed);
        for g in 0..self.group_capacity() {
            let filled = self.filled_of(g);
            if mask & (1 << g) != 0 && filled.waker().waiters.load(Ordering::Relaxed) != 0 {
                // A reader spinning on this queue takes the event (and wakes a sleeper if
                // more are left, see `acquire_read_many`).
                wake_unless_spinning(filled.waker());
            }
        }
        if st.observe.waiters.load(Ordering::Relaxed) != 0 {
            wake(&st.observe, u32::MAX);
        }
        Ok(())
    }

    fn commit_chunk(&self, slots: &[u32], stamp: Option<(f64, u64)>, reg: u32) -> Result<()> {
        let st = self.state();
        let lock = self.locked();
        let n = slots.len() as u64;
        if st.end_state.load(Ordering::Relaxed) == END_FORCED {
            let mut plan = Plan::new(SLOT_FREE, 0, NO_REG);
            for &s in slots {
                plan.slot(s);
            }
            plan.set(
                ctr::ABORTED_WRITES as u32,
                self.ctr(ctr::ABORTED_WRITES) + n,
            );
            self.run(&lock, &plan);
            drop(lock);
            self.empty().notify_all();
            return Err(self.ended_msg());
        }
        let committed = self.ctr(ctr::COMMITTED);
        let mut plan = Plan::new(SLOT_FILLED, 0, NO_REG);
        plan.seq0 = committed + 1;
        plan.mask = st.active_groups.load(Ordering::Relaxed);
        if plan.mask == 0 {
            // No reader group exists to receive these events: they are lost, and counted.
            plan.set(ctr::LOST_UNREAD as u32, self.ctr(ctr::LOST_UNREAD) + n);
        }
        let mut dt_sum = 0.0;
        if let Some((deadtime, t_ns)) = stamp {
            let c0 = self.ctr(ctr::NEXT_COUNTER);
            for (i, &s) in slots.iter().enumerate() {
                let md = SlotMetadata {
                    counter: (c0 + i as u64) as i64,
                    timestamp: t_ns as f64 * 1e-9,
                    deadtime,
                };
                self.write_meta(s, &md);
                dt_sum += deadtime;
            }
            plan.set(ctr::NEXT_COUNTER as u32, c0 + n);
        } else {
            for &s in slots {
                dt_sum += self.read_meta(s).deadtime;
            }
        }
        point("commit.stamped");
        for &s in slots {
            plan.slot(s);
        }
        let last_seq = committed + n;
        plan.set(ctr::COMMITTED as u32, last_seq);
        if dt_sum != 0.0 {
            let old = f64::from_bits(self.ctr(ctr::DEADTIME_SUM));
            plan.set(ctr::DEADTIME_SUM as u32, (old + dt_sum).to_bits());
        }
        if let Some(&last) = slots.last() {
            plan.set(
                ctr::LATEST as u32,
                ((last_seq & SEQ_MASK) << SLOT_BITS) | u64::from(last),
            );
        }
        if self.ctr(ctr::FIRST_COMMIT_NS) == 0 {
            plan.set(ctr::FIRST_COMMIT_NS as u32, now_ns());
        }
        if reg != NO_REG {
            plan.set(W_WRITER + reg, self.word_value(W_WRITER + reg) + n);
        }
        self.run(&lock, &plan);
        Ok(())
    }

    /// Returns slots taken for writing without publishing them.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] for a slot this process does not hold.
    pub fn abort_many(&self, slots: &[u32]) -> Result<()> {
        let slots: Vec<u32> = slots
            .iter()
            .copied()
            .filter(|&s| s != crate::ring::TRASH)
            .collect();
        for &s in &slots {
            self.held_by_me(s, SLOT_WRITING)?;
        }
        for chunk in slots.chunks(JOURNAL_SLOTS) {
            let lock = self.locked();
            let mut plan = Plan::new(SLOT_FREE, 0, NO_REG);
            for &s in chunk {
                plan.slot(s);
            }
            plan.set(
                ctr::ABORTED_WRITES as u32,
                self.ctr(ctr::ABORTED_WRITES) + chunk.len() as u64,
            );
            self.run(&lock, &plan);
        }
        self.empty().notify();
        Ok(())
    }

    // ----- reading -----

    /// True once the buffer has ended and group 0 has taken every committed event.
    #[must_use]
    pub fn end_reached(&self) -> bool {
        self.end_reached_for(0)
    }

    /// True once the buffer has ended and group `g` has taken every event meant for it.
    #[must_use]
    pub fn end_reached_for(&self, g: usize) -> bool {
        self.state().end_state.load(Ordering::Acquire) != END_OPEN && self.filled_of(g).is_empty()
    }

    /// Takes up to `out.len()` committed slots (oldest first) for reader registration `reg`
    /// of group `group`, waiting until at least one is there or `deadline`; `Ok(0)` at the end
    /// of the stream.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the deadline passes with nothing to read.
    pub fn acquire_read_many(
        &self,
        out: &mut [u32],
        deadline: Option<Instant>,
        reg: u32,
        group: usize,
    ) -> Result<usize> {
        if let Some(n) = self.try_acquire_read_many(out, reg, group) {
            return Ok(n);
        }
        let filled = self.filled_of(group);
        let n = wait_until(filled.waker(), deadline, || {
            self.sweep_while_waiting();
            self.try_acquire_read_many(out, reg, group)
        })
        .ok_or_else(|| Error::Timeout(format!("no event in buffer '{}' in time", self.name())))?;
        // Writers skip waking sleepers while we spin: pass the wake-up on if events are left.
        if !filled.is_empty() {
            filled.notify();
        }
        Ok(n)
    }

    /// Non-blocking [`Ring::acquire_read_many`]: `None` when nothing is there yet, `Some(0)` at
    /// the end of the stream.
    pub fn try_acquire_read_many(&self, out: &mut [u32], reg: u32, group: usize) -> Option<usize> {
        if out.is_empty() {
            return Some(0);
        }
        let group = group.min(self.group_capacity() - 1);
        let filled = self.filled_of(group);
        let ended_before = self.state().end_state.load(Ordering::Acquire) != END_OPEN;
        if filled.is_empty() && !ended_before {
            return None;
        }
        let lock = self.locked();
        let mut taken = 0;
        // One journalled step per JOURNAL_SLOTS slots, all under one lock hold.
        while taken < out.len() {
            let mut plan = Plan::new(STEP_READ, pid(), reg);
            plan.group = group as u32;
            while taken + plan.n < out.len() && !plan.full() {
                match filled.pop() {
                    Some(s) => plan.slot(s),
                    None => break,
                }
            }
            if plan.n == 0 {
                break;
            }
            self.run(&lock, &plan);
            out[taken..taken + plan.n].copy_from_slice(&plan.slots[..plan.n]);
            taken += plan.n;
        }
        if taken == 0 {
            // Under the lock no commit is half done: empty + ended is the end of the stream.
            let ended = self.state().end_state.load(Ordering::Acquire) != END_OPEN;
            return ended.then_some(0);
        }
        Some(taken)
    }

    fn read_by_me(&self, slot: u32, group: usize) -> Result<()> {
        let rec = self.record(slot)?;
        let bit = 1u32 << group.min(MAX_GROUPS - 1);
        if rec.state.load(Ordering::Relaxed) != SLOT_FILLED
            || rec.reading.load(Ordering::Relaxed) & bit == 0
            || rec.group_holder[group.min(MAX_GROUPS - 1)].load(Ordering::Relaxed) != pid()
        {
            return Err(Error::SlotReleased(format!(
                "slot {slot} of buffer '{}' is not held by this process any more (already \
                 committed or released)",
                self.name()
            )));
        }
        Ok(())
    }

    /// Gives read slots of group `group` back, counting them for reader registration `reg` as
    /// `how`.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] for a slot this process does not hold.
    pub fn release_many(
        &self,
        slots: &[u32],
        how: Disposition,
        reg: u32,
        group: usize,
    ) -> Result<()> {
        for &s in slots {
            self.read_by_me(s, group)?;
        }
        for chunk in slots.chunks(JOURNAL_SLOTS) {
            let lock = self.locked();
            let mut plan = Plan::new(STEP_RELEASE, 0, reg);
            plan.group = group as u32;
            for &s in chunk {
                plan.slot(s);
            }
            self.plan_consumed(&mut plan, chunk.len() as u64, how, reg, group);
            self.run(&lock, &plan);
        }
        self.empty().notify();
        Ok(())
    }

    pub(crate) fn plan_consumed(
        &self,
        plan: &mut Plan,
        n: u64,
        how: Disposition,
        reg: u32,
        group: usize,
    ) {
        plan.set(ctr::CONSUMED as u32, self.ctr(ctr::CONSUMED) + n);
        let gid = W_GROUP_CONSUMED + group as u32;
        plan.set(gid, self.word_value(gid) + n);
        if reg != NO_REG {
            plan.set(W_READER + reg, self.word_value(W_READER + reg) + n);
            let extra = match how {
                Disposition::Consumed => None,
                Disposition::Filtered => Some(W_FILTERED + reg),
                Disposition::Dropped => Some(W_DROPPED + reg),
                Disposition::Failed => Some(W_FAILED + reg),
            };
            if let Some(id) = extra {
                plan.set(id, self.word_value(id) + n);
            }
        }
    }

    /// Records in reader registration `reg` that its event in `slot` is being forwarded: it
    /// counts as delivered once writer registration `fwd_reg` of the buffer with instance id
    /// `ring_id` has committed `commits` events. Call right before that commit.
    ///
    /// # Errors
    /// [`Error::SlotReleased`] for a slot this process does not hold;
    /// [`Error::InvalidArgument`] without a reader registration.
    pub fn mark_forward(
        &self,
        slot: u32,
        reg: u32,
        group: usize,
        ring_id: u64,
        fwd_reg: u32,
        commits: u64,
    ) -> Result<()> {
        self.read_by_me(slot, group)?;
        let e = self
            .readers()
            .get(reg as usize)
            .ok_or_else(|| Error::InvalidArgument("reader without a registration".into()))?;
        e.fwd_slot.store(0, Ordering::Relaxed);
        e.fwd_ring.store(ring_id, Ordering::Relaxed);
        e.fwd_reg.store(u64::from(fwd_reg), Ordering::Relaxed);
        e.fwd_commits.store(commits, Ordering::Relaxed);
        point("forward.intent");
        // SYNC POINT: Release orders the intent's fields before its slot for the reclaimer.
        e.fwd_slot.store(u64::from(slot) + 1, Ordering::Release);
        Ok(())
    }

    /// Counts every event still waiting in the buffer as lost ("unread at shutdown", for
    /// each group that had not read it) and frees its slot. For a buffer that nobody will read
    /// any more. Returns how many event-group pairs were discarded.
    pub fn discard_unread(&self) -> u64 {
        let total = (0..self.group_capacity())
            .map(|g| self.unpend_group(g))
            .sum();
        self.empty().notify_all();
        total
    }

    /// Takes every event out of group `g`'s queue, counted as lost for it. Returns how many.
    fn unpend_group(&self, g: usize) -> u64 {
        let mut total = 0;
        loop {
            let lock = self.locked();
            let mut plan = Plan::new(STEP_UNPEND, 0, NO_REG);
            plan.group = g as u32;
            while !plan.full() {
                match self.filled_of(g).pop() {
                    Some(s) => plan.slot(s),
                    None => break,
                }
            }
            if plan.n == 0 {
                break;
            }
            let n = plan.n as u64;
            total += n;
            plan.set(ctr::LOST_UNREAD as u32, self.ctr(ctr::LOST_UNREAD) + n);
            let gid = W_GROUP_LOST + g as u32;
            plan.set(gid, self.word_value(gid) + n);
            self.run(&lock, &plan);
        }
        total
    }

    /// Ends reader group `g` (its worker has ended for good): it receives no more events, and
    /// the events it has not taken yet stop holding the buffer back (counted as lost for it).
    /// Returns how many.
    pub fn end_group(&self, g: usize) -> u64 {
        let Some(e) = self.state().groups.get(g) else {
            return 0;
        };
        {
            let _lock = self.locked();
            if e.word.load(Ordering::Relaxed) == GROUP_ACTIVE {
                e.word.store(crate::layout::GROUP_ENDED, Ordering::Relaxed);
            }
            let mask = self.state().active_groups.load(Ordering::Relaxed) & !(1u32 << g);
            self.state().active_groups.store(mask, Ordering::Relaxed);
        }
        let n = self.unpend_group(g);
        self.empty().notify_all();
        n
    }
}
