//! Crash consistency of the slot protocol, shown by deterministic fault injection (issue 10.2).
//!
//! For every fault point of [`POINTS`] and every protocol path of [`PATHS`], a child process
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
//! [`ROLE`] set, and `child_entry` does nothing without it.
//!
//! Run: `cargo test --features fault-injection --test fault_injection`.
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mimocorb2_core::fault::POINTS;
use mimocorb2_core::layout::{SLOT_FILLED, SLOT_FREE};
use mimocorb2_core::metadata::{SlotMetadata, METADATA_SIZE};
use mimocorb2_core::{Error, Observer, Reader, Ring, Writer, NO_REG};

/// Names the child's role; unset in the parent.
const ROLE: &str = "FI_ROLE";
const FAULT: &str = "MIMOCORB2_FAULT";
/// Bound of every blocking call.
const T: Option<Duration> = Some(Duration::from_secs(10));
const SLOTS: u32 = 16;
const DATA: u64 = 16;
const ROW: usize = METADATA_SIZE + DATA as usize;
/// Events the parent commits before a reading child starts.
const PRE: u64 = 12;
/// Iterations of a child's loop (single events).
const ITER: u64 = 6;
/// Iterations of a child's batch loop, and events per batch.
const ROUNDS: u64 = 4;
const BATCH: usize = 3;
/// Events the parent writes after the recovery.
const MORE: u64 = 5;
/// The child dies the k-th time it reaches the point, for each of these k.
const KS: [u64; 5] = [1, 2, 3, 4, 5];
/// Payload tags of the events the parent and the child write.
const PARENT: u64 = 1;
const CHILD: u64 = 2;
/// The fault that leaves the victim of the reclaim path dead inside its third step (a read of
/// two slots, journal active, records applied): it dies holding the lock, one slot for writing
/// and three for reading.
const VICTIM_FAULT: &str = "apply.slots@3";
const SIGABRT: i32 = 6;

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

fn payload(a: u64, b: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&a.to_le_bytes());
    p[8..].copy_from_slice(&b.to_le_bytes());
    p
}

/// `(event counter, tag, index)` of one metadata + data row.
fn parse(row: &[u8]) -> (u64, u64, u64) {
    let md = SlotMetadata::from_bytes(row[..METADATA_SIZE].try_into().unwrap());
    let d = &row[METADATA_SIZE..ROW];
    let a = u64::from_le_bytes(d[..8].try_into().unwrap());
    let b = u64::from_le_bytes(d[8..].try_into().unwrap());
    (md.counter as u64, a, b)
}

// ----- child side -----

fn env(key: &str) -> Result<String, String> {
    std::env::var(key).map_err(|_| format!("{key} not set"))
}

fn env_num<N: std::str::FromStr>(key: &str) -> Result<N, String> {
    env(key)?
        .parse()
        .map_err(|_| format!("{key} is not a number"))
}

/// Attaches the buffer described by `<prefix>_PID`, `<prefix>_FD`, `<prefix>_INST`.
fn attach(prefix: &str) -> Result<Arc<Ring>, String> {
    let pid = env_num(&format!("{prefix}_PID"))?;
    let fd = env_num(&format!("{prefix}_FD"))?;
    let inst = env(&format!("{prefix}_INST"))?;
    let (a, b) = inst.split_once(':').ok_or("bad instance")?;
    let id = [
        a.parse().map_err(|_| "bad id")?,
        b.parse().map_err(|_| "bad id")?,
    ];
    Ring::attach(pid, fd, Some(id))
        .map(Arc::new)
        .map_err(|e| format!("attach: {e}"))
}

fn s(e: &Error) -> String {
    e.to_string()
}

fn child_main(role: &str) -> Result<(), String> {
    let ring = attach("FI")?;
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
        "read" => {
            let mut rd = Reader::new(ring.clone());
            for _ in 0..ITER {
                let slot = rd.acquire(T).map_err(|e| s(&e))?.ok_or("ended")?;
                ring.copy_out(slot, &mut row);
                rd.release().map_err(|e| s(&e))?;
            }
        }
        "read_batch" => {
            let mut rd = Reader::new(ring.clone());
            let mut dst = vec![0u8; ROW * BATCH];
            for _ in 0..ROUNDS {
                rd.read_batch(&mut dst, BATCH, T).map_err(|e| s(&e))?;
            }
        }
        "observe" => {
            let mut ob = Observer::new(ring.clone());
            for _ in 0..ITER {
                match ob.observe(&mut row, Some(Duration::from_millis(1))) {
                    Ok(_) | Err(Error::Timeout(_)) => {}
                    Err(e) => return Err(s(&e)),
                }
            }
        }
        "victim" => {
            // Holds a slot for writing and one for reading, then dies inside a read step of
            // two more slots (MIMOCORB2_FAULT = VICTIM_FAULT).
            let mut w = Writer::new(ring.clone()).map_err(|e| s(&e))?;
            w.acquire(T).map_err(|e| s(&e))?;
            let mut rd = Reader::new(ring.clone());
            rd.acquire(T).map_err(|e| s(&e))?.ok_or("ended")?;
            let mut two = [0u32; 2];
            ring.acquire_read_many(
                &mut two,
                Some(Instant::now() + Duration::from_secs(10)),
                NO_REG,
                0,
            )
            .map_err(|e| s(&e))?;
            return Err("the victim did not die".into());
        }
        "raw_read" => {
            // A reader without registration: only the lock word names it.
            ring.try_acquire_read().map_err(|e| s(&e))?;
        }
        "reclaim" => {
            let victim: u32 = env_num("FI_VICTIM")?;
            ring.reclaim(victim);
        }
        "forward" => {
            let dst = attach("FI2")?;
            let mut rd = Reader::new(ring.clone());
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
        }
        other => return Err(format!("unknown role {other}")),
    }
    Ok(())
}

/// The children's entry point; a no-op in a normal test run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let code = match child_main(&role) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("child {role} (pid {}): {e}", std::process::id());
            3
        }
    };
    std::process::exit(code);
}

// ----- parent side -----

fn create(name: &str) -> Arc<Ring> {
    let name = format!("fi-{name}-{}", std::process::id());
    Arc::new(Ring::create(&name, SLOTS, DATA, "[]", false).unwrap())
}

fn ring_env(cmd: &mut Command, prefix: &str, ring: &Ring) {
    let [a, b] = ring.instance_id();
    cmd.env(format!("{prefix}_PID"), std::process::id().to_string())
        .env(format!("{prefix}_FD"), ring.raw_fd().to_string())
        .env(format!("{prefix}_INST"), format!("{a}:{b}"));
}

/// Starts a child of `role` on `ring` (and `dst`), dying at `fault` if given.
fn spawn(
    role: &str,
    ring: &Ring,
    dst: Option<&Ring>,
    fault: Option<&str>,
    extra: &[(&str, String)],
) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env_remove(FAULT)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    ring_env(&mut cmd, "FI", ring);
    if let Some(d) = dst {
        ring_env(&mut cmd, "FI2", d);
    }
    if let Some(f) = fault {
        cmd.env(FAULT, f);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits for the child's end (killing it after 30 s); true when it died at its fault point.
fn died(child: &mut Child, what: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let st: ExitStatus = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: child did not end in time");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if st.signal() == Some(SIGABRT) {
        return true;
    }
    assert!(st.success(), "{what}: child failed: {st}");
    false
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
    let regs = ring.registrations();
    let written: u64 = regs.iter().filter(|r| r.writer).map(|r| r.events).sum();
    let released: u64 = regs.iter().filter(|r| !r.writer).map(|r| r.events).sum();
    assert_eq!(written, st.event_count, "{what}: writer counts: {regs:?}");
    assert_eq!(released, st.consumed, "{what}: reader counts: {regs:?}");
}

/// Reads everything that is there now (without waiting).
fn drain(rd: &mut Reader, ring: &Ring) -> Vec<(u64, u64, u64)> {
    let mut row = [0u8; ROW];
    let mut got = Vec::new();
    while let Some(Some(slot)) = rd.try_acquire().unwrap() {
        ring.copy_out(slot, &mut row);
        rd.release().unwrap();
        got.push(parse(&row));
    }
    got
}

/// Writes `n` events tagged `PARENT` with indices from `first`.
fn write_n(w: &mut Writer, first: u64, n: u64) {
    for i in first..first + n {
        let slot = w.acquire(T).unwrap();
        w.ring().copy_in(slot, &payload(PARENT, i), false);
        w.commit(true).unwrap();
    }
}

/// Delivers what is left in `ring` (it must be `want`), writes [`MORE`] events through `pw`
/// (if any), finishes it and checks that a reader gets them and then the end.
fn deliver_and_end(ring: &Arc<Ring>, pw: Option<Writer>, want: &[(u64, u64, u64)], what: &str) {
    let mut rd = Reader::new(ring.clone());
    let got = drain(&mut rd, ring);
    assert_eq!(got, want, "{what}: the events left after the crash");
    let committed = ring.stats().event_count;
    if let Some(mut pw) = pw {
        write_n(&mut pw, 1000, MORE);
        assert!(
            pw.finish(),
            "{what}: finishing the last writer ends the buffer"
        );
    }
    assert!(ring.is_ended(), "{what}: the buffer has ended");
    let mut row = [0u8; ROW];
    let mut later = Vec::new();
    while let Some(slot) = rd.acquire(T).unwrap() {
        ring.copy_out(slot, &mut row);
        rd.release().unwrap();
        later.push(parse(&row));
    }
    let n_more = if ring.stats().event_count > committed {
        MORE
    } else {
        0
    };
    let want_later: Vec<_> = (0..n_more)
        .map(|j| (committed + j, PARENT, 1000 + j))
        .collect();
    assert_eq!(
        later, want_later,
        "{what}: events written after the recovery"
    );
    drop(rd);
    check_consistent(ring, what);
    let st = ring.stats();
    assert_eq!(
        (st.filled_slots, st.empty_slots),
        (0, SLOTS),
        "{what}: {st:?}"
    );
}

/// What one case showed.
struct Case {
    reached: bool,
    crashes: u32,
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
    let mut victim = None;
    if path == "reclaim" {
        let mut v = spawn("victim", &ring, None, Some(VICTIM_FAULT), &[]);
        assert!(died(&mut v, &what), "{what}: the victim did not die");
        crashes += 1;
        assert_eq!(
            ring.audit().lock_holder,
            v.id(),
            "{what}: victim holds the lock"
        );
        victim = Some(v.id());
    }
    let role = if path == "reclaim" { "reclaim" } else { path };
    let extra: Vec<(&str, String)> = victim
        .map(|v| ("FI_VICTIM", v.to_string()))
        .into_iter()
        .collect();
    let mut child = spawn(role, &ring, dst.as_deref(), Some(&fault), &extra);
    let pid = child.id();
    let reached = died(&mut child, &what);
    crashes += u32::from(reached);

    // The child holds the lock of one ring exactly when it died inside a step.
    let rings: Vec<&Arc<Ring>> = std::iter::once(&ring).chain(dst.as_ref()).collect();
    let held: Vec<bool> = rings.iter().map(|r| r.audit().lock_holder == pid).collect();
    let n_held = held.iter().filter(|&&h| h).count();
    let inside = reached && point != "forward.intent";
    assert_eq!(n_held, usize::from(inside), "{what}: lock holders {held:?}");
    let repairs0: Vec<u64> = rings.iter().map(|r| r.stats().repairs).collect();

    // Recovery as the supervisor does it: every ring in order (upstream first).
    for r in &rings {
        r.reclaim(pid);
    }
    for ((r, h), r0) in rings.iter().zip(&held).zip(&repairs0) {
        assert_eq!(
            r.stats().repairs,
            r0 + u64::from(*h),
            "{what}: the next lock acquisition takes the dead lock over and repairs"
        );
        assert!(r.reclaim(pid) == (0, 0, 0), "{what}: reclaim is idempotent");
        assert!(!r.holders().contains(&pid), "{what}: {pid} still recorded");
    }
    if let Some(v) = victim {
        ring.reclaim(v);
        let st = ring.stats();
        assert_eq!(
            (st.lost_reader_crashed, st.aborted_writes),
            (3, 1),
            "{what}: the victim's slots: {st:?}"
        );
    }
    for r in &rings {
        check_consistent(r, &what);
    }

    let st = ring.stats();
    let want: Vec<(u64, u64, u64)> = if reading {
        let f = u64::from(st.filled_slots);
        assert_eq!(st.event_count, PRE, "{what}");
        (PRE - f..PRE).map(|i| (i, PARENT, i)).collect()
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
        let fwd: Vec<_> = (0..ds.event_count).map(|i| (i, PARENT, i)).collect();
        deliver_and_end(d, None, &fwd, &format!("{what} (downstream)"));
    }
    deliver_and_end(&ring, Some(pw), &want, &what);
    Case { reached, crashes }
}

type Tally = BTreeMap<(&'static str, &'static str), (u32, u32)>;

#[test]
fn crash_at_every_point_of_every_path() {
    assert!(
        std::env::var_os(FAULT).is_none(),
        "run the parent without {FAULT}"
    );
    let t0 = Instant::now();
    // (path, point) -> (cases that died at the point, child crashes)
    let tally: Mutex<Tally> = Mutex::new(BTreeMap::new());
    std::thread::scope(|sc| {
        for path in PATHS {
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
    for p in PATHS {
        write!(table, "{p:>12}").unwrap();
    }
    for &point in POINTS {
        write!(table, "\n{point:<18}").unwrap();
        for p in PATHS {
            write!(table, "{:>12}", t[&(p, point)].0).unwrap();
        }
    }
    eprintln!(
        "cases that died at the point (of {} k values each):\n{}\n{crashes} child crashes in \
         {:.1} s",
        KS.len(),
        table,
        t0.elapsed().as_secs_f64()
    );
    for &point in POINTS {
        assert!(
            PATHS.iter().any(|&p| t[&(p, point)].0 > 0),
            "fault point {point} is reached by no path"
        );
    }
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
    let mut child = spawn("raw_read", &ring, None, Some("journal.written@1"), &[]);
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
    deliver_and_end(&ring, Some(pw), &[], "raw_read");
}
