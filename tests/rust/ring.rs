//! Integration tests of the shared-memory [`Ring`] and its process-local handles
//! ([`Writer`], [`Reader`], [`Observer`]) inside one process (threads stand in for processes;
//! `shm_multiprocess.rs` covers real processes). Many threads at once: `ring_threads.rs`.
#![allow(
    clippy::missing_panics_doc,
    clippy::many_single_char_names,
    clippy::similar_names
)]

#[path = "common/ring_local.rs"]
mod ring_local;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mimocorb2_core::metadata::{SlotMetadata, METADATA_SIZE};
use mimocorb2_core::ring::TRASH;
use mimocorb2_core::Grant;
use mimocorb2_core::{Error, Observer, Reader, Ring, Writer};

use ring_local::{now_s, parse, payload, read_one, ring, write_one, DTYPE, T};

#[test]
fn create_rejects_bad_arguments() {
    let bad = [
        Ring::create("x", 0, 8, DTYPE, false),
        Ring::create("x", (1 << 20) + 1, 8, DTYPE, false),
        Ring::create("", 4, 8, DTYPE, false),
        Ring::create(&"n".repeat(241), 4, 8, DTYPE, false),
        Ring::create("x", 4, 8, &"d".repeat(8193), false),
    ];
    for r in bad {
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    }
}

#[test]
fn geometry_and_identity() {
    let r = ring("geo", 5, false);
    assert!(r.name().starts_with("test-geo-"));
    assert_eq!(r.dtype(), DTYPE);
    assert_eq!(r.slot_count(), 5);
    assert_eq!(r.data_size(), 16);
    assert!(!r.overwrite());
    assert_eq!(r.creator_pid(), std::process::id());
    let s = r.stats();
    assert_eq!(
        (s.slot_count, s.empty_slots, s.filled_slots, s.event_count),
        (5, 5, 0, 0)
    );
    assert!(!s.flushed && !s.forced && !s.paused);
    let shared = r.share().unwrap();
    assert_eq!(shared.instance_id(), r.instance_id());
    let o = ring("geo-other", 5, false);
    assert_ne!(
        o.instance_id(),
        r.instance_id(),
        "instances are distinguishable"
    );
}

#[test]
fn attach_checks_identity() {
    let r = ring("attach", 4, false);
    let me = std::process::id();
    // The right instance through /proc/<pid>/fd/<fd>: a second mapping of the same memory.
    let a = Arc::new(Ring::attach(me, r.raw_fd(), Some(r.instance_id())).unwrap());
    assert_eq!(a.name(), r.name());
    assert_eq!(a.geometry(), r.geometry());
    let mut w = Writer::new(a.clone()).unwrap();
    write_one(&mut w, 1, 2);
    let mut rd = Reader::new(r.clone());
    let (_, x, y) = read_one(&mut rd, &r).unwrap();
    assert_eq!(
        (x, y),
        (1, 2),
        "written through one mapping, read through the other"
    );
    // A wrong instance id is refused.
    let wrong = [r.instance_id()[0] ^ 1, r.instance_id()[1]];
    assert!(matches!(
        Ring::attach(me, r.raw_fd(), Some(wrong)),
        Err(Error::LayoutMismatch(_))
    ));
    // A descriptor that is not a mimocorb2 buffer is refused.
    let path = std::env::temp_dir().join(format!("mimocorb2-notabuffer-{me}"));
    std::fs::write(&path, vec![0u8; 8192]).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let res = Ring::attach(me, fd, None);
    drop(f);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(res, Err(Error::LayoutMismatch(_))), "{res:?}");
    // A descriptor that does not exist.
    assert!(matches!(
        Ring::attach(me, 1_000_000, None),
        Err(Error::SharedMemory(_))
    ));
}

#[test]
fn write_commit_read_round_trip() {
    let r = ring("roundtrip", 8, false);
    let mut w = Writer::new(r.clone()).unwrap();
    let mut rd = Reader::new(r.clone());
    for i in 0..20u64 {
        let s = w.acquire(T).unwrap();
        assert!(s < 8);
        assert_eq!(w.held(), Some(s));
        r.copy_in(s, &payload(7, i), false);
        w.commit(true).unwrap();
        assert_eq!(w.held(), None);
        let s2 = rd.acquire(T).unwrap().unwrap();
        assert_eq!(s2, s, "the reader gets the slot just committed");
        let mut row = [0u8; METADATA_SIZE + 16];
        r.copy_out(s2, &mut row);
        rd.release().unwrap();
        let (md, a, b) = parse(&row);
        assert_eq!((md.counter, a, b), (i as i64, 7, i));
    }
    // Metadata written by the caller is kept when the commit does not stamp.
    let md = SlotMetadata {
        counter: 1234,
        timestamp: 5.5,
        deadtime: 0.25,
    };
    let mut row = md.to_bytes().to_vec();
    row.extend_from_slice(&payload(1, 2));
    let s = w.acquire(T).unwrap();
    r.copy_in(s, &row, true);
    w.commit(false).unwrap();
    let (md2, a, b) = read_one(&mut rd, &r).unwrap();
    assert_eq!((md2, a, b), (md, 1, 2));
    let st = r.stats();
    assert_eq!(
        (st.event_count, st.empty_slots, st.filled_slots),
        (21, 8, 0)
    );
    assert!(st.mean_event_deadtime >= 0.0 && st.mean_event_deadtime <= 1.0);
    // Nothing left: a non-blocking read finds nothing, a blocking one times out.
    assert!(matches!(rd.try_acquire(), Ok(None)));
    let t0 = Instant::now();
    assert!(matches!(
        rd.acquire(Some(Duration::from_millis(30))),
        Err(Error::Timeout(_))
    ));
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

#[test]
fn stamping_counter_timestamp_deadtime() {
    let r = ring("stamp", 2, false);
    let mut w = Writer::new(r.clone()).unwrap();
    let t_start = now_s();
    // Fill the buffer, then let a reader free one slot only after a delay: the writer waits,
    // and the dead time of the next event reflects it.
    write_one(&mut w, 0, 0);
    write_one(&mut w, 0, 1);
    let r2 = r.clone();
    let rd_thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        let mut rd = Reader::new(r2.clone());
        let mut got = Vec::new();
        while let Some(ev) = read_one(&mut rd, &r2) {
            got.push(ev);
        }
        got
    });
    write_one(&mut w, 0, 2); // waits ~150 ms for a slot
    for i in 3..10 {
        write_one(&mut w, 0, i);
    }
    assert!(w.finish(), "the only writer's finish ends the buffer");
    let got = rd_thread.join().unwrap();
    assert_eq!(got.len(), 10);
    let t_end = now_s();
    for (i, (md, _, b)) in got.iter().enumerate() {
        assert_eq!(md.counter, i as i64, "counters increase by one");
        assert_eq!(*b, i as u64);
        assert!(md.timestamp >= t_start - 1.0 && md.timestamp <= t_end + 1.0);
        assert!(
            (0.0..=1.0).contains(&md.deadtime),
            "deadtime {}",
            md.deadtime
        );
    }
    assert!(got.windows(2).all(|p| p[0].0.timestamp <= p[1].0.timestamp));
    assert!(
        got[2].0.deadtime > 0.3,
        "waiting event has dead time {}",
        got[2].0.deadtime
    );
    let st = r.stats();
    assert!(
        st.wait_deadtime > 0.0 && st.wait_deadtime <= 1.0,
        "{}",
        st.wait_deadtime
    );
    assert!(st.mean_event_deadtime > 0.0 && st.mean_event_deadtime <= 1.0);
}

#[test]
fn flush_waits_for_every_writer() {
    let r = ring("flush", 4, false);
    let mut w1 = Writer::new(r.clone()).unwrap();
    let mut w2 = Writer::new(r.clone()).unwrap();
    assert_eq!(r.stats().active_writers, 2);
    write_one(&mut w1, 1, 0);
    assert!(!w1.finish(), "one of two writers finished: not the end");
    assert!(!w1.finish(), "finish is idempotent");
    assert!(!r.is_ended());
    assert_eq!(r.stats().active_writers, 1);
    write_one(&mut w2, 2, 0);
    write_one(&mut w2, 2, 1);
    assert!(w2.finish(), "the last writer ends the buffer");
    assert!(r.is_ended());
    let st = r.stats();
    assert!(st.flushed && !st.forced);
    assert_eq!(st.active_writers, 0);
    // Writing after the end is refused.
    let mut late = Writer::new(r.clone()).unwrap();
    assert!(matches!(late.acquire(T), Err(Error::BufferEnded(_))));
    assert!(matches!(late.try_acquire(), Err(Error::BufferEnded(_))));
    // Readers drain the committed events, then see the end (repeatedly).
    let mut rd = Reader::new(r.clone());
    let got: Vec<_> = std::iter::from_fn(|| read_one(&mut rd, &r))
        .map(|e| (e.1, e.2))
        .collect();
    assert_eq!(got, vec![(1, 0), (2, 0), (2, 1)]);
    assert!(matches!(rd.acquire(T), Ok(None)));
    assert!(matches!(rd.try_acquire(), Ok(Some(None))));
}

#[test]
fn expected_writers_prevent_an_early_end() {
    let r = ring("expected", 4, false);
    r.set_expected_writers(2);
    let mut w1 = Writer::new(r.clone()).unwrap();
    write_one(&mut w1, 1, 0);
    assert!(
        !w1.finish(),
        "only one of the two expected writers finished"
    );
    assert!(!r.is_ended());
    // A reader waiting meanwhile is not told the end.
    let mut rd = Reader::new(r.clone());
    assert_eq!(read_one(&mut rd, &r).map(|e| e.1), Some(1));
    assert!(matches!(
        rd.acquire(Some(Duration::from_millis(30))),
        Err(Error::Timeout(_))
    ));
    // The second (late) writer registers, writes, and its finish ends the buffer.
    let mut w2 = Writer::new(r.clone()).unwrap();
    write_one(&mut w2, 2, 0);
    assert!(w2.finish());
    assert!(r.is_ended());
    assert_eq!(read_one(&mut rd, &r).map(|e| e.1), Some(2));
    assert!(read_one(&mut rd, &r).is_none());
}

#[test]
fn a_blocked_reader_wakes_at_the_end() {
    let r = ring("endwake", 4, false);
    let mut w = Writer::new(r.clone()).unwrap();
    let r2 = r.clone();
    let h = std::thread::spawn(move || {
        let mut rd = Reader::new(r2);
        let t0 = Instant::now();
        let first = rd.acquire(T).unwrap();
        rd.release().unwrap();
        let end = rd.acquire(T).unwrap();
        (first.is_some(), end, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    write_one(&mut w, 0, 0);
    std::thread::sleep(Duration::from_millis(50));
    assert!(w.finish());
    let (first, end, took) = h.join().unwrap();
    assert!(first);
    assert_eq!(end, None);
    assert!(
        took < Duration::from_secs(4),
        "woken by the end, not by the timeout"
    );
}

#[test]
fn forced_end_refuses_writes_and_readers_drain() {
    let r = ring("force", 8, false);
    let mut w = Writer::new(r.clone()).unwrap();
    for i in 0..3 {
        write_one(&mut w, 0, i);
    }
    let held = w.acquire(T).unwrap();
    assert_ne!(held, TRASH);
    r.force_end();
    r.force_end(); // idempotent
    assert!(r.is_ended());
    // The held slot cannot be published; it goes back to the free slots.
    assert!(matches!(w.commit(true), Err(Error::BufferEnded(_))));
    assert_eq!(w.held(), None);
    assert_eq!(r.stats().empty_slots, 5);
    assert!(matches!(w.acquire(T), Err(Error::BufferEnded(_))));
    let src = [0u8; 32];
    assert!(matches!(
        w.write_batch(&src, 2, false, true, T),
        Err(Error::BufferEnded(_))
    ));
    let st = r.stats();
    assert!(st.flushed && st.forced);
    assert_eq!(st.event_count, 3);
    // Readers still get every committed event, then the end.
    let mut rd = Reader::new(r.clone());
    let got: Vec<u64> = std::iter::from_fn(|| read_one(&mut rd, &r))
        .map(|e| e.2)
        .collect();
    assert_eq!(got, vec![0, 1, 2]);
    assert!(!w.finish(), "the buffer had already ended");
    assert_eq!(r.stats().empty_slots, 8);
}

#[test]
fn pause_discards_and_counts() {
    let r = ring("pause", 4, false);
    let mut w = Writer::new(r.clone()).unwrap();
    let mut rd = Reader::new(r.clone());
    r.pause();
    assert!(r.is_paused() && r.stats().paused);
    assert_eq!(w.acquire(T).unwrap(), TRASH);
    w.commit(true).unwrap(); // discarded, consumes counter 0
    assert_eq!(w.try_acquire().unwrap(), Some(TRASH));
    w.commit(false).unwrap(); // discarded, consumes no counter
    assert_eq!(w.acquire(T).unwrap(), TRASH);
    w.abort().unwrap(); // not counted
    let src = [0u8; 3 * 16];
    assert_eq!(w.write_batch(&src, 3, false, true, T).unwrap(), 3); // consumes 3 counters
    let st = r.stats();
    assert_eq!((st.paused_count, st.event_count, st.empty_slots), (5, 0, 4));
    assert!(
        matches!(rd.try_acquire(), Ok(None)),
        "nothing reaches the readers"
    );
    r.resume();
    assert!(!r.is_paused());
    let s = write_one(&mut w, 9, 9);
    assert_ne!(s, TRASH);
    let (md, a, _) = read_one(&mut rd, &r).unwrap();
    assert_eq!(a, 9);
    assert_eq!(md.counter, 4, "stamped discards consumed counters 0..4");
    assert_eq!(r.stats().paused_count, 5);
}

#[test]
fn overwrite_never_blocks_and_keeps_the_newest() {
    let r = ring("overwrite", 4, true);
    assert!(r.overwrite());
    let mut w = Writer::new(r.clone()).unwrap();
    for i in 0..10u64 {
        let s = w
            .try_acquire()
            .unwrap()
            .expect("an overwrite buffer never blocks");
        r.copy_in(s, &payload(0, i), false);
        w.commit(true).unwrap();
    }
    let st = r.stats();
    assert_eq!(st.overwritten, 6);
    assert_eq!(st.filled_slots, 4);
    let mut rd = Reader::new(r.clone());
    // A reader holding a slot does not block the writer either.
    let s = rd.acquire(T).unwrap().unwrap();
    let mut row = [0u8; METADATA_SIZE + 16];
    r.copy_out(s, &mut row);
    assert_eq!(parse(&row).2, 6, "the oldest surviving event");
    for i in 10..13u64 {
        let s = w.acquire(Some(Duration::from_millis(100))).unwrap();
        r.copy_in(s, &payload(0, i), false);
        w.commit(true).unwrap();
    }
    rd.release().unwrap();
    assert_eq!(r.stats().overwritten, 9);
    let mut got = Vec::new();
    while let Ok(Some(Some(s))) = rd.try_acquire() {
        r.copy_out(s, &mut row);
        rd.release().unwrap();
        got.push(parse(&row));
    }
    assert_eq!(
        got.iter().map(|e| e.2).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert_eq!(
        got.iter().map(|e| e.0.counter).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert_eq!(r.stats().empty_slots, 4);
}

#[test]
fn observer_sees_newest_without_taking_it() {
    let r = ring("observe", 8, false);
    let mut w = Writer::new(r.clone()).unwrap();
    let mut obs = Observer::new(r.clone());
    let mut dst = vec![0u8; METADATA_SIZE + 16];
    let short = Some(Duration::from_millis(40));
    assert!(
        matches!(obs.observe(&mut dst, short), Err(Error::Timeout(_))),
        "nothing yet"
    );
    write_one(&mut w, 0, 100);
    assert!(obs.observe(&mut dst, T).unwrap());
    assert_eq!(parse(&dst).2, 100);
    let t0 = Instant::now();
    assert!(
        matches!(obs.observe(&mut dst, short), Err(Error::Timeout(_))),
        "nothing newer"
    );
    assert!(t0.elapsed() >= Duration::from_millis(40));
    write_one(&mut w, 0, 101);
    write_one(&mut w, 0, 102);
    assert!(obs.observe(&mut dst, T).unwrap());
    assert_eq!(parse(&dst).2, 102, "the newest event, skipping older ones");
    // A commit wakes a waiting observer.
    let r2 = r.clone();
    let h = std::thread::spawn(move || {
        let mut o = Observer::new(r2.clone());
        let mut d = vec![0u8; METADATA_SIZE + 16];
        assert!(o.observe(&mut d, T).unwrap());
        assert!(o.observe(&mut d, T).unwrap());
        parse(&d).2
    });
    std::thread::sleep(Duration::from_millis(50));
    write_one(&mut w, 0, 103);
    assert_eq!(h.join().unwrap(), 103);
    // A short destination is refused.
    let mut tiny = [0u8; 8];
    assert!(matches!(
        obs.observe(&mut tiny, T),
        Err(Error::InvalidArgument(_))
    ));
    // The readers still get everything.
    let mut rd = Reader::new(r.clone());
    let got: Vec<u64> = (0..4).map(|_| read_one(&mut rd, &r).unwrap().2).collect();
    assert_eq!(got, vec![100, 101, 102, 103]);
    // After the end the observer reports it.
    assert!(obs.observe(&mut dst, T).unwrap(), "103 is newer than 102");
    assert!(w.finish());
    assert!(!obs.observe(&mut dst, T).unwrap());
}

/// An observer of an overwrite buffer must see events committed after the buffer filled up.
#[test]
fn observer_sees_new_events_of_a_full_overwrite_buffer() {
    let r = ring("observe-ow", 4, true);
    let mut w = Writer::new(r.clone()).unwrap();
    let mut obs = Observer::new(r.clone());
    let mut dst = vec![0u8; METADATA_SIZE + 16];
    for i in 0..4 {
        write_one(&mut w, 0, i);
    }
    assert!(obs.observe(&mut dst, T).unwrap());
    assert_eq!(parse(&dst).2, 3);
    for i in 4..7 {
        write_one(&mut w, 0, i);
        let res = obs.observe(&mut dst, Some(Duration::from_millis(200)));
        assert!(matches!(res, Ok(true)), "event {i} not observed: {res:?}");
        assert_eq!(parse(&dst).2, i);
    }
}

#[test]
fn abort_and_misuse() {
    let r = ring("abort", 4, false);
    let mut w = Writer::new(r.clone()).unwrap();
    let mut rd = Reader::new(r.clone());
    let s = w.acquire(T).unwrap();
    assert_eq!(r.stats().empty_slots, 3);
    assert!(
        matches!(w.acquire(T), Err(Error::SlotReleased(_))),
        "one slot at a time"
    );
    assert!(matches!(w.try_acquire(), Err(Error::SlotReleased(_))));
    assert!(matches!(
        w.write_batch(&[0; 16], 1, false, true, T),
        Err(Error::SlotReleased(_))
    ));
    w.abort().unwrap();
    assert_eq!(r.stats().empty_slots, 4, "abort returns the slot");
    assert!(matches!(w.abort(), Err(Error::SlotReleased(_))));
    assert!(matches!(w.commit(true), Err(Error::SlotReleased(_))));
    assert!(matches!(r.abort(s), Err(Error::SlotReleased(_))));
    assert!(matches!(r.commit(s, None), Err(Error::SlotReleased(_))));
    assert!(matches!(r.release(s), Err(Error::SlotReleased(_))));
    assert!(
        matches!(r.commit(99, None), Err(Error::SlotReleased(_))),
        "unknown slot"
    );
    assert!(matches!(rd.release(), Err(Error::SlotReleased(_))));
    assert_eq!(
        r.stats().event_count,
        0,
        "an aborted event is never published"
    );
    // Short batch buffers are refused.
    assert!(matches!(
        w.write_batch(&[0; 16], 2, false, true, T),
        Err(Error::InvalidArgument(_))
    ));
    let mut small = [0u8; 10];
    assert!(matches!(
        rd.read_batch(&mut small, 1, T),
        Err(Error::InvalidArgument(_))
    ));
    // Dropping handles that hold slots gives the slots back.
    write_one(&mut w, 0, 0);
    assert!(rd.acquire(T).unwrap().is_some());
    assert!(
        matches!(rd.acquire(T), Err(Error::SlotReleased(_))),
        "one slot at a time"
    );
    drop(rd);
    w.acquire(T).unwrap();
    drop(w);
    assert_eq!(
        r.stats().empty_slots,
        4,
        "dropped handles returned their slots"
    );
}

/// `reclaim` of a dead process, simulated with this process's own pid: the slots it holds
/// through the raw `Ring` methods (a writing one, a reading one) and its registration are
/// returned exactly as for a dead holder. Real dead processes: `shm_multiprocess.rs`.
#[test]
fn reclaim_returns_slots_and_registrations() {
    let r = ring("reclaim", 4, false);
    let me = std::process::id();
    assert_eq!(r.holders(), Vec::<u32>::new());
    assert_eq!(r.reclaim(me), (0, 0, 0), "nothing held yet");
    let _reg = r.register_writer(me).unwrap();
    let Some(Grant::Slot(a)) = r.try_acquire_write().unwrap() else {
        panic!("no slot")
    };
    let Some(Grant::Slot(b)) = r.try_acquire_write().unwrap() else {
        panic!("no slot")
    };
    r.commit(b, Some(0.0)).unwrap();
    assert_eq!(r.try_acquire_read().unwrap(), Some(Some(b)));
    assert_eq!(r.holders(), vec![me]);
    assert_eq!(r.reclaim(0), (0, 0, 0), "pid 0 never matches free slots");
    assert_eq!(r.reclaim(u32::MAX - 7), (0, 0, 0), "a pid holding nothing");
    assert_eq!(r.reclaim(me), (1, 1, 1), "(writing, lost, writers)");
    let st = r.stats();
    assert_eq!(
        (
            st.lost,
            st.crashed_writers,
            st.active_writers,
            st.empty_slots
        ),
        (1, 1, 0, 4)
    );
    assert!(r.is_ended(), "the crashed writer was the last one");
    assert_eq!(r.holders(), Vec::<u32>::new());
    assert_eq!(r.reclaim(me), (0, 0, 0), "idempotent");
    assert!(matches!(r.commit(a, None), Err(Error::SlotReleased(_))));
    assert!(matches!(r.release(b), Err(Error::SlotReleased(_))));
}

#[test]
fn too_many_writers_is_an_error() {
    let r = ring("registrations", 2, false);
    let regs: Vec<_> = (0..256).map(|_| Writer::new(r.clone()).unwrap()).collect();
    assert!(matches!(
        Writer::new(r.clone()),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(r.stats().active_writers, 256);
    drop(regs);
}

/// Dropping the last handle closes the memfd: no descriptor of it is left in this process.
#[test]
fn dropping_the_ring_closes_its_memory() {
    let r = ring("closes", 4, false);
    let label = format!("mimocorb2:{}", r.name());
    let fds_with_label = || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p.to_string_lossy().contains(&label))
            .count()
    };
    let shared = r.share().unwrap();
    assert_eq!(
        fds_with_label(),
        1,
        "one descriptor per mapping: share() reuses it"
    );
    drop(r);
    assert_eq!(fds_with_label(), 1, "the shared handle keeps it open");
    drop(shared);
    assert_eq!(fds_with_label(), 0);
}
