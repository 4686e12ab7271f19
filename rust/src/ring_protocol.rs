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

use std::time::Duration;

use crate::clock::pid;
use crate::fault::point;
use crate::layout::{
    ctr, SlotRecord, GROUP_ACTIVE, JOURNAL_SLOTS, JOURNAL_WORDS, MAX_GROUPS, SLOT_FILLED,
    SLOT_FREE, SLOT_WRITING, STEP_READ, STEP_RELEASE, STEP_UNPEND,
};
use crate::plock::{self, Acquired};
use crate::ring::Ring;
use crate::sync::{AtomicU64, Ordering};

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
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(500);

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
pub(crate) struct Plan {
    pub(crate) state: u32,
    pub(crate) holder: u32,
    pub(crate) reg: u32,
    pub(crate) group: u32,
    pub(crate) mask: u32,
    pub(crate) seq0: u64,
    pub(crate) slots: [u32; JOURNAL_SLOTS],
    pub(crate) n: usize,
    pub(crate) words: [(u32, u64); JOURNAL_WORDS],
    pub(crate) nw: usize,
}

impl Plan {
    pub(crate) fn new(state: u32, holder: u32, reg: u32) -> Plan {
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

    pub(crate) fn full(&self) -> bool {
        self.n == JOURNAL_SLOTS
    }

    pub(crate) fn slot(&mut self, s: u32) {
        self.slots[self.n] = s;
        self.n += 1;
    }

    pub(crate) fn set(&mut self, id: u32, val: u64) {
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
        let how = plock::lock(&self.state().lock, pid());
        let lock = Locked { ring: self };
        if let Acquired::TakenOver(dead) = how {
            self.repair(&lock, dead);
        }
        point("lock.taken");
        lock
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

    pub(crate) fn word_value(&self, id: u32) -> u64 {
        self.word(id).map_or(0, |w| w.load(Ordering::Relaxed))
    }

    /// Writes `plan` to the journal, applies it and clears the journal (lock held).
    pub(crate) fn run(&self, _lock: &Locked<'_>, plan: &Plan) {
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
    fn repair(&self, lock: &Locked<'_>, dead: u32) {
        let j = &self.state().journal;
        if j.active.load(Ordering::Acquire) == 1 {
            self.apply_journal(false);
            j.active.store(0, Ordering::Release);
        }
        point("repair.rolled");
        self.rebuild_queues();
        let c = &self.state().counters[ctr::REPAIRS];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.reclaim_slots_locked(lock, dead);
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
