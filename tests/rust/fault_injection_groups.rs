//! Crash consistency of the reader-group paths (issue 15), by deterministic fault injection.
//!
//! The companion of `fault_injection.rs` for every-group buffers (`DELIVERY_EVERY_GROUP`). The
//! source buffer has three groups, registered in the order `b`, `a`, `c` (so the crashing
//! group `a` is not group 0):
//!
//! - `a`: the child process reads in it (paths `read`, `read_batch`, `forward`; in `reclaim` a
//!   victim read in it and the child dies while reclaiming the victim);
//! - `b`: nobody reads it during the crash, every event is still pending for it;
//! - `c`: the parent holds the first [`HOLD`] events in it (one reader each) while the child
//!   reads them in `a`, so their slots are read by two groups at the crash.
//!
//! For every fault point of [`mimocorb2_core::fault::POINTS`], every path of [`PATHS`] and
//! every k of [`crash::KS`] the child dies (abort, as `kill -9` would end it) the k-th time it
//! reaches the point. The parent then recovers as the supervisor does and checks:
//!
//! - the lock is taken over and the ring repaired exactly when the child died inside a step;
//!   reclaim is idempotent and forgets the child;
//! - every slot is in exactly one place: in the free queue (free record, empty masks), or
//!   committed with a non-empty `pending | reading` mask where `pending` is exactly the set of
//!   group queues holding the slot, and `reading` exactly the groups whose live reader (the
//!   parent) holds it; the group queues are in commit order; lock free, journal inactive;
//! - the crashed reader's slots are released for group `a` only: the loss is counted for `a`
//!   only (`group_stats()`), `b` and `c` lost and consumed nothing, and the parent still holds
//!   its `c` slots (it can release them);
//! - per group, committed since it joined = consumed + lost + overwritten + backlog + held, and
//!   the buffer-wide consumed and lost are the sums over the groups;
//! - every group still receives every event it has not consumed or lost exactly once, in
//!   commit order: `b` all of them, `c` the held ones and then the rest, `a` the events after
//!   those the child consumed or lost; a forwarded event counts as consumed for `a` exactly
//!   when it was committed downstream (the downstream buffer is an every-group buffer too, of
//!   two groups that both receive every forwarded event);
//! - more events can be written, and finishing the writers ends every group's stream.
//!
//! The process and crash harness is shared with `fault_injection` (`common/`).
//!
//! Run: `cargo test --no-default-features --features fault-injection --test
//! fault_injection_groups`.
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

#[path = "common/mod.rs"]
mod common;
#[path = "common/crash.rs"]
mod crash;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimocorb2_core::layout::{DELIVERY_EVERY_GROUP, SLOT_FILLED, SLOT_FREE, SLOT_READING};
use mimocorb2_core::{Reader, Ring, Writer, NO_REG};

use common::{attach, env_num, parse, Event, DATA, RING, ROW, T};
use crash::{
    check_registrations, died, kill_victim, parent_events, recover, s, spawn, write_n, Case, BATCH,
    MORE, PARENT, PRE, RING2, SLOTS, VICTIM,
};

/// Events the parent holds in group `c` during the crash (the first ones).
const HOLD: u64 = 2;
/// The child reads in this group; `PENDING` is never read before the recovery, the parent
/// holds events in `HOLDING`.
const CHILD_GROUP: &str = "a";
const PENDING: &str = "b";
const HOLDING: &str = "c";
/// Groups of the downstream buffer of the forward path.
const DST_GROUPS: [&str; 2] = ["x", "y"];

const PATHS: [&str; 4] = ["read", "read_batch", "reclaim", "forward"];

// ----- child side -----

fn child_main(role: &str) -> Result<(), String> {
    let ring = attach(RING)?;
    let reader = || Reader::with_group(ring.clone(), Some(CHILD_GROUP)).map_err(|e| s(&e));
    match role {
        "read" => crash::read_events(reader()?),
        "read_batch" => crash::read_batches(reader()?),
        "victim" => crash::victim(&ring, reader),
        "reclaim" => {
            ring.reclaim(env_num(VICTIM)?);
            Ok(())
        }
        "forward" => {
            let dst = attach(RING2)?;
            crash::forward(reader()?, &dst)
        }
        "raw_hold" => {
            // An unregistered reader of group `a` dies holding an event outside any step.
            let g = ring.group_index(Some(CHILD_GROUP)).map_err(|e| s(&e))?;
            let mut one = [0u32];
            let n = ring
                .acquire_read_many(
                    &mut one,
                    Some(Instant::now() + Duration::from_secs(10)),
                    NO_REG,
                    g,
                )
                .map_err(|e| s(&e))?;
            if n != 1 {
                return Err("nothing to read".into());
            }
            std::process::abort();
        }
        other => Err(format!("unknown role {other}")),
    }
}

/// The children's entry point; a no-op in a normal test run.
#[test]
fn child_entry() {
    common::child_entry(child_main);
}

// ----- parent side -----

fn create(name: &str) -> Arc<Ring> {
    let name = format!("fig-{name}-{}", std::process::id());
    Arc::new(Ring::create_with(&name, SLOTS, DATA, "[]", false, DELIVERY_EVERY_GROUP).unwrap())
}

/// One group of a buffer as the checks see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ledger {
    consumed: u64,
    lost: u64,
    overwritten: u64,
    backlog: u64,
    held: u64,
}

/// The group ledgers by group index.
fn ledgers(ring: &Ring) -> BTreeMap<usize, Ledger> {
    ring.group_stats()
        .into_iter()
        .map(|g| {
            (
                g.index,
                Ledger {
                    consumed: g.consumed,
                    lost: g.lost,
                    overwritten: g.overwritten,
                    backlog: g.backlog,
                    held: 0,
                },
            )
        })
        .collect()
}

/// Checks where every slot is and that every group's count balances. `held` are the slots the
/// (live) parent holds, with their group; nobody else is alive. Every group joined before the
/// first commit. Returns the group ledgers (with `held` filled in).
fn check_groups(ring: &Ring, held: &[(u32, usize)], what: &str) -> BTreeMap<usize, Ledger> {
    let a = ring.audit();
    assert_eq!(a.lock_holder, 0, "{what}: the lock is still held");
    assert!(!a.journal_active, "{what}: the journal is still active");
    let n = ring.slot_count() as usize;
    let me = std::process::id();
    let mut led = ledgers(ring);
    let groups: Vec<usize> = led.keys().copied().collect();
    assert!(groups.len() >= 2, "{what}: groups {groups:?}");
    // Membership of every slot in the free queue and in each group queue.
    let mut in_empty = vec![0u32; n];
    for &t in &a.empty {
        in_empty[t as usize] += 1;
    }
    let mut in_group = vec![0u32; n];
    for g in 0..ring.group_capacity() {
        let toks = ring.filled_of(g).tokens();
        assert!(
            toks.is_empty() || groups.contains(&g),
            "{what}: queue of unused group {g}: {toks:?}"
        );
        let seqs: Vec<u64> = toks
            .iter()
            .map(|&t| a.slots[t as usize].commit_seq)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{what}: queue of group {g} out of commit order: {seqs:?}"
        );
        for &t in &toks {
            let bit = 1u32 << g;
            assert_eq!(
                in_group[t as usize] & bit,
                0,
                "{what}: slot {t} twice in the queue of group {g}"
            );
            in_group[t as usize] |= bit;
        }
    }
    let mut want_reading = vec![0u32; n];
    for &(slot, g) in held {
        want_reading[slot as usize] |= 1 << g;
        led.get_mut(&g).unwrap().held += 1;
    }
    let mut waiting = 0;
    for (i, v) in a.slots.iter().enumerate() {
        let place = format!("{what}: slot {i} {v:?}");
        if in_empty[i] > 0 {
            assert_eq!(in_empty[i], 1, "{place}: twice in the free queue");
            assert_eq!(v.state, SLOT_FREE, "{place}: in the free queue");
            assert_eq!(
                (v.pending, v.reading, in_group[i]),
                (0, 0, 0),
                "{place}: free and wanted by a group"
            );
            continue;
        }
        assert!(
            v.state == SLOT_FILLED || v.state == SLOT_READING,
            "{place}: neither free nor committed (nobody alive writes)"
        );
        assert!(
            v.pending | v.reading != 0,
            "{place}: committed but no group needs it"
        );
        if v.state == SLOT_FILLED {
            assert_ne!(v.pending, 0, "{place}: the audit shows it waiting");
        }
        assert_eq!(
            v.pending, in_group[i],
            "{place}: pending mask != group queues holding it"
        );
        assert_eq!(
            v.reading, want_reading[i],
            "{place}: reading mask != groups whose live reader holds it"
        );
        for (g, &h) in v.group_holders.iter().enumerate() {
            let want = if v.reading & (1 << g) != 0 { me } else { 0 };
            assert_eq!(h, want, "{place}: reader of group {g}");
        }
        waiting += u32::from(v.pending != 0);
    }
    let st = ring.stats();
    assert_eq!(
        (st.empty_slots, st.filled_slots, st.held_slots),
        (
            a.empty.len() as u32,
            waiting,
            n as u32 - a.empty.len() as u32 - waiting
        ),
        "{what}: {st:?}"
    );
    // Every group joined before the first commit, so it was meant to get every event.
    for (g, l) in &led {
        assert_eq!(
            st.event_count,
            l.consumed + l.lost + l.overwritten + l.backlog + l.held,
            "{what}: group {g}: committed != consumed + lost + overwritten + backlog + held: {l:?}"
        );
    }
    assert_eq!(st.consumed, led.values().map(|l| l.consumed).sum::<u64>());
    assert_eq!(st.lost, led.values().map(|l| l.lost).sum::<u64>());
    assert_eq!(
        st.overwritten,
        led.values().map(|l| l.overwritten).sum::<u64>()
    );
    check_registrations(ring, what);
    led
}

/// Each reader (one per group) must get exactly its `want` now; then [`MORE`] events are
/// written through `pw` (if any) and it is finished: every group gets those events and then
/// the end of the stream, and every slot is free.
fn deliver_and_end(
    ring: &Arc<Ring>,
    pw: Option<Writer>,
    mut readers: Vec<(Reader, Vec<Event>)>,
    what: &str,
) {
    crash::deliver_and_end(ring, pw, &mut readers, what);
    for (rd, _) in &readers {
        let g = rd.group();
        assert!(ring.end_reached_for(g), "{what}: group {g} reached the end");
    }
    drop(readers);
    let led = check_groups(ring, &[], what);
    assert!(led.values().all(|l| l.backlog == 0), "{what}: {led:?}");
    crash::assert_all_free(ring, what);
}

/// Slots taken and given back unwritten first, so that slot order is not commit order (a
/// rebuild of the queues by slot index would show).
const ROTATE: u64 = 5;

fn rotate(ring: &Ring) {
    let mut slots = [0u32; ROTATE as usize];
    assert_eq!(
        ring.try_acquire_write_many(&mut slots).unwrap(),
        Some(slots.len())
    );
    ring.abort_many(&slots).unwrap();
}

/// Runs `path` with the child dying at `point@k`, recovers and checks everything.
fn run_case(path: &str, point: &str, k: u64) -> Case {
    let what = format!("groups {path} / {point}@{k}");
    let fault = format!("{point}@{k}");
    let ring = create(path);
    let gb = ring.group_index(Some(PENDING)).unwrap();
    let ga = ring.group_index(Some(CHILD_GROUP)).unwrap();
    let gc = ring.group_index(Some(HOLDING)).unwrap();
    assert_eq!((gb, ga, gc), (0, 1, 2));
    rotate(&ring);
    let mut pw = Writer::new(ring.clone()).unwrap();
    write_n(&mut pw, 0, PRE);
    // The parent holds the first HOLD events in group c (one reader each).
    let mut holders: Vec<Reader> = (0..HOLD)
        .map(|_| Reader::with_group(ring.clone(), Some(HOLDING)).unwrap())
        .collect();
    let mut held = Vec::new();
    for rd in &mut holders {
        held.push((rd.acquire(T).unwrap().unwrap(), gc));
    }
    // The parent writes to the downstream buffer too (after the recovery), so it ends only
    // when the parent finishes, whether or not the child got as far as registering.
    let dst = (path == "forward").then(|| {
        let d = create("forward-dst");
        for g in DST_GROUPS {
            d.group_index(Some(g)).unwrap();
        }
        let dw = Writer::new(d.clone()).unwrap();
        (d, dw)
    });

    let mut crashes = 0;
    let victim = (path == "reclaim").then(|| kill_victim(&ring, &what));
    crashes += u32::from(victim.is_some());
    let mut child = spawn(
        path,
        &ring,
        dst.as_ref().map(|d| &*d.0),
        Some(&fault),
        victim,
    );
    let pid = child.id();
    let reached = died(&mut child, &what);
    crashes += u32::from(reached);

    let rings: Vec<&Arc<Ring>> = std::iter::once(&ring)
        .chain(dst.as_ref().map(|d| &d.0))
        .collect();
    recover(&rings, pid, reached && point != "forward.intent", &what);
    if let Some(v) = victim {
        crash::reclaim_victim(&ring, v, ROTATE, &what);
        assert!(
            !ring.holders().contains(&v),
            "{what}: victim still recorded"
        );
    }

    // Only group a lost or consumed anything; c still holds its events.
    let led = check_groups(&ring, &held, &what);
    let la = led[&ga];
    assert_eq!(
        led[&gb],
        Ledger {
            backlog: PRE,
            ..Ledger::default()
        },
        "{what}: group b"
    );
    assert_eq!(
        led[&gc],
        Ledger {
            backlog: PRE - HOLD,
            held: HOLD,
            ..Ledger::default()
        },
        "{what}: group c"
    );
    let max_lost = match path {
        "read_batch" => BATCH as u64,
        "reclaim" => 3,
        _ => 1,
    };
    assert!(la.lost <= max_lost, "{what}: group a lost {la:?}");
    if path == "reclaim" {
        assert_eq!((la.lost, la.consumed), (3, 0), "{what}: group a {la:?}");
    }
    let st = ring.stats();
    assert_eq!(st.lost_reader_crashed, la.lost, "{what}: {st:?}");
    assert_eq!(st.event_count, PRE, "{what}");
    if let Some((d, dw)) = dst {
        let ds = d.stats();
        assert_eq!(
            ds.event_count, la.consumed,
            "{what}: events committed downstream = events consumed by group a (delivered once)"
        );
        check_groups(&d, &[], &format!("{what} (downstream)"));
        let readers = DST_GROUPS
            .iter()
            .map(|g| {
                let rd = Reader::with_group(d.clone(), Some(g)).unwrap();
                (rd, parent_events(0..ds.event_count))
            })
            .collect();
        deliver_and_end(&d, Some(dw), readers, &format!("{what} (downstream)"));
    }

    // The parent's slots in c are still its own: releasing them works, they were the first
    // events.
    let mut row = [0u8; ROW];
    for (i, rd) in holders.iter_mut().enumerate() {
        ring.copy_out(rd.held().unwrap(), &mut row);
        assert_eq!(parse(&row), (i as u64, PARENT, i as u64), "{what}");
        rd.release().unwrap();
    }
    drop(holders);
    let readers = vec![
        (
            Reader::with_group(ring.clone(), Some(CHILD_GROUP)).unwrap(),
            parent_events(PRE - la.backlog..PRE),
        ),
        (
            Reader::with_group(ring.clone(), Some(PENDING)).unwrap(),
            parent_events(0..PRE),
        ),
        (
            Reader::with_group(ring.clone(), Some(HOLDING)).unwrap(),
            parent_events(HOLD..PRE),
        ),
    ];
    deliver_and_end(&ring, Some(pw), readers, &what);
    let led = ledgers(&ring);
    let total = PRE + MORE;
    assert_eq!(led[&ga].consumed + led[&ga].lost, total, "{what}: {led:?}");
    assert_eq!((led[&gb].consumed, led[&gb].lost), (total, 0), "{what}");
    assert_eq!((led[&gc].consumed, led[&gc].lost), (total, 0), "{what}");
    Case { reached, crashes }
}

#[test]
fn crash_at_every_point_of_every_group_path() {
    crash::crash_at_every_point("group path", &PATHS, run_case);
}

/// An unregistered reader of one group that dies holding an event outside any step (no lock,
/// no registration names it) is still found by `holders()` and reclaimed by `reclaim_dead`:
/// the event is lost for its group only, and the other group still receives it.
#[test]
fn reclaim_dead_finds_an_unregistered_group_reader() {
    let ring = create("raw-hold");
    let gb = ring.group_index(Some(PENDING)).unwrap();
    let ga = ring.group_index(Some(CHILD_GROUP)).unwrap();
    let mut pw = Writer::new(ring.clone()).unwrap();
    write_n(&mut pw, 0, 1);
    let mut child = spawn("raw_hold", &ring, None, None, None);
    assert!(died(&mut child, "raw_hold"), "the reader aborted");
    assert_eq!(ring.audit().lock_holder, 0);
    assert!(
        ring.holders().contains(&child.id()),
        "holders() names the dead reader of group a: {:?}",
        ring.holders()
    );
    assert_eq!(ring.reclaim_dead(), 1);
    let led = check_groups(&ring, &[], "raw_hold");
    assert_eq!((led[&ga].lost, led[&ga].backlog), (1, 0));
    assert_eq!((led[&gb].lost, led[&gb].backlog), (0, 1));
    let readers = vec![
        (
            Reader::with_group(ring.clone(), Some(CHILD_GROUP)).unwrap(),
            vec![],
        ),
        (
            Reader::with_group(ring.clone(), Some(PENDING)).unwrap(),
            parent_events(0..1),
        ),
    ];
    deliver_and_end(&ring, Some(pw), readers, "raw_hold");
}
