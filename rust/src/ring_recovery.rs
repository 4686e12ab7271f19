//! Recovery of a [`Ring`] from dead processes: the slots a dead process held are returned
//! (written ones aborted; read ones released for their group, as consumed when the reader had
//! forwarded the event, else lost), and waiting endpoints sweep for dead processes when no
//! supervisor does. No unsafe code.
#![forbid(unsafe_code)]

use crate::clock::now_ns;
use crate::fault::point;
use crate::layout::{ctr, SLOT_FILLED, SLOT_FREE, SLOT_WRITING, STEP_RELEASE};
use crate::plock;
use crate::ring::Ring;
use crate::ring_protocol::{Disposition, Locked, Plan, NO_REG, SWEEP_EVERY, W_GROUP_LOST};
use crate::sync::{AtomicU64, Ordering};

impl Ring {
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
            if let Some(ring) = mapped_ring(id) {
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
        let Ok(fwd_reg) = usize::try_from(fwd_reg) else {
            return false;
        };
        mapped_ring(ring_id)
            .and_then(|ring| ring.writer_events(fwd_reg))
            .is_some_and(|c| c >= need)
    }

    /// Called by waiting endpoints: every [`SWEEP_EVERY`], when no live supervisor watches the
    /// buffer, reclaims the slots and registrations of processes that died.
    pub(crate) fn sweep_while_waiting(&self) {
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

/// A handle on buffer `id`, if this process maps it (see [`crate::registry`]).
fn mapped_ring(id: u64) -> Option<Ring> {
    Ring::from_shared(crate::registry::mapping(id)?).ok()
}
