//! Crash consistency of the slot protocol, shown by deterministic fault injection (issue 10.2).
//!
//! For every fault point of [`mimocorb2_core::fault::POINTS`] and every protocol path of [`PATHS`], a child process
//! attaches the buffer and runs the path with `MIMOCORB2_FAULT=<point>@<k>`, so that it aborts
//! (no unwinding, no cleanup: as `kill -9` would end it) the k-th time it reaches that step.
//! A child that ends normally never reached the point on that path ("not reached"); every point
//! must be reached by at least one path. After each crash the parent recovers as the supervisor
//! does and checks:
//!
//! - the next lock acquisition takes the dead child's lock over and repairs the ring (the
//!   `repairs` counter grows by one), and `Ring::reclaim` returns the child's slots;
//! - every slot is in exactly one queue (nobody alive holds one), the records agree with the
//!   queues, the filled queue is in commit order and the journal is inactive;
//! - the counters balance: committed = consumed + lost + overwritten + still filled, and the
//!   per-registration counts add up to the buffer's;
//! - every event committed and not consumed is delivered exactly once, in commit order, with
//!   gapless event counters; a forwarded event counts as consumed upstream exactly when it was
//!   committed downstream;
//! - more events can be written afterwards, and finishing the writers ends the buffer: readers
//!   receive those events and then the end.
//!
//! The children are this test binary: the parent runs `current_exe() --exact child_entry` with
//! [`common::ROLE`] set, and `child_entry` does nothing without it. The process and crash
//! harness is shared with `fault_injection_groups` and `shm_multiprocess` (`common/`).
//!
//! Run: `cargo test --features fault-injection --test fault_injection`.
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

#[path = "common/mod.rs"]
mod common;
#[path = "common/crash.rs"]
mod crash;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mimocorb2_core::layout::{SLOT_FILLED, SLOT_FREE};
use mimocorb2_core::{Error, Observer, Reader, Ring, Writer};

use common::{attach, env_num, parse, payload, Event, DATA, RING, ROW, T};
use crash::{
    check_registrations, died, kill_victim, recover, s, spawn, write_n, Case, BATCH, ITER, PARENT,
    PRE, RING2, ROUNDS, SLOTS, VICTIM,
};

/// Payload tag of the events the child writes.
const CHILD: u64 = 2;

/// The protocol paths a child runs until it dies.
const PATHS: [&str; 7] = [
    "write",
    "write_batch",
    "read",
    "read_batch",
    "observe",
    "reclaim",
    "forward",
];

// ----- child side -----

fn child_main(role: &str) -> Result<(), String> {
    let ring = attach(RING)?;
    let mut row = [0u8; ROW];
    match role {
        "write" => {
            let mut w = Writer::new(ring.clone()).map_err(|e| s(&e))?;
            for i in 0..ITER {
                let slot = w.acquire(T).map_err(|e| s(&e))?;
                ring.copy_in(slot, &payload(CHILD, i), false);
                w.commit(true).map_err(|e| s(&e))?;
            }
            w.finish();
        }
        "write_batch" => {
            let mut w = Writer::new(ring.clone()).map_err(|e| s(&e))?;
            let mut i = 0;
            for _ in 0..ROUNDS {
                let src: Vec<u8> = (i..i + BATCH as u64)
                    .flat_map(|j| payload(CHILD, j))
                    .collect();
                let n = w
                    .write_batch(&src, BATCH, false, true, T)
                    .map_err(|e| s(&e))?;
                i += n as u64;
            }
            w.finish();
        }
        "read" => crash::read_events(Reader::new(ring))?,
        "read_batch" => crash::read_batches(Reader::new(ring))?,
        "observe" => {
            let mut ob = Observer::new(ring.clone());
            for _ in 0..ITER {
                match ob.observe(&mut row, Some(Duration::from_millis(1))) {
                    Ok(_) | Err(Error::Timeout(_)) => {}
                    Err(e) => return Err(s(&e)),
                }
            }
        }
        // Holds a slot for writing and one for reading, then dies inside a read step.
        "victim" => crash::victim(&ring, || Ok(Reader::new(ring.clone())))?,
        "raw_read" => {
            // A reader without registration: only the lock word names it.
            ring.try_acquire_read().map_err(|e| s(&e))?;
        }
        "reclaim" => {
            ring.reclaim(env_num(VICTIM)?);
        }
        "forward" => {
            let dst = attach(RING2)?;
            crash::forward(Reader::new(ring), &dst)?;
        }
        other => return Err(format!("unknown role {other}")),
    }
    Ok(())
}

/// The children's entry point; a no-op in a normal test run.
#[test]
fn child_entry() {
    common::child_entry(child_main);
}

// ----- parent side -----

fn create(name: &str) -> Arc<Ring> {
    let name = format!("fi-{name}-{}", std::process::id());
    Arc::new(Ring::create(&name, SLOTS, DATA, "[]", false).unwrap())
}

/// Every slot in exactly one queue, records agreeing, filled queue in commit order, lock free,
/// journal inactive, counters balanced.
fn check_consistent(ring: &Ring, what: &str) {
    let a = ring.audit();
    assert_eq!(a.lock_holder, 0, "{what}: the lock is still held");
    assert!(!a.journal_active, "{what}: the journal is still active");
    let mut seen = vec![0u32; ring.slot_count() as usize];
    for (q, want) in [(&a.empty, SLOT_FREE), (&a.filled, SLOT_FILLED)] {
        for &t in q {
            seen[t as usize] += 1;
            assert_eq!(a.slots[t as usize].state, want, "{what}: slot {t}: {a:?}");
        }
    }
    assert!(
        seen.iter().all(|&c| c == 1),
        "{what}: a slot is in no queue or in two: {seen:?} {a:?}"
    );
    let seqs: Vec<u64> = a
        .filled
        .iter()
        .map(|&t| a.slots[t as usize].commit_seq)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "{what}: filled queue out of commit order: {seqs:?}"
    );
    let st = ring.stats();
    assert_eq!(
        st.empty_slots + st.filled_slots + st.held_slots,
        st.slot_count,
        "{what}: {st:?}"
    );
    assert_eq!(st.held_slots, 0, "{what}: {st:?}");
    assert_eq!(
        st.event_count,
        st.consumed + st.lost + st.overwritten + u64::from(st.filled_slots),
        "{what}: committed != consumed + lost + overwritten + filled: {st:?}"
    );
    check_registrations(ring, what);
}

/// Delivers what is left in `ring` (it must be `want`) to one reader, writes [`crash::MORE`]
/// events through `pw` (if any), finishes it and checks that the reader gets them and then the
/// end, and that every slot is free again.
fn deliver_and_end(ring: &Arc<Ring>, pw: Option<Writer>, want: Vec<Event>, what: &str) {
    let mut readers = [(Reader::new(ring.clone()), want)];
    crash::deliver_and_end(ring, pw, &mut readers, what);
    drop(readers);
    check_consistent(ring, what);
    crash::assert_all_free(ring, what);
}

/// Runs `path` with the child dying at `point@k`, recovers and checks everything.
fn run_case(path: &str, point: &str, k: u64) -> Case {
    let what = format!("{path} / {point}@{k}");
    let fault = format!("{point}@{k}");
    let ring = create(path);
    let mut pw = Writer::new(ring.clone()).unwrap();
    let reading = !path.starts_with("write");
    if reading {
        write_n(&mut pw, 0, PRE);
    }
    let dst = (path == "forward").then(|| create("forward-dst"));
    let mut crashes = 0;
    let victim = (path == "reclaim").then(|| kill_victim(&ring, &what));
    crashes += u32::from(victim.is_some());
    let mut child = spawn(path, &ring, dst.as_deref(), Some(&fault), victim);
    let pid = child.id();
    let reached = died(&mut child, &what);
    crashes += u32::from(reached);

    // The child holds the lock of one ring exactly when it died inside a step.
    let rings: Vec<&Arc<Ring>> = std::iter::once(&ring).chain(dst.as_ref()).collect();
    recover(&rings, pid, reached && point != "forward.intent", &what);
    if let Some(v) = victim {
        crash::reclaim_victim(&ring, v, 0, &what);
    }
    for r in &rings {
        check_consistent(r, &what);
    }

    let st = ring.stats();
    let want: Vec<Event> = if reading {
        let f = u64::from(st.filled_slots);
        assert_eq!(st.event_count, PRE, "{what}");
        crash::parent_events(PRE - f..PRE)
    } else {
        assert_eq!((st.consumed, st.lost), (0, 0), "{what}");
        (0..st.event_count).map(|i| (i, CHILD, i)).collect()
    };
    if let Some(d) = &dst {
        let ds = d.stats();
        assert_eq!(
            ds.event_count, st.consumed,
            "{what}: events committed downstream = events consumed upstream (delivered once): \
             up {st:?} down {ds:?}"
        );
        let fwd = crash::parent_events(0..ds.event_count);
        deliver_and_end(d, None, fwd, &format!("{what} (downstream)"));
    }
    deliver_and_end(&ring, Some(pw), want, &what);
    Case { reached, crashes }
}

#[test]
fn crash_at_every_point_of_every_path() {
    crash::crash_at_every_point("path", &PATHS, run_case);
}

/// A process that dies inside a step holding nothing but the lock (an unregistered reader that
/// popped the only event before its journal was written) is found by a waiting reader's sweep
/// when no supervisor watches the buffer: the event comes back instead of the reader waiting
/// until the next write.
#[test]
fn waiting_reader_repairs_a_lock_left_by_an_unregistered_process() {
    let ring = create("raw");
    let mut pw = Writer::new(ring.clone()).unwrap();
    write_n(&mut pw, 0, 1);
    let mut child = spawn("raw_read", &ring, None, Some("journal.written@1"), None);
    assert!(died(&mut child, "raw_read"), "the reader died in its step");
    assert_eq!(ring.audit().lock_holder, child.id());
    assert_eq!(ring.stats().filled_slots, 0, "the popped token is gone");
    let mut rd = Reader::new(ring.clone());
    let t0 = Instant::now();
    let slot = rd.acquire(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let mut row = [0u8; ROW];
    ring.copy_out(slot, &mut row);
    assert_eq!(parse(&row), (0, PARENT, 0));
    rd.release().unwrap();
    assert_eq!(ring.stats().repairs, 1);
    check_consistent(&ring, "raw_read");
    deliver_and_end(&ring, Some(pw), vec![], "raw_read");
}
