//! The crash harness of the fault-injection tests (`fault_injection`, `fault_injection_groups`),
//! on top of [`crate::common`]: the child's protocol paths, starting a child that dies at a
//! fault point, the recovery as the supervisor does it, delivery checks, and the run over every
//! fault point of every path.
//!
//! Both test crates include it with `#[path = "common/crash.rs"] mod crash;`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mimocorb2_core::fault::POINTS;
use mimocorb2_core::metadata::METADATA_SIZE;
use mimocorb2_core::{Error, Reader, Ring, Writer, NO_REG};

use crate::common::{child_command, parse, payload, ring_env, wait_for, Event, FAULT, ROW, T};

/// The environment prefix of the second buffer of a forwarding child.
pub const RING2: &str = "MIMO_RING2";
pub const SLOTS: u32 = 16;
/// Events the parent commits before a reading child starts.
pub const PRE: u64 = 12;
/// Iterations of a child's loop (single events).
pub const ITER: u64 = 6;
/// Iterations of a child's batch loop, and events per batch.
pub const ROUNDS: u64 = 4;
pub const BATCH: usize = 3;
/// Events the parent writes after the recovery.
pub const MORE: u64 = 5;
/// The child dies the k-th time it reaches the point, for each of these k.
pub const KS: [u64; 5] = [1, 2, 3, 4, 5];
/// Payload tag of the events the parent writes.
pub const PARENT: u64 = 1;
/// The fault that leaves the victim of the reclaim path dead inside its third step (a read of
/// two slots, journal active, records applied): it dies holding the lock, one slot for writing
/// and three for reading.
pub const VICTIM_FAULT: &str = "apply.slots@3";
/// The pid of the victim a reclaiming child reclaims.
pub const VICTIM: &str = "MIMO_VICTIM";
const SIGABRT: i32 = 6;

/// What one case showed.
pub struct Case {
    pub reached: bool,
    pub crashes: u32,
}

// ----- child side -----

pub fn s(e: &Error) -> String {
    e.to_string()
}

/// Reads and releases [`ITER`] events one at a time.
pub fn read_events(mut rd: Reader) -> Result<(), String> {
    let ring = rd.ring().clone();
    let mut row = [0u8; ROW];
    for _ in 0..ITER {
        let slot = rd.acquire(T).map_err(|e| s(&e))?.ok_or("ended")?;
        ring.copy_out(slot, &mut row);
        rd.release().map_err(|e| s(&e))?;
    }
    Ok(())
}

/// Reads [`ROUNDS`] batches of [`BATCH`] events.
pub fn read_batches(mut rd: Reader) -> Result<(), String> {
    let mut dst = vec![0u8; ROW * BATCH];
    for _ in 0..ROUNDS {
        rd.read_batch(&mut dst, BATCH, T).map_err(|e| s(&e))?;
    }
    Ok(())
}

/// Holds a slot for writing and one for reading (with the reader `reader` makes), then dies
/// inside a read step of two more slots in the reader's group (with [`VICTIM_FAULT`]).
pub fn victim(
    ring: &Arc<Ring>,
    reader: impl FnOnce() -> Result<Reader, String>,
) -> Result<(), String> {
    let mut w = Writer::new(ring.clone()).map_err(|e| s(&e))?;
    w.acquire(T).map_err(|e| s(&e))?;
    let mut rd = reader()?;
    rd.acquire(T).map_err(|e| s(&e))?.ok_or("ended")?;
    let mut two = [0u32; 2];
    ring.acquire_read_many(
        &mut two,
        Some(Instant::now() + Duration::from_secs(10)),
        NO_REG,
        rd.group(),
    )
    .map_err(|e| s(&e))?;
    Err("the victim did not die".into())
}

/// Forwards [`ITER`] events from `rd` to `dst`, one at a time, then finishes its writer.
pub fn forward(mut rd: Reader, dst: &Arc<Ring>) -> Result<(), String> {
    let ring = rd.ring().clone();
    let mut row = [0u8; ROW];
    let mut w = Writer::new(dst.clone()).map_err(|e| s(&e))?;
    for _ in 0..ITER {
        let slot = rd.acquire(T).map_err(|e| s(&e))?.ok_or("ended")?;
        ring.copy_out(slot, &mut row);
        rd.mark_forward(&w).map_err(|e| s(&e))?;
        let out = w.acquire(T).map_err(|e| s(&e))?;
        dst.copy_in(out, &row[METADATA_SIZE..], false);
        w.commit(true).map_err(|e| s(&e))?;
        rd.release().map_err(|e| s(&e))?;
    }
    w.finish();
    Ok(())
}

// ----- parent side -----

/// Starts a child of `role` on `ring` (and `dst`), dying at `fault` if given, reclaiming
/// `victim` if given.
pub fn spawn(
    role: &str,
    ring: &Ring,
    dst: Option<&Ring>,
    fault: Option<&str>,
    victim: Option<u32>,
) -> Child {
    let mut cmd = child_command(role, ring);
    if let Some(d) = dst {
        ring_env(&mut cmd, RING2, d);
    }
    if let Some(f) = fault {
        cmd.env(FAULT, f);
    }
    if let Some(v) = victim {
        cmd.env(VICTIM, v.to_string());
    }
    cmd.spawn().unwrap()
}

/// Waits for the child's end (killing it after 30 s); true when it died at its fault point.
pub fn died(child: &mut Child, what: &str) -> bool {
    let st = wait_for(child, Duration::from_secs(30), what);
    if st.signal() == Some(SIGABRT) {
        return true;
    }
    assert!(st.success(), "{what}: child failed: {st}");
    false
}

/// Starts the victim of the reclaim path and checks that it died holding the lock; its pid.
pub fn kill_victim(ring: &Ring, what: &str) -> u32 {
    let mut v = spawn("victim", ring, None, Some(VICTIM_FAULT), None);
    assert!(died(&mut v, what), "{what}: the victim did not die");
    assert_eq!(
        ring.audit().lock_holder,
        v.id(),
        "{what}: victim holds the lock"
    );
    v.id()
}

/// Reclaims the dead victim's slots: three it read, and its write after `aborted_before`
/// writes aborted earlier.
pub fn reclaim_victim(ring: &Ring, victim: u32, aborted_before: u64, what: &str) {
    ring.reclaim(victim);
    let st = ring.stats();
    assert_eq!(
        (st.lost_reader_crashed, st.aborted_writes),
        (3, aborted_before + 1),
        "{what}: the victim's slots: {st:?}"
    );
}

/// Recovers `rings` from the death of `pid` as the supervisor does (every ring in order,
/// upstream first). Checks that `pid` held the lock of one ring exactly when it died `inside` a
/// step, that the next lock acquisition took that lock over and repaired the ring, and that
/// reclaim is idempotent and forgets `pid`.
pub fn recover(rings: &[&Arc<Ring>], pid: u32, inside: bool, what: &str) {
    let held: Vec<bool> = rings.iter().map(|r| r.audit().lock_holder == pid).collect();
    assert_eq!(
        held.iter().filter(|&&h| h).count(),
        usize::from(inside),
        "{what}: lock holders {held:?}"
    );
    let repairs0: Vec<u64> = rings.iter().map(|r| r.stats().repairs).collect();
    for r in rings {
        r.reclaim(pid);
    }
    for ((r, h), r0) in rings.iter().zip(&held).zip(&repairs0) {
        assert_eq!(
            r.stats().repairs,
            r0 + u64::from(*h),
            "{what}: the next lock acquisition takes the dead lock over and repairs"
        );
        assert_eq!(r.reclaim(pid), (0, 0, 0), "{what}: reclaim is idempotent");
        assert!(!r.holders().contains(&pid), "{what}: {pid} still recorded");
    }
}

/// The events the parent wrote with indices `range` (counter = index).
pub fn parent_events(range: std::ops::Range<u64>) -> Vec<Event> {
    range.map(|i| (i, PARENT, i)).collect()
}

/// Writes `n` events tagged [`PARENT`] with indices from `first`.
pub fn write_n(w: &mut Writer, first: u64, n: u64) {
    for i in first..first + n {
        let slot = w.acquire(T).unwrap();
        w.ring().copy_in(slot, &payload(PARENT, i), false);
        w.commit(true).unwrap();
    }
}

/// Reads everything that is there now (without waiting).
pub fn drain(rd: &mut Reader) -> Vec<Event> {
    let ring = rd.ring().clone();
    let mut row = [0u8; ROW];
    let mut got = Vec::new();
    while let Some(Some(slot)) = rd.try_acquire().unwrap() {
        ring.copy_out(slot, &mut row);
        rd.release().unwrap();
        got.push(parse(&row));
    }
    got
}

/// Reads until the end of the stream.
pub fn read_to_end(rd: &mut Reader) -> Vec<Event> {
    let ring = rd.ring().clone();
    let mut row = [0u8; ROW];
    let mut got = Vec::new();
    while let Some(slot) = rd.acquire(T).unwrap() {
        ring.copy_out(slot, &mut row);
        rd.release().unwrap();
        got.push(parse(&row));
    }
    got
}

/// The writers' registrations count every committed event, the readers' every consumed one.
pub fn check_registrations(ring: &Ring, what: &str) {
    let st = ring.stats();
    let regs = ring.registrations();
    let written: u64 = regs.iter().filter(|r| r.writer).map(|r| r.events).sum();
    let released: u64 = regs.iter().filter(|r| !r.writer).map(|r| r.events).sum();
    assert_eq!(written, st.event_count, "{what}: writer counts: {regs:?}");
    assert_eq!(released, st.consumed, "{what}: reader counts: {regs:?}");
}

/// Each reader must get exactly its `want` now; then [`MORE`] events are written through `pw`
/// (if any) and it is finished: the buffer has ended, and every reader gets those events and
/// then the end of its stream.
pub fn deliver_and_end(
    ring: &Ring,
    pw: Option<Writer>,
    readers: &mut [(Reader, Vec<Event>)],
    what: &str,
) {
    for (rd, want) in readers.iter_mut() {
        let g = rd.group();
        assert_eq!(
            &drain(rd),
            want,
            "{what}: group {g}: events left after the crash"
        );
    }
    let committed = ring.stats().event_count;
    let more = if let Some(mut pw) = pw {
        write_n(&mut pw, 1000, MORE);
        assert!(
            pw.finish(),
            "{what}: finishing the last writer ends the buffer"
        );
        MORE
    } else {
        0
    };
    assert!(ring.is_ended(), "{what}: the buffer has ended");
    let want_later: Vec<Event> = (0..more)
        .map(|j| (committed + j, PARENT, 1000 + j))
        .collect();
    for (rd, _) in readers.iter_mut() {
        let g = rd.group();
        assert_eq!(
            read_to_end(rd),
            want_later,
            "{what}: group {g}: events written after the recovery"
        );
    }
}

/// Every slot is free.
pub fn assert_all_free(ring: &Ring, what: &str) {
    let st = ring.stats();
    assert_eq!(
        (st.filled_slots, st.empty_slots),
        (0, SLOTS),
        "{what}: {st:?}"
    );
}

type Tally = BTreeMap<(&'static str, &'static str), (u32, u32)>;

/// Runs `run_case` for every path of `paths` (one thread each), every fault point of
/// [`POINTS`] and every k of [`KS`], prints how many cases died at each point, and checks that
/// every point is reached by at least one path. `label` names a path in the messages.
pub fn crash_at_every_point(
    label: &str,
    paths: &[&'static str],
    run_case: fn(&str, &str, u64) -> Case,
) {
    assert!(
        std::env::var_os(FAULT).is_none(),
        "run the parent without {FAULT}"
    );
    let t0 = Instant::now();
    // (path, point) -> (cases that died at the point, child crashes)
    let tally: Mutex<Tally> = Mutex::new(BTreeMap::new());
    std::thread::scope(|sc| {
        for &path in paths {
            let tally = &tally;
            sc.spawn(move || {
                for &point in POINTS {
                    for k in KS {
                        let c = run_case(path, point, k);
                        let mut t = tally.lock().unwrap();
                        let e = t.entry((path, point)).or_default();
                        e.0 += u32::from(c.reached);
                        e.1 += c.crashes;
                    }
                }
            });
        }
    });
    let t = tally.into_inner().unwrap();
    let crashes: u32 = t.values().map(|e| e.1).sum();
    let mut table = format!("{:<18}", "point");
    for p in paths {
        write!(table, "{p:>12}").unwrap();
    }
    for &point in POINTS {
        write!(table, "\n{point:<18}").unwrap();
        for &p in paths {
            write!(table, "{:>12}", t[&(p, point)].0).unwrap();
        }
    }
    eprintln!(
        "{label}s: cases that died at the point (of {} k values each):\n{}\n{crashes} child \
         crashes in {:.1} s",
        KS.len(),
        table,
        t0.elapsed().as_secs_f64()
    );
    for &point in POINTS {
        assert!(
            paths.iter().any(|&p| t[&(p, point)].0 > 0),
            "fault point {point} is reached by no {label}"
        );
    }
}
