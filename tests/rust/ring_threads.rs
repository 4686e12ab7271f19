//! Integration tests of the shared-memory [`Ring`](mimocorb2_core::Ring) with many threads at
//! once (threads stand in for processes): every event is delivered exactly once, no slot is lost.
#![allow(
    clippy::missing_panics_doc,
    clippy::many_single_char_names,
    clippy::similar_names
)]

#[path = "common/ring_local.rs"]
mod ring_local;

use std::collections::HashSet;
use std::sync::Arc;

use mimocorb2_core::metadata::METADATA_SIZE;
use mimocorb2_core::{Reader, Writer};

use ring_local::{parse, payload, read_one, ring, write_one, T};

/// Several writer and reader threads (some over `share()`d handles): every event is delivered
/// exactly once, counters are unique, each reader sees each writer's events in order, and no
/// slot is lost.
fn threads_exactly_once(name: &str, slots: u32, writers: u64, readers: usize, per_writer: u64) {
    let total = writers * per_writer;
    let r = ring(name, slots, false);
    r.set_expected_writers(writers as u32);
    let reader_threads: Vec<_> = (0..readers)
        .map(|i| {
            let ring = if i == 0 {
                Arc::new(r.share().unwrap())
            } else {
                r.clone()
            };
            std::thread::spawn(move || {
                let mut rd = Reader::new(ring.clone());
                let mut got = Vec::new();
                while let Some((md, a, b)) = read_one(&mut rd, &ring) {
                    got.push((md.counter, a, b));
                }
                got
            })
        })
        .collect();
    let writer_threads: Vec<_> = (0..writers)
        .map(|id| {
            let ring = if id == 0 {
                Arc::new(r.share().unwrap())
            } else {
                r.clone()
            };
            std::thread::spawn(move || {
                let mut w = Writer::new(ring).unwrap();
                for i in 0..per_writer {
                    write_one(&mut w, id, i);
                }
                w.finish()
            })
        })
        .collect();
    let ended: usize = writer_threads
        .into_iter()
        .map(|h| usize::from(h.join().unwrap()))
        .sum();
    assert_eq!(ended, 1, "exactly one finish ends the buffer");
    let per_reader: Vec<Vec<(i64, u64, u64)>> = reader_threads
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for got in &per_reader {
        for id in 0..writers {
            let seq: Vec<u64> = got.iter().filter(|e| e.1 == id).map(|e| e.2).collect();
            assert!(
                seq.windows(2).all(|p| p[0] < p[1]),
                "writer {id} out of order"
            );
        }
    }
    let all: Vec<_> = per_reader.concat();
    assert_eq!(all.len() as u64, total);
    let events: HashSet<(u64, u64)> = all.iter().map(|e| (e.1, e.2)).collect();
    assert_eq!(events.len() as u64, total, "no event twice");
    let mut counters: Vec<i64> = all.iter().map(|e| e.0).collect();
    counters.sort_unstable();
    assert_eq!(
        counters,
        (0..total as i64).collect::<Vec<_>>(),
        "unique counters"
    );
    let st = r.stats();
    assert_eq!(
        (st.empty_slots, st.filled_slots),
        (slots, 0),
        "every slot is back"
    );
    assert!(st.flushed && !st.forced);
}

#[test]
fn threads_deliver_every_event_exactly_once() {
    threads_exactly_once("threads", 16, 3, 2, 10_000);
}

/// Few slots and more threads than cores: the token queues run full and threads are often
/// preempted in the middle of a queue operation.
#[test]
fn oversubscribed_threads_lose_no_slot() {
    threads_exactly_once("threads-oversubscribed", 4, 4, 4, 8_000);
}

/// Batch writes and batch reads from several threads: exactly once, no slot lost.
#[test]
fn batches_deliver_every_event_exactly_once() {
    const WRITERS: u64 = 2;
    const PER_WRITER: u64 = 6_000;
    const ROW: usize = METADATA_SIZE + 16;
    let r = ring("batches", 32, false);
    r.set_expected_writers(WRITERS as u32);
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let ring = r.clone();
            std::thread::spawn(move || {
                let mut rd = Reader::new(ring);
                let mut dst = vec![0u8; 24 * ROW];
                let mut got = Vec::new();
                loop {
                    let n = rd.read_batch(&mut dst, 24, T).unwrap();
                    if n == 0 {
                        return got;
                    }
                    got.extend(dst[..n * ROW].chunks(ROW).map(|row| {
                        let (md, a, b) = parse(row);
                        (md.counter, a, b)
                    }));
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            let ring = r.clone();
            std::thread::spawn(move || {
                let mut w = Writer::new(ring).unwrap();
                let mut next = 0u64;
                while next < PER_WRITER {
                    let k = (PER_WRITER - next).min(1 + next % 50);
                    let src: Vec<u8> = (next..next + k).flat_map(|i| payload(id, i)).collect();
                    let n = w.write_batch(&src, k as usize, false, true, T).unwrap();
                    assert!(n >= 1 && n as u64 <= k);
                    next += n as u64;
                }
                w.finish();
            })
        })
        .collect();
    for h in writers {
        h.join().unwrap();
    }
    let all: Vec<(i64, u64, u64)> = readers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(all.len() as u64, WRITERS * PER_WRITER);
    let events: HashSet<(u64, u64)> = all.iter().map(|e| (e.1, e.2)).collect();
    assert_eq!(events.len() as u64, WRITERS * PER_WRITER, "no event twice");
    let counters: HashSet<i64> = all.iter().map(|e| e.0).collect();
    assert_eq!(
        counters.len() as u64,
        WRITERS * PER_WRITER,
        "unique counters"
    );
    assert_eq!(r.stats().empty_slots, 32, "every slot is back");
}
