//! Criterion benchmarks of the token queue alone (one thread, no contention): the cost of a
//! token's round trip free → used → free, one token at a time and in batches of 64.
#![allow(
    clippy::missing_panics_doc,
    clippy::many_single_char_names,
    clippy::similar_names
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mimocorb2_core::token_queue::HeapQueue;

const CAP: usize = 64;

fn queues() -> (HeapQueue, HeapQueue) {
    let free = HeapQueue::new(CAP);
    let all: Vec<u32> = (0..CAP as u32).collect();
    assert_eq!(free.queue().push_batch(&all), CAP);
    (free, HeapQueue::new(CAP))
}

fn token_cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_queue");
    let (free, used) = queues();
    let (fq, uq) = (free.queue(), used.queue());
    group.throughput(Throughput::Elements(1));
    group.bench_function("cycle", |b| {
        b.iter(|| {
            let t = fq.pop().unwrap();
            assert!(uq.push(black_box(t)));
            let t = uq.pop().unwrap();
            assert!(fq.push(black_box(t)));
        });
    });
    group.throughput(Throughput::Elements(CAP as u64));
    let mut buf = [0u32; CAP];
    group.bench_function("cycle_batch64", |b| {
        b.iter(|| {
            assert_eq!(fq.pop_batch(&mut buf), CAP);
            assert_eq!(uq.push_batch(black_box(&buf)), CAP);
            assert_eq!(uq.pop_batch(&mut buf), CAP);
            assert_eq!(fq.push_batch(black_box(&buf)), CAP);
        });
    });
    group.finish();
    assert_eq!(fq.len(), CAP, "tokens conserved");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = token_cycle
}
criterion_main!(benches);
