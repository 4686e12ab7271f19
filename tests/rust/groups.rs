//! Reader groups (`delivery: every_worker`): every group receives every event exactly once,
//! the readers inside a group compete, the slowest group holds writers back (or loses its
//! oldest events on an overwrite buffer, counted for it), an ended group stops holding the
//! buffer back, and a crashed reader's slot is released for its group only.
#![allow(clippy::missing_panics_doc)]

use std::sync::Arc;
use std::time::Duration;

use mimocorb2_core::layout::{DELIVERY_EVERY_GROUP, MAX_GROUPS};
use mimocorb2_core::{Reader, Ring, Writer};

const T: Option<Duration> = Some(Duration::from_secs(5));
const DATA: u64 = 8;

fn ring(name: &str, slots: u32, overwrite: bool) -> Arc<Ring> {
    let name = format!("groups-{name}-{}", std::process::id());
    Arc::new(Ring::create_with(&name, slots, DATA, "[]", overwrite, DELIVERY_EVERY_GROUP).unwrap())
}

fn write(w: &mut Writer, v: u64) {
    let s = w.acquire(T).unwrap();
    w.ring().copy_in(s, &v.to_le_bytes(), false);
    w.commit(true).unwrap();
}

fn read(r: &mut Reader) -> Option<u64> {
    let s = r.acquire(T).unwrap()?;
    let mut row = [0u8; 32];
    r_ring(r).copy_out(s, &mut row);
    r.release().unwrap();
    Some(u64::from_le_bytes(row[24..32].try_into().unwrap()))
}

fn r_ring(r: &Reader) -> &Ring {
    r.ring()
}

#[test]
fn every_group_gets_every_event_once() {
    let ring = ring("every", 4, false);
    let mut a = Reader::with_group(ring.clone(), Some("histogram")).unwrap();
    let mut b1 = Reader::with_group(ring.clone(), Some("csv")).unwrap();
    let mut b2 = Reader::with_group(ring.clone(), Some("csv")).unwrap();
    assert_ne!(a.group(), b1.group());
    assert_eq!(b1.group(), b2.group());
    let mut w = Writer::new(ring.clone()).unwrap();
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    for v in 0..40u64 {
        write(&mut w, v);
        // Group "csv" has two competing readers: alternate them.
        got_a.push(read(&mut a).unwrap());
        let rb = if v % 2 == 0 { &mut b1 } else { &mut b2 };
        got_b.push(read(rb).unwrap());
    }
    w.finish();
    assert_eq!(read(&mut a), None);
    assert_eq!(read(&mut b1), None);
    assert_eq!(got_a, (0..40).collect::<Vec<_>>());
    assert_eq!(got_b, (0..40).collect::<Vec<_>>());
    let st = ring.stats();
    assert_eq!(st.event_count, 40);
    assert_eq!(st.consumed, 80, "each event consumed once per group");
    assert_eq!(
        st.empty_slots, 4,
        "every slot is free once both groups released it"
    );
    let groups = ring.group_stats();
    assert_eq!(groups.len(), 2);
    assert!(groups.iter().all(|g| g.consumed == 40 && g.lost == 0));
}

#[test]
fn the_slowest_group_holds_writers_back_until_it_ends() {
    let ring = ring("slow", 3, false);
    let mut fast = Reader::with_group(ring.clone(), Some("fast")).unwrap();
    let slow = Reader::with_group(ring.clone(), Some("slow")).unwrap();
    let mut w = Writer::new(ring.clone()).unwrap();
    for v in 0..3 {
        write(&mut w, v);
        assert_eq!(read(&mut fast), Some(v));
    }
    // The slow group has read nothing: no free slot.
    assert!(w.try_acquire().unwrap().is_none());
    assert_eq!(
        ring.end_group(slow.group()),
        3,
        "its unread events are counted lost"
    );
    write(&mut w, 3);
    assert_eq!(read(&mut fast), Some(3));
    let slow_stats = ring
        .group_stats()
        .into_iter()
        .find(|g| g.name == "slow")
        .unwrap();
    assert!(!slow_stats.active);
    assert_eq!(slow_stats.lost, 3);
}

#[test]
fn overwrite_loses_the_oldest_events_of_the_slow_group_only() {
    let ring = ring("ow", 2, true);
    let mut fast = Reader::with_group(ring.clone(), Some("fast")).unwrap();
    let mut slow = Reader::with_group(ring.clone(), Some("slow")).unwrap();
    let mut w = Writer::new(ring.clone()).unwrap();
    for v in 0..5 {
        write(&mut w, v);
        assert_eq!(read(&mut fast), Some(v));
    }
    w.finish();
    assert_eq!(read(&mut slow), Some(3));
    assert_eq!(read(&mut slow), Some(4));
    assert_eq!(read(&mut slow), None);
    let g: Vec<_> = ring.group_stats();
    let slow_g = g.iter().find(|x| x.name == "slow").unwrap();
    let fast_g = g.iter().find(|x| x.name == "fast").unwrap();
    assert_eq!((slow_g.overwritten, slow_g.consumed), (3, 2));
    assert_eq!((fast_g.overwritten, fast_g.consumed), (0, 5));
}

#[test]
fn a_crashed_reader_loses_the_event_for_its_group_only() {
    let ring = ring("crash", 4, false);
    let mut a = Reader::with_group(ring.clone(), Some("a")).unwrap();
    let mut b = Reader::with_group(ring.clone(), Some("b")).unwrap();
    let mut w = Writer::new(ring.clone()).unwrap();
    write(&mut w, 7);
    // Group a takes the event and "dies" holding it (this process's pid is reclaimed as if
    // dead: the slot goes back for group a only).
    let s = a.acquire(T).unwrap().unwrap();
    assert_eq!(ring.reclaim(std::process::id()).1, 1);
    assert_eq!(read(&mut b), Some(7), "group b still gets the event");
    let st = ring.stats();
    assert_eq!(st.lost_reader_crashed, 1);
    assert_eq!(st.empty_slots, 4);
    let ga = ring
        .group_stats()
        .into_iter()
        .find(|g| g.name == "a")
        .unwrap();
    assert_eq!((ga.lost, ga.consumed), (1, 0));
    assert!(a.release().is_err(), "slot {s} is no longer held");
}

#[test]
fn at_most_max_groups() {
    let ring = ring("max", 2, false);
    for g in 0..MAX_GROUPS {
        ring.group_index(Some(&format!("g{g}"))).unwrap();
    }
    let err = ring.group_index(Some("one-too-many")).unwrap_err();
    assert!(err.to_string().contains("reader groups"), "{err}");
}

#[test]
fn events_without_any_group_are_counted_lost() {
    let ring = ring("nogroup", 2, false);
    let mut w = Writer::new(ring.clone()).unwrap();
    write(&mut w, 1);
    let st = ring.stats();
    assert_eq!((st.event_count, st.lost_unread, st.empty_slots), (1, 1, 2));
}
