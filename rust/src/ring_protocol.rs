//! The crash-consistent slot protocol of a [`Ring`].
//!
//! Every change of a slot's owner, of the two queues and of the event counters is one *step*
//! taken under the ring lock (`plock.rs`):
//!
//! 1. plan: take the lock, pick the slots (popping them from a queue) and compute the new
//!    absolute values of the counters the step changes;
//! 2. write the plan into the [`Journal`] and mark it active;
//! 3. apply it: set the slot records (owner state, holder pid, commit sequence, seqlock
//!    version) and the counters to the planned values, push the slots to their new queue;
//! 4. clear the journal and unlock.
//!
//! Applying a journal is idempotent (only absolute stores), and the queues are an index of the
//! slot records. So at every instruction the state is recoverable: if a process dies anywhere in
//! a step, the next process that takes the lock over from it replays an active journal (roll
//! forward) and rebuilds both queues from the records (filled slots ordered by commit
//! sequence). A step that died before its journal became active changed no record: rebuilding
//! the queues puts back the tokens it had popped. Slots still held by the dead process are
//! then returned by reclaim, which is itself a sequence of such steps.
//!
//! Each slot token is therefore always in a queue (free or filled) or held by a recorded pid.
//! Readers record in their registration a *forwarding intent* before they commit the event into
//! another buffer, so that reclaiming a reader that died between that commit and its release
//! counts the event as delivered, not lost.
//!
//! Reader groups: a committed slot carries the mask of the groups that still need it
//! (`pending`: in that group's filled queue; `reading`: held by that group's reader). Each group
//! has its own filled queue and counters; the slot returns to the free queue when the last
//! group released it. A competing buffer is the special case of one group.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use crate::clock::{now_ns, pid};
use crate::error::{Error, Result};
use crate::fault::point;
use crate::layout::{
    ctr, SlotRecord, END_FORCED, END_OPEN, GROUP_ACTIVE, JOURNAL_SLOTS, JOURNAL_WORDS, MAX_GROUPS,
    SLOT_FILLED, SLOT_FREE, SLOT_WRITING, STEP_READ, STEP_RELEASE, STEP_UNPEND,
};
use crate::metadata::SlotMetadata;
use crate::plock::{self, Acquired};
use crate::ring::{Ring, SEQ_MASK, SLOT_BITS};
use crate::sync::{fence, AtomicU64, Ordering};
use crate::wait::{wait_until, wake};

/// Word id of a writer registration's commit count (`+ registration`).
pub(crate) const W_WRITER: u32 = 0x1000;
/// Word id of a reader registration's released-event count.
pub(crate) const W_READER: u32 = 0x2000;
/// Word id of a reader registration's filtered-out count.
pub(crate) const W_FILTERED: u32 = 0x3000;
/// Word id of a reader registration's dropped count.
pub(crate) const W_DROPPED: u32 = 0x4000;
/// Word id of a reader registration's count of events its worker failed on.
pub(crate) const W_FAILED: u32 = 0x5000;
/// Word id of a group's consumed count (`+ group`).
pub(crate) const W_GROUP_CONSUMED: u32 = 0x6000;
/// Word id of a group's lost count.
pub(crate) const W_GROUP_LOST: u32 = 0x7000;
/// Word id of a group's overwritten count.
pub(crate) const W_GROUP_OVERWRITTEN: u32 = 0x8000;
/// "No registration".
pub const NO_REG: u32 = u32::MAX;

/// How often a waiting endpoint looks for dead processes when no supervisor does.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// What a reader decided about an event it releases (for the run's ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Disposition {
    /// Processed (delivered downstream, exported, analysed...).
    #[default]
    Consumed,
    /// Filtered out on purpose by the worker.
    Filtered,
    /// Given up because the worker's sink had ended.
    Dropped,
    /// Given up because the worker's function failed on it.
    Failed,
}

/// The plan of one step before it goes into the journal.
#[derive(Debug)]
struct Plan {
    state: u32,
    holder: u32,
    reg: u32,
    group: u32,
    mask: u32,
    seq0: u64,
    slots: [u32; JOURNAL_SLOTS],
    n: usize,
    words: [(u32, u64); JOURNAL_WORDS],
    nw: usize,
}

impl Plan {
    fn new(state: u32, holder: u32, reg: u32) -> Plan {
        Plan {
            state,
            holder,
            reg,
            group: 0,
            mask: 0,
            seq0: 0,
            slots: [0; JOURNAL_SLOTS],
            n: 0,
            words: [(0, 0); JOURNAL_WORDS],
            nw: 0,
        }
    }

    fn full(&self) -> bool {
        self.n == JOURNAL_SLOTS
    }

    fn slot(&mut self, s: u32) {
        self.slots[self.n] = s;
        self.n += 1;
    }

    fn set(&mut self, id: u32, val: u64) {
        if let Some(w) = self.words[..self.nw].iter_mut().find(|w| w.0 == id) {
            w.1 = val;
        } else if self.nw < JOURNAL_WORDS {
            self.words[self.nw] = (id, val);
            self.nw += 1;
        }
    }
}

/// Holds the ring lock; unlocks on drop.
pub(crate) struct Locked<'a> {
    ring: &'a Ring,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        point("unlock");
        plock::unlock(&self.ring.state().lock);
    }
}

impl Ring {
    // ----- the machinery of a step -----

    /// Takes the ring lock; repairs the ring first when the lock is taken over from a dead
    /// process.
    pub(crate) fn locked(&self) -> Locked<'_> {
        if let Acquired::TakenOver(dead) = plock::lock(&self.state().lock, pid()) {
            self.repair(dead);
        }
        point("lock.taken");
        Locked { ring: self }
    }

    /// The word a journal entry sets.
    pub(crate) fn word(&self, id: u32) -> Option<&AtomicU64> {
        let idx = (id & 0xfff) as usize;
        match id & !0xfff {
            0 => self.state().counters.get(idx),
            W_WRITER => self.writers().get(idx).map(|e| &e.events),
            W_READER => self.readers().get(idx).map(|e| &e.events),
            W_FILTERED => self.readers().get(idx).map(|e| &e.filtered),
            W_DROPPED => self.readers().get(idx).map(|e| &e.dropped),
            W_FAILED => self.readers().get(idx).map(|e| &e.failed),
            W_GROUP_CONSUMED => self.state().groups.get(idx).map(|g| &g.consumed),
            W_GROUP_LOST => self.state().groups.get(idx).map(|g| &g.lost),
            W_GROUP_OVERWRITTEN => self.state().groups.get(idx).map(|g| &g.overwritten),
            _ => None,
        }
    }

    pub(crate) fn ctr(&self, i: usize) -> u64 {
        self.state().counters[i].load(Ordering::Relaxed)
    }

    fn word_value(&self, id: u32) -> u64 {
        self.word(id).map_or(0, |w| w.load(Ordering::Relaxed))
    }

    /// Writes `plan` to the journal, applies it and clears the journal (lock held).
    fn run(&self, _lock: &Locked<'_>, plan: &Plan) {
        point("step.planned");
        let j = &self.state().journal;
        j.new_state.store(plan.state, Ordering::Relaxed);
        j.new_holder.store(plan.holder, Ordering::Relaxed);
        j.reserved.store(plan.reg, Ordering::Relaxed);
        j.group.store(plan.group, Ordering::Relaxed);
        j.mask.store(plan.mask, Ordering::Relaxed);
        j.seq0.store(plan.seq0, Ordering::Relaxed);
        for (cell, &s) in j.slots.iter().zip(&plan.slots[..plan.n]) {
            cell.store(s, Ordering::Relaxed);
        }
        j.n_slots.store(plan.n as u32, Ordering::Relaxed);
        for (i, &(id, val)) in plan.words[..plan.nw].iter().enumerate() {
            j.word_id[i].store(id, Ordering::Relaxed);
            j.word_val[i].store(val, Ordering::Relaxed);
        }
        j.n_words.store(plan.nw as u32, Ordering::Relaxed);
        point("journal.written");
        j.active.store(1, Ordering::Release);
        point("journal.active");
        self.apply_journal(true);
        point("step.queued");
        j.active.store(0, Ordering::Release);
        point("step.done");
    }

    /// Applies the active journal: the slot records, the counters and (with `queue`) the push
    /// of the slots to their new queue. Idempotent apart from the push, which repair replaces
    /// by a rebuild.
    fn apply_journal(&self, queue: bool) {
        let j = &self.state().journal;
        let step = Step {
            state: j.new_state.load(Ordering::Relaxed),
            holder: j.new_holder.load(Ordering::Relaxed),
            reg: j.reserved.load(Ordering::Relaxed),
            group: (j.group.load(Ordering::Relaxed) as usize).min(MAX_GROUPS - 1),
            mask: j.mask.load(Ordering::Relaxed),
        };
        let seq0 = j.seq0.load(Ordering::Relaxed);
        let n = (j.n_slots.load(Ordering::Relaxed) as usize).min(JOURNAL_SLOTS);
        let mut freed = [false; JOURNAL_SLOTS];
        for (i, f) in freed.iter_mut().enumerate().take(n) {
            if i == n / 2 {
                point("apply.slots_half");
            }
            let s = j.slots[i].load(Ordering::Relaxed);
            let Ok(rec) = self.record(s) else { continue };
            *f = set_record(rec, &step, seq0 + i as u64);
            if step.state == STEP_RELEASE {
                // The event is settled: its forwarding intent, if any, is over.
                if let Some(e) = self.readers().get(step.reg as usize) {
                    if e.fwd_slot.load(Ordering::Relaxed) == u64::from(s) + 1 {
                        e.fwd_slot.store(0, Ordering::Relaxed);
                    }
                }
            }
        }
        point("apply.slots");
        let nw = (j.n_words.load(Ordering::Relaxed) as usize).min(JOURNAL_WORDS);
        for i in 0..nw {
            if let Some(w) = self.word(j.word_id[i].load(Ordering::Relaxed)) {
                w.store(j.word_val[i].load(Ordering::Relaxed), Ordering::Release);
            }
        }
        point("apply.words");
        if queue {
            for (i, &f) in freed.iter().enumerate().take(n) {
                let s = j.slots[i].load(Ordering::Relaxed);
                if f {
                    self.empty().push(s);
                } else if step.state == SLOT_FILLED {
                    for g in 0..self.group_capacity() {
                        if step.mask & (1 << g) != 0 {
                            self.filled_of(g).push(s);
                        }
                    }
                }
            }
        }
    }

    /// Makes the ring consistent after taking the lock over from `dead`: replays its journal,
    /// rebuilds the queues from the slot records and returns the slots `dead` held.
    fn repair(&self, dead: u32) {
        let j = &self.state().journal;
        if j.active.load(Ordering::Acquire) == 1 {
            self.apply_journal(false);
            j.active.store(0, Ordering::Release);
        }
        point("repair.rolled");
        self.rebuild_queues();
        let c = &self.state().counters[ctr::REPAIRS];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let lock = Locked { ring: self };
        self.reclaim_slots_locked(&lock, dead);
        std::mem::forget(lock);
    }

    fn rebuild_queues(&self) {
        let empty = self.empty();
        empty.clear();
        let groups = self.group_capacity();
        for g in 0..groups {
            self.filled_of(g).clear();
        }
        let mut committed: Vec<(u64, u32, u32)> = Vec::new();
        for (i, rec) in self.records().iter().enumerate() {
            match rec.state.load(Ordering::Relaxed) {
                SLOT_FREE => {
                    empty.push(i as u32);
                }
                SLOT_FILLED => committed.push((
                    rec.commit_seq.load(Ordering::Relaxed),
                    i as u32,
                    rec.pending.load(Ordering::Relaxed),
                )),
                _ => {}
            }
        }
        committed.sort_unstable();
        for (_, s, pending) in committed {
            for g in 0..groups {
                if pending & (1 << g) != 0 {
                    self.filled_of(g).push(s);
                }
            }
        }
        // The active mask follows the group entries (a registration may have died between
        // its two stores).
        let mut mask = 0u32;
        for (g, e) in self.state().groups.iter().enumerate().take(groups) {
            if e.word.load(Ordering::Relaxed) == GROUP_ACTIVE {
                mask |= 1 << g;
            }
        }
        self.state().active_groups.store(mask, Ordering::Relaxed);
    }

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
        fence(Ordering::SeqCst);
        let mask = st.active_groups.load(Ordering::Relaxed);
        for g in 0..self.group_capacity() {
            let filled = self.filled_of(g);
            if mask & (1 << g) != 0 && filled.waker().waiters.load(Ordering::Relaxed) != 0 {
                filled.notify();
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
        wait_until(self.filled_of(group).waker(), deadline, || {
            self.sweep_while_waiting();
            self.try_acquire_read_many(out, reg, group)
        })
        .ok_or_else(|| Error::Timeout(format!("no event in buffer '{}' in time", self.name())))
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

    fn plan_consumed(&self, plan: &mut Plan, n: u64, how: Disposition, reg: u32, group: usize) {
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

    // ----- recovery -----

    /// Returns the slots `dead` held (lock held): written ones are freed (aborted writes), read
    /// ones are freed and counted as consumed when their forwarding intent shows the event
    /// was delivered, else as lost. Returns `(written, lost)`.
    pub(crate) fn reclaim_slots_locked(&self, lock: &Locked<'_>, dead: u32) -> (u32, u32) {
        let (mut writing, mut lost) = (0u32, 0u32);
        if dead == 0 {
            return (0, 0);
        }
        for (i, rec) in self.records().iter().enumerate() {
            let state = rec.state.load(Ordering::Relaxed);
            if state == SLOT_WRITING && rec.holder.load(Ordering::Relaxed) == dead {
                writing += 1;
                let mut plan = Plan::new(SLOT_FREE, 0, NO_REG);
                plan.slot(i as u32);
                plan.set(
                    ctr::ABORTED_WRITES as u32,
                    self.ctr(ctr::ABORTED_WRITES) + 1,
                );
                point("reclaim.slot");
                self.run(lock, &plan);
                continue;
            }
            if state != SLOT_FILLED {
                continue;
            }
            for g in 0..self.group_capacity() {
                if rec.reading.load(Ordering::Relaxed) & (1 << g) == 0
                    || rec.group_holder[g].load(Ordering::Relaxed) != dead
                {
                    continue;
                }
                let reg = rec.group_reg[g].load(Ordering::Relaxed);
                let mut plan = Plan::new(STEP_RELEASE, 0, reg);
                plan.group = g as u32;
                plan.slot(i as u32);
                if self.forward_delivered(reg, i as u32) {
                    self.plan_consumed(&mut plan, 1, Disposition::Consumed, reg, g);
                } else {
                    lost += 1;
                    plan.set(
                        ctr::LOST_READER_CRASHED as u32,
                        self.ctr(ctr::LOST_READER_CRASHED) + 1,
                    );
                    let gid = W_GROUP_LOST + g as u32;
                    plan.set(gid, self.word_value(gid) + 1);
                }
                point("reclaim.slot");
                self.run(lock, &plan);
            }
        }
        if writing + lost > 0 {
            self.empty().notify_all();
        }
        (writing, lost)
    }

    /// Lets every other buffer that `dead` was forwarding events to finish a step that `dead`
    /// left half done there: the lock is taken over from it and that buffer repaired (its
    /// journal rolled forward). Otherwise reclaiming this buffer first would count an event as
    /// lost whose downstream commit a later repair still completes. Called before this ring's
    /// lock is taken, so ring locks are never nested. (When `dead` held this ring's lock its
    /// steps elsewhere were complete: steps never nest either.)
    pub(crate) fn settle_forward_targets(&self, dead: u32) {
        let own = self.instance_id()[0];
        let mut ids: Vec<u64> = self
            .readers()
            .iter()
            .filter(|e| {
                e.word.load(Ordering::Relaxed) >> 32 == u64::from(dead)
                    && e.fwd_slot.load(Ordering::Acquire) != 0
            })
            .map(|e| e.fwd_ring.load(Ordering::Relaxed))
            .filter(|&id| id != own)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if let Some(ring) = crate::registry::ring(id) {
                drop(ring.locked());
            }
        }
    }

    /// Whether reader registration `reg` recorded that its event in `slot` was being forwarded
    /// and the downstream commit happened.
    fn forward_delivered(&self, reg: u32, slot: u32) -> bool {
        let Some(e) = self.readers().get(reg as usize) else {
            return false;
        };
        if e.fwd_slot.load(Ordering::Acquire) != u64::from(slot) + 1 {
            return false;
        }
        let ring_id = e.fwd_ring.load(Ordering::Relaxed);
        let fwd_reg = e.fwd_reg.load(Ordering::Relaxed);
        let need = e.fwd_commits.load(Ordering::Relaxed);
        crate::registry::writer_commits(ring_id, fwd_reg).is_some_and(|c| c >= need)
    }

    /// Called by waiting endpoints: every [`SWEEP_EVERY`], when no live supervisor watches the
    /// buffer, reclaims the slots and registrations of processes that died.
    fn sweep_while_waiting(&self) {
        // One sweep per SWEEP_EVERY and process (a long wait is often split into many short
        // timed calls, so a per-call timer would never fire).
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now = now_ns();
        let last = LAST.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_nanos() as u64
            || LAST
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let sup = self.state().supervisor_pid.load(Ordering::Relaxed);
        if sup != 0 && plock::process_alive(sup) {
            return;
        }
        self.reclaim_dead();
    }
}

/// The slot change of one journalled step.
struct Step {
    state: u32,
    holder: u32,
    reg: u32,
    group: usize,
    mask: u32,
}

/// Sets one slot record to the state a journal step gives it (idempotent). Returns true when
/// the slot became free (no group needs it any more).
fn set_record(rec: &SlotRecord, step: &Step, seq: u64) -> bool {
    let odd = rec.version.load(Ordering::Relaxed) % 2 == 1;
    let bit = 1u32 << step.group;
    let free = |rec: &SlotRecord| {
        if rec.version.load(Ordering::Relaxed) % 2 == 1 {
            rec.version.fetch_add(1, Ordering::Release);
        }
        rec.pending.store(0, Ordering::Relaxed);
        rec.reading.store(0, Ordering::Relaxed);
        rec.holders.store(0, Ordering::Relaxed);
        rec.state.store(SLOT_FREE, Ordering::Relaxed);
        rec.holder.store(0, Ordering::Relaxed);
        true
    };
    match step.state {
        SLOT_WRITING => {
            rec.holder.store(step.holder, Ordering::Relaxed);
            rec.pending.store(0, Ordering::Relaxed);
            rec.reading.store(0, Ordering::Relaxed);
            rec.holders.store(1, Ordering::Relaxed);
            if !odd {
                // Seqlock: odd while the slot is being filled.
                rec.version.fetch_add(1, Ordering::Relaxed);
            }
            rec.state.store(SLOT_WRITING, Ordering::Relaxed);
            false
        }
        SLOT_FILLED => {
            if step.mask == 0 {
                return free(rec);
            }
            rec.commit_seq.store(seq, Ordering::Relaxed);
            rec.pending.store(step.mask, Ordering::Relaxed);
            rec.reading.store(0, Ordering::Relaxed);
            rec.holders.store(step.mask.count_ones(), Ordering::Relaxed);
            if odd {
                // SYNC POINT: even version (Release) marks the slot stable for observers.
                rec.version.fetch_add(1, Ordering::Release);
            }
            rec.state.store(SLOT_FILLED, Ordering::Relaxed);
            rec.holder.store(0, Ordering::Relaxed);
            false
        }
        STEP_READ => {
            rec.group_holder[step.group].store(step.holder, Ordering::Relaxed);
            rec.group_reg[step.group].store(step.reg, Ordering::Relaxed);
            rec.reading
                .store(rec.reading.load(Ordering::Relaxed) | bit, Ordering::Relaxed);
            rec.pending.store(
                rec.pending.load(Ordering::Relaxed) & !bit,
                Ordering::Relaxed,
            );
            false
        }
        STEP_RELEASE | STEP_UNPEND => {
            if rec.state.load(Ordering::Relaxed) != SLOT_FILLED {
                return false; // replayed after the slot was already freed
            }
            if step.state == STEP_RELEASE {
                rec.reading.store(
                    rec.reading.load(Ordering::Relaxed) & !bit,
                    Ordering::Relaxed,
                );
                rec.group_holder[step.group].store(0, Ordering::Relaxed);
            } else {
                rec.pending.store(
                    rec.pending.load(Ordering::Relaxed) & !bit,
                    Ordering::Relaxed,
                );
            }
            let left = rec.pending.load(Ordering::Relaxed) | rec.reading.load(Ordering::Relaxed);
            rec.holders.store(left.count_ones(), Ordering::Relaxed);
            if left == 0 {
                free(rec)
            } else {
                false
            }
        }
        _ => free(rec),
    }
}
