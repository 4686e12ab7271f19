//! Administration of a [`Ring`]: writer registrations and the end of the buffer, pause and
//! resume, recovery of the slots of dead processes (its statistics are in `ring_stats.rs`).
//! No unsafe code: everything goes through the accessors of `ring.rs`.
//!
//! SYNC POINT (the end handshake): registrations are not under the ring lock; every access to
//! a registration word, `writers_registered`, `expected_writers` and `end_state` is `SeqCst`.
//! The end of a buffer is decided by two sides that each store and then load: a finishing
//! writer stores its word (`writer_done`, `writer_failed`, a reclaim) and then counts the words
//! and loads `expected_writers` (`try_end`); the control stores `expected_writers` and then
//! loads `writers_registered` (`set_expected_writers`). With `SeqCst` these accesses have one
//! total order, so at least one side sees the other's store: the last of them ends the buffer,
//! and an end is never missed (with Acquire/Release both loads could read the old values, a
//! store-buffer reordering, and the buffer would stay open for ever). The compare-and-swaps on
//! the words make taking a free registration exclusive; `end_state` changes only from
//! `END_OPEN`, once.
#![forbid(unsafe_code)]

use crate::error::{Error, Result};
use crate::layout::{
    writer_word, RegEntry, END_DRAINED, END_FORCED, END_OPEN, GROUP_ACTIVE, GROUP_FREE, MAX_GROUPS,
    MAX_WRITERS, REG_ACTIVE, REG_CRASHED, REG_DONE, REG_FREE, REG_RESTARTING,
};
use crate::plock::process_alive;
use crate::ring::Ring;
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
        for g in 0..self.group_capacity() {
            self.filled_of(g).notify_all();
        }
        self.empty().notify_all();
        wake(&self.state().observe, u32::MAX);
    }

    /// Ends the buffer at once: writes are refused from now on; readers still receive every
    /// event committed before, then the end of stream.
    pub fn force_end(&self) {
        let st = self.state();
        // SYNC POINT: the end handshake (module docs); the first end wins.
        let _ =
            st.end_state
                .compare_exchange(END_OPEN, END_FORCED, Ordering::SeqCst, Ordering::SeqCst);
        self.wake_everyone();
    }

    /// Sets how many writers must finish before an orderly end (the control knows this from the
    /// setup before any worker starts, so an early finisher cannot end the buffer).
    /// Lowering it once writers have registered may end the buffer at once.
    pub fn set_expected_writers(&self, n: u32) {
        // SYNC POINT: store `expected_writers`, then load `writers_registered`: one side of the
        // end handshake (module docs); `try_end` is the other.
        self.state().expected_writers.store(n, Ordering::SeqCst);
        if self.state().writers_registered.load(Ordering::SeqCst) > 0 {
            self.try_end();
        }
    }

    /// Registers a writer of process `pid`; returns its registration index. A registration
    /// left by a crashed process of the same worker that is being restarted is taken over (its
    /// commit count continues).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when all registrations are taken.
    pub fn register_writer(&self, pid: u32) -> Result<usize> {
        let tag = worker_tag();
        let entries = self.writers();
        let takeover = entries.iter().position(|e| {
            e.word.load(Ordering::SeqCst) & 0xffff_ffff == REG_RESTARTING
                && e.tag.load(Ordering::Relaxed) == tag
        });
        let order = takeover.into_iter().chain(0..entries.len());
        for i in order {
            let e = &entries[i];
            let w = e.word.load(Ordering::SeqCst);
            let state = w & 0xffff_ffff;
            let ok = (state == REG_FREE || (Some(i) == takeover && state == REG_RESTARTING))
                && e.word
                    .compare_exchange(
                        w,
                        writer_word(pid, REG_ACTIVE),
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    )
                    .is_ok();
            if ok {
                e.tag.store(tag, Ordering::Relaxed);
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

    /// Registers a reader of process `pid` for the ledger; `None` when every registration is
    /// taken (the reader then works without per-worker counts). A finished registration of the
    /// same worker is reused, so its counts continue.
    pub fn register_reader(&self, pid: u32, group: usize) -> Option<usize> {
        let tag = worker_tag();
        let entries = self.readers();
        let reusable = |e: &RegEntry| {
            let st = e.word.load(Ordering::SeqCst) & 0xffff_ffff;
            (st == REG_DONE || st == REG_CRASHED)
                && e.tag.load(Ordering::Relaxed) == tag
                && e.group.load(Ordering::Relaxed) == group as u64
        };
        let order = entries
            .iter()
            .position(reusable)
            .into_iter()
            .chain(0..entries.len());
        for i in order {
            let e = &entries[i];
            let w = e.word.load(Ordering::SeqCst);
            if (w & 0xffff_ffff != REG_FREE && !reusable(e))
                || e.word
                    .compare_exchange(
                        w,
                        writer_word(pid, REG_ACTIVE),
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    )
                    .is_err()
            {
                continue;
            }
            e.tag.store(tag, Ordering::Relaxed);
            e.group.store(group as u64, Ordering::Relaxed);
            e.fwd_slot.store(0, Ordering::Relaxed);
            return Some(i);
        }
        None
    }

    /// The index of reader group `name` (`None`: the default group), registering the group if
    /// it is new. A competing buffer has one group, index 0, whatever the name. A new group
    /// receives the events committed from now on.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when every group of the buffer is taken.
    pub fn group_index(&self, name: Option<&str>) -> Result<usize> {
        if !self.every_group() {
            return Ok(0);
        }
        let name = name.unwrap_or("default");
        let hash = fnv1a(name.as_bytes());
        let groups = &self.state().groups;
        let _lock = self.locked();
        if let Some(g) = groups.iter().position(|e| {
            e.word.load(Ordering::Relaxed) != GROUP_FREE
                && e.name_hash.load(Ordering::Relaxed) == hash
        }) {
            return Ok(g);
        }
        let Some(g) = groups
            .iter()
            .position(|e| e.word.load(Ordering::Relaxed) == GROUP_FREE)
        else {
            return Err(Error::InvalidArgument(format!(
                "buffer '{}': more than {MAX_GROUPS} reader groups (group '{name}')",
                self.name()
            )));
        };
        let e = &groups[g];
        e.name_hash.store(hash, Ordering::Relaxed);
        let bytes = name.as_bytes();
        let n = bytes.len().min(32);
        for (k, word) in e.name.iter().enumerate() {
            let mut chunk = [0u8; 8];
            let lo = (k * 8).min(n);
            let hi = (k * 8 + 8).min(n);
            chunk[..hi - lo].copy_from_slice(&bytes[lo..hi]);
            word.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
        }
        e.name_len.store(n as u64, Ordering::Relaxed);
        e.word.store(GROUP_ACTIVE, Ordering::Release);
        let st = self.state();
        st.active_groups.store(
            st.active_groups.load(Ordering::Relaxed) | (1 << g),
            Ordering::Relaxed,
        );
        Ok(g)
    }

    /// The name of group `g` (up to 32 bytes), empty for a free entry.
    #[must_use]
    pub fn group_name(&self, g: usize) -> String {
        let Some(e) = self.state().groups.get(g) else {
            return String::new();
        };
        let mut bytes: Vec<u8> = e
            .name
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        bytes.truncate((e.name_len.load(Ordering::Relaxed) as usize).min(32));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Per-group statistics: `(index, name, state, backlog, consumed, lost, overwritten)`.
    #[must_use]
    pub fn group_stats(&self) -> Vec<GroupStats> {
        (0..self.group_capacity())
            .filter_map(|g| {
                let e = &self.state().groups[g];
                let state = e.word.load(Ordering::Relaxed);
                (state != GROUP_FREE).then(|| GroupStats {
                    index: g,
                    name: if self.every_group() {
                        self.group_name(g)
                    } else {
                        "default".to_owned()
                    },
                    active: state == GROUP_ACTIVE,
                    backlog: self.filled_of(g).len() as u64,
                    consumed: e.consumed.load(Ordering::Relaxed),
                    lost: e.lost.load(Ordering::Relaxed),
                    overwritten: e.overwritten.load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// Marks reader registration `idx` as finished.
    pub fn reader_done(&self, idx: usize) {
        if let Some(e) = self.readers().get(idx) {
            let w = e.word.load(Ordering::SeqCst);
            if w & 0xffff_ffff == REG_ACTIVE {
                let _ = e.word.compare_exchange(
                    w,
                    (w & !0xffff_ffff) | REG_DONE,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
        }
    }

    /// Events committed so far through writer registration `idx`.
    pub fn writer_events(&self, idx: usize) -> Option<u64> {
        self.writers()
            .get(idx)
            .map(|e| e.events.load(Ordering::Relaxed))
    }

    /// Marks registration `idx` as finished; the buffer ends when no registered writer is
    /// active any more (and at least the expected number finished). Returns true if this call
    /// ended the buffer.
    pub fn writer_done(&self, idx: usize) -> bool {
        if let Some(e) = self.writers().get(idx) {
            let w = e.word.load(Ordering::SeqCst);
            if w & 0xffff_ffff == REG_ACTIVE {
                let _ = e.word.compare_exchange(
                    w,
                    (w & !0xffff_ffff) | REG_DONE,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
        }
        self.try_end()
    }

    /// Records that process `pid` of worker `tag`, expected to write this buffer, ended for good
    /// without a registration (it died or failed before it attached, or its restart never
    /// registered): it counts as a crashed writer, so the buffer does not wait for it. A no-op
    /// when `pid` holds a registration. Returns true if a writer was counted.
    pub fn writer_failed(&self, pid: u32, tag: u64) -> bool {
        let entries = self.writers();
        if entries
            .iter()
            .any(|e| e.word.load(Ordering::SeqCst) >> 32 == u64::from(pid))
        {
            return false;
        }
        let restarting = entries.iter().position(|e| {
            e.word.load(Ordering::SeqCst) & 0xffff_ffff == REG_RESTARTING
                && e.tag.load(Ordering::Relaxed) == tag
        });
        let order = restarting.into_iter().chain(0..entries.len());
        for i in order {
            let e = &entries[i];
            let w = e.word.load(Ordering::SeqCst);
            let st = w & 0xffff_ffff;
            if (st == REG_FREE || (Some(i) == restarting && st == REG_RESTARTING))
                && e.word
                    .compare_exchange(
                        w,
                        writer_word(pid, REG_CRASHED),
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                e.tag.store(tag, Ordering::Relaxed);
                self.try_end();
                return true;
            }
        }
        false
    }

    /// Ends the buffer when every expected writer finished. SYNC POINT: the caller stored its
    /// registration word before; here the words and `expected_writers` are loaded (`SeqCst`,
    /// the end handshake of the module docs).
    pub(crate) fn try_end(&self) -> bool {
        let mut active = 0u32;
        let mut finished = 0u32;
        for e in self.writers() {
            match e.word.load(Ordering::SeqCst) & 0xffff_ffff {
                REG_ACTIVE | REG_RESTARTING => active += 1,
                REG_DONE | REG_CRASHED => finished += 1,
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

    /// Declares process `pid` the supervisor of this buffer: while it lives, it reclaims dead
    /// processes, and waiting endpoints leave that to it.
    pub fn set_supervisor(&self, pid: u32) {
        // SYNC POINT: `SeqCst` so that a waiting endpoint's liveness check of the supervisor
        // (`sweep_while_waiting`) sees it before any worker of the run starts.
        self.state().supervisor_pid.store(pid, Ordering::SeqCst);
    }

    /// Records the wait of a writer (for the buffer's dead-time statistics).
    pub fn account_writer_time(&self, wait_ns: u64, elapsed_ns: u64) {
        let st = self.state();
        st.wait_ns.fetch_add(wait_ns, Ordering::Relaxed);
        st.elapsed_ns.fetch_add(elapsed_ns, Ordering::Relaxed);
    }

    /// Pauses: writers get the discard slot until [`Ring::resume`].
    pub fn pause(&self) {
        // SYNC POINT: the flag is a hint read Relaxed by writers before they take the lock;
        // `SeqCst` orders it before the wake-up of sleeping writers (which then see it).
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

    /// Returns every slot that process `dead_pid` held and ends its registrations (its writers
    /// count as crashed, hence finished). Only for processes known to be dead. Returns
    /// `(slots it was writing, events lost with it, writer registrations closed)`.
    pub fn reclaim(&self, dead_pid: u32) -> (u32, u32, u32) {
        self.reclaim_inner(dead_pid, false)
    }

    /// Like [`Ring::reclaim`] for a process that will be started again: its writer
    /// registrations wait for the replacement (neither active nor finished), so the buffer
    /// stays open for it.
    pub fn reclaim_for_restart(&self, dead_pid: u32) -> (u32, u32, u32) {
        self.reclaim_inner(dead_pid, true)
    }

    fn reclaim_inner(&self, dead_pid: u32, restart: bool) -> (u32, u32, u32) {
        if dead_pid == 0 {
            return (0, 0, 0);
        }
        self.settle_forward_targets(dead_pid);
        let (writing, lost) = {
            let lock = self.locked();
            self.reclaim_slots_locked(&lock, dead_pid)
        };
        let mut writers = 0;
        for e in self.writers() {
            let w = e.word.load(Ordering::SeqCst);
            let new = if restart {
                writer_word(dead_pid, REG_RESTARTING)
            } else {
                writer_word(dead_pid, REG_CRASHED)
            };
            if w == writer_word(dead_pid, REG_ACTIVE)
                && e.word
                    .compare_exchange(w, new, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                writers += 1;
            }
        }
        for e in self.readers() {
            let w = e.word.load(Ordering::SeqCst);
            if w == writer_word(dead_pid, REG_ACTIVE) {
                let _ = e.word.compare_exchange(
                    w,
                    writer_word(dead_pid, REG_CRASHED),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
        }
        if writers > 0 && !restart {
            self.try_end();
        }
        (writing, lost, writers)
    }

    /// Reclaims every process that holds a slot or a registration of this buffer and is dead
    /// (what the supervisor does; waiting endpoints do it when there is no supervisor).
    /// Returns how many processes were reclaimed.
    pub fn reclaim_dead(&self) -> u32 {
        let mut n = 0;
        for p in self.holders() {
            if !process_alive(p) {
                self.reclaim(p);
                n += 1;
            }
        }
        n
    }

    /// Process ids currently holding slots, registrations or the ring lock (for the
    /// supervisor's liveness checks). The lock holder counts: a process that died inside a
    /// step may hold nothing else yet (an unregistered reader that has only popped tokens).
    /// Readers of a committed slot are named by its per-group holders (its `holder` is the
    /// writer's only).
    #[must_use]
    pub fn holders(&self) -> Vec<u32> {
        let lock = self.state().lock.load(Ordering::Relaxed) & !crate::plock::SLEEPERS;
        let groups = self.group_capacity();
        let mut v: Vec<u32> = self
            .records()
            .iter()
            .flat_map(|r| {
                let reading = r.reading.load(Ordering::Relaxed);
                std::iter::once(r.holder.load(Ordering::Relaxed)).chain(
                    (0..groups)
                        .filter(move |g| reading & (1 << g) != 0)
                        .map(|g| r.group_holder[g].load(Ordering::Relaxed)),
                )
            })
            .chain(std::iter::once(lock))
            .chain(self.writers().iter().chain(self.readers()).filter_map(|e| {
                let w = e.word.load(Ordering::Relaxed);
                (w & 0xffff_ffff == REG_ACTIVE).then_some((w >> 32) as u32)
            }))
            .filter(|&p| p != 0)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The worker tag of this process: `MIMOCORB2_WORKER_TAG` (set by the control for the
/// processes of each worker), 0 when unset.
pub fn worker_tag() -> u64 {
    static TAG: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| {
        std::env::var("MIMOCORB2_WORKER_TAG")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// Statistics of one reader group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStats {
    /// Group index.
    pub index: usize,
    /// Group name.
    pub name: String,
    /// Still receiving events (its worker has not ended).
    pub active: bool,
    /// Events waiting for the group.
    pub backlog: u64,
    /// Events its readers released.
    pub consumed: u64,
    /// Events it lost.
    pub lost: u64,
    /// Events overwritten before it read them.
    pub overwritten: u64,
}

/// 64-bit FNV-1a hash (group names).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
